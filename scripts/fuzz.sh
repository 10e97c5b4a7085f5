#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/, clang + ASan + UBSan) in
# build-fuzz and runs each for SECONDS on a scratch copy of its committed
# corpus, one at a time, nice'd.
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#   targets: safetensors gguf npz tokenizer gguf_vocab config (default: all), e.g.
#   bash scripts/fuzz.sh 600 gguf
# Per target it prints executions, exec/s, coverage and findings. Findings
# (crash-*, timeout-*, oom-*, leak-*) are kept in
# build-fuzz/work/<target>/artifacts/; reproduce one with
#   build-fuzz/fuzz_<target> build-fuzz/work/<target>/artifacts/crash-...
# The scratch corpus build-fuzz/work/<target>/corpus grows across runs
# (FRESH=1 starts it again from tests/fuzz/corpus/<target>).
# Environment: BUILD_DIR (build-fuzz), JOBS (1), NICE (10), CXX (clang++),
# FUZZ_ARGS (extra libFuzzer flags).
set -uo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET="${1:-60}"
shift || true
ALL=(safetensors gguf npz tokenizer gguf_vocab config)
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=("${ALL[@]}")
BUILD_DIR="${BUILD_DIR:-build-fuzz}"
JOBS="${JOBS:-1}"
NICE="${NICE:-10}"
run() { if [ "$NICE" != 0 ]; then nice -n "$NICE" "$@"; else "$@"; fi; }

# Largest input libFuzzer makes up per target (seeds may be larger).
max_len() {
  case "$1" in
    npz) echo 65536 ;;
    tokenizer) echo 32768 ;;
    config) echo 8192 ;;
    *) echo 16384 ;;
  esac
}

if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  cmake -S tests/fuzz -B "$BUILD_DIR" -G Ninja -DCMAKE_CXX_COMPILER="${CXX:-clang++}" >/dev/null || exit 1
fi
run cmake --build "$BUILD_DIR" -j"$JOBS" --target "${TARGETS[@]/#/fuzz_}" || exit 1

export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
status=0
summary=()
for t in "${TARGETS[@]}"; do
  bin="$BUILD_DIR/fuzz_$t"
  [ -x "$bin" ] || { echo "no such target: $t" >&2; status=1; continue; }
  work="$BUILD_DIR/work/$t"
  [ "${FRESH:-0}" = 1 ] && rm -rf "$work"
  mkdir -p "$work/corpus" "$work/artifacts"
  cp tests/fuzz/corpus/"$t"/* "$work/corpus/"
  dict=()
  [ -f "tests/fuzz/$t.dict" ] && dict=(-dict="tests/fuzz/$t.dict")
  tmp="$(mktemp -d "${TMPDIR:-/tmp}/ktfuzz-$t.XXXXXX")"
  [ -w /dev/shm ] && { rmdir "$tmp"; tmp="$(mktemp -d /dev/shm/ktfuzz-$t.XXXXXX)"; }
  before=$(ls "$work/artifacts" | wc -l)
  log="$work/last.log"
  echo "== fuzz_$t: ${SECONDS_PER_TARGET}s, log $log"
  KT_FUZZ_TMP="$tmp" run "$bin" "$work/corpus" "${dict[@]}" \
    -max_total_time="$SECONDS_PER_TARGET" -max_len="$(max_len "$t")" -timeout=20 \
    -rss_limit_mb=2048 -malloc_limit_mb=1024 -print_final_stats=1 \
    -artifact_prefix="$work/artifacts/" ${FUZZ_ARGS:-} >"$log" 2>&1
  rc=$?
  rm -rf "$tmp"
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
  eps=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$')
  cov=$(grep -E '^#[0-9]+' "$log" | grep -o 'cov: [0-9]* ft: [0-9]*' | tail -1)
  corp=$(ls "$work/corpus" | wc -l)
  found=$(( $(ls "$work/artifacts" | wc -l) - before ))
  line="fuzz_$t: ${execs:-?} execs, ${eps:-?} exec/s, ${cov:-cov ?}, corpus $corp, new findings $found, exit $rc"
  echo "$line"
  if [ $rc -ne 0 ] || [ $found -ne 0 ]; then
    status=1
    grep -E 'ERROR: |SUMMARY: |runtime error|check failed|not one line|uncaught|terminate' "$log" | head -5
    ls -t "$work/artifacts" | head -3 | sed "s|^|  artifact: $work/artifacts/|"
  fi
  summary+=("$line")
done
echo "== summary"
printf '%s\n' "${summary[@]}"
exit $status
