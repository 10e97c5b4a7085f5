#!/usr/bin/env bash
# AddressSanitizer + UndefinedBehaviorSanitizer build of the unit tests (gcc).
#   bash scripts/sanitize.sh [quick|all]
#     quick  the torch-free test binaries only (those whose "// links:" line
#            names none of kt_model, kt_trace, kt_pipeline): fast, no libtorch
#     all    every test, through ctest (default)
# Environment: BUILD_DIR (default build-asan), JOBS (default 1), NICE (default
# 10; 0 = not nice'd), BUILD_TYPE (default RelWithDebInfo).
# Prints the build and test times; exits non-zero on a build failure, a test
# failure or any sanitizer report (UBSan is made fatal with
# -fno-sanitize-recover=undefined).
set -euo pipefail
cd "$(dirname "$0")/.."
MODE="${1:-all}"
case "$MODE" in quick|all) ;; *) echo "usage: $0 [quick|all]" >&2; exit 2 ;; esac
BUILD_DIR="${BUILD_DIR:-build-asan}"
JOBS="${JOBS:-1}"
NICE="${NICE:-10}"
BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}"
run() { if [ "$NICE" != 0 ]; then nice -n "$NICE" "$@"; else "$@"; fi; }

SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="$BUILD_TYPE" \
    -DCMAKE_CXX_COMPILER=g++ -DKNOWTRACE_PYTHON=OFF \
    -DCMAKE_CXX_FLAGS="$SAN" -DCMAKE_EXE_LINKER_FLAGS="$SAN" >/dev/null
fi

# Torch-free tests: decided from each file's "// links:" line.
QUICK=()
for f in tests/unit/test_*.cpp; do
  links="$(head -1 "$f")"
  case "$links" in "// links:"*) ;; *) continue ;; esac
  if ! grep -qwE 'kt_model|kt_trace|kt_pipeline' <<<"$links"; then
    QUICK+=("$(basename "$f" .cpp)")
  fi
done

# The build runs the test binaries too (gtest_discover_tests lists their
# cases), so the sanitizer options must be set before it.
ASAN_BASE="strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1:halt_on_error=1"
export ASAN_OPTIONS="$ASAN_BASE:detect_leaks=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
# Leaks inside third-party libraries (fontconfig's caches, via cairo).
export LSAN_OPTIONS="suppressions=$PWD/scripts/lsan.supp:print_suppressions=0"
t0=$(date +%s)
if [ "$MODE" = quick ]; then
  run cmake --build "$BUILD_DIR" -j"$JOBS" --target "${QUICK[@]}"
else
  run cmake --build "$BUILD_DIR" -j"$JOBS"
fi
t1=$(date +%s)

if [ -z "${KNOWTRACE_DATA_DIR:-}" ] && [ -f ../shared/data/known_1000.json ]; then
  export KNOWTRACE_DATA_DIR="$(cd ../shared/data && pwd)"
fi
source scripts/cpu-env.sh  # OPENBLAS_CORETYPE where it helps
# detect_leaks=0: libtorch (not instrumented) keeps process-lifetime
#   allocations (operator registry, thread pools) that LeakSanitizer reports;
#   the torch-free tests are run with leak detection on (see below).
# halt_on_error: the first report fails the test.
# UBSAN print_stacktrace: the report names the line and the call chain.
status=0
if [ "$MODE" = quick ]; then
  export ASAN_OPTIONS="$ASAN_BASE:detect_leaks=1"
  export KT_SOURCE_DIR="$PWD"
  for t in "${QUICK[@]}"; do
    echo "== $t"
    if ! (cd "$BUILD_DIR" && run "./$t" --gtest_brief=1); then status=1; echo "FAILED: $t"; fi
  done
else
  # ctest runs every test case in its own process: libtorch's start-up cost is
  # paid per case, hence -j2 and the long timeout.
  export ASAN_OPTIONS="$ASAN_BASE:detect_leaks=0"
  (cd "$BUILD_DIR" && run ctest --output-on-failure -j"${CTEST_JOBS:-2}" --timeout 1800) || status=1
fi
t2=$(date +%s)
echo "sanitize.sh $MODE: build $((t1 - t0)) s, tests $((t2 - t1)) s, $([ $status = 0 ] && echo PASSED || echo FAILED)"
exit $status
