#!/usr/bin/env bash
# knowtrace fast against its reference engine and two Python peers, on the
# same model, facts, samples, window, noise, dtype and thread count, in one
# run; prints each one's seconds per fact and knowtrace fast's speed-up.
#
#   bash bench/python_baselines.sh [--facts N] [--samples S] [--dtype D] [--threads T]
#        [--window W] [--noise X] [--model PATH] [--data FILE] [--baseline-facts M]
#        [--device cpu|cuda] [--skip a,b] [--out DIR]
#
#   (knowtrace)  knowtrace bench: fast engine on the N facts, reference engine on fact 0
#   (a)          bench/rome_baseline.py: ROME's algorithm on transformers, M facts (default N)
#   (b)          bench/causal_tracer_baseline.py: PyPI causal-tracer 1.1.0, M facts
#
# Each run's JSON and stderr go to DIR (default results/bench-<time>/); the
# table is printed and written to DIR/table.md. A run that fails shows "n/a"
# and why; the others still run.
#
# Environment: KNOWTRACE_BIN (default build/knowtrace), PYTHON (python3, for
# (a)), KT_CT_PYTHON (python for (b); default: python3 if it imports
# causal_tracer, else the venv bench/setup_venv.sh makes), KNOWTRACE_DATA_DIR.
# OMP_WAIT_POLICY: PASSIVE for every run unless you set it (see below).
# OPENBLAS_CORETYPE: SkylakeX on AVX-512 CPUs unless you set it
# (scripts/cpu-env.sh; it changes speed, never results). PyPI's PyTorch
# has its own BLAS and is not affected.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/cpu-env.sh

FACTS=10 SAMPLES=10 DTYPE=float32 THREADS="" WINDOW=10 NOISE=0.1 DEVICE=cpu
MODEL=models/SmolLM2-135M-Instruct.Q4_1.gguf DATA="" BFACTS="" SKIP="" OUTDIR=""
usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
  case "$1" in -h|--help) usage 0;; esac
  [ $# -ge 2 ] || { echo "python_baselines.sh: $1 needs a value" >&2; exit 2; }
  case "$1" in
    --facts) FACTS="$2";; --samples) SAMPLES="$2";; --dtype) DTYPE="$2";; --threads) THREADS="$2";;
    --window) WINDOW="$2";; --noise) NOISE="$2";; --model) MODEL="$2";; --data) DATA="$2";;
    --baseline-facts) BFACTS="$2";; --device) DEVICE="$2";; --skip) SKIP="$2";; --out) OUTDIR="$2";;
    *) echo "python_baselines.sh: unknown option $1" >&2; usage 2 >&2;;
  esac
  shift 2
done
BFACTS="${BFACTS:-$FACTS}"
THREADS="${THREADS:-$(getconf _NPROCESSORS_ONLN)}"
KT="${KNOWTRACE_BIN:-build/knowtrace}"
PY="${PYTHON:-python3}"
OUTDIR="${OUTDIR:-results/bench-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUTDIR"
if [ -z "$DATA" ]; then
  if [ -n "${KNOWTRACE_DATA_DIR:-}" ]; then DATA="$KNOWTRACE_DATA_DIR/known_1000.json"
  elif [ -f ../shared/data/known_1000.json ]; then DATA="$(cd ../shared/data && pwd)/known_1000.json"
  else echo "python_baselines.sh: no facts: give --data FILE or set KNOWTRACE_DATA_DIR" >&2; exit 2; fi
fi
[ -f "$DATA" ] || { echo "python_baselines.sh: $DATA: no such file" >&2; exit 2; }
skip() { [[ ",$SKIP," == *",$1,"* ]]; }
# The same thread count everywhere: libtorch (knowtrace) and PyTorch read
# OMP_NUM_THREADS; the Python scripts also call torch.set_num_threads.
export OMP_NUM_THREADS="$THREADS" MKL_NUM_THREADS="$THREADS"
# Every run gets the same OpenMP wait policy: PASSIVE unless you set one.
# libgomp's default spins after each parallel region, and on a shared 2-core
# machine the spinning worker takes the cores from the BLAS / oneDNN threads
# (knowtrace fast: 65-75 s -> 23-32 s on one fact; see docs/PERFORMANCE.md).
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
COMMON=(--model "$MODEL" --data "$DATA" --samples "$SAMPLES" --window "$WINDOW" --noise "$NOISE" --dtype "$DTYPE" --device "$DEVICE")

echo "python_baselines: $MODEL, $DEVICE, $DTYPE, S=$SAMPLES, W=$WINDOW, noise $NOISE, $THREADS threads, OMP_WAIT_POLICY=$OMP_WAIT_POLICY, load $(cut -d' ' -f1-3 /proc/loadavg);" \
     "knowtrace fast on $FACTS facts (reference on 1), baselines on $BFACTS; output in $OUTDIR"
run() {  # run NAME CMD...: stdout -> NAME.json, stderr -> NAME.err, timing printed
  local name="$1"; shift
  local t0=$SECONDS
  echo "--- $name: $*" | cut -c1-300
  if "$@" >"$OUTDIR/$name.json" 2>"$OUTDIR/$name.err"; then
    echo "    ok ($((SECONDS - t0)) s)"
  else
    local rc=$?
    echo "    FAILED (exit $rc, $((SECONDS - t0)) s): $(grep -v 'Loading weights' "$OUTDIR/$name.err" | grep . | tail -1 | cut -c1-300)"
    # keep the reason where bench_table.py looks for it, drop the partial JSON
    mv "$OUTDIR/$name.json" "$OUTDIR/$name.partial" 2>/dev/null
  fi
}

if [ -x "$KT" ]; then
  run knowtrace "$KT" bench "${COMMON[@]}" \
      --facts "$FACTS" --reference-facts 1 --engines fast,reference --json
else
  echo "--- knowtrace: $KT not found or not executable (build it: bash scripts/setup.sh)" | tee "$OUTDIR/knowtrace.err"
fi

if skip a; then echo "skipped (--skip a)" > "$OUTDIR/rome.err"; cat "$OUTDIR/rome.err"
else run rome "$PY" bench/rome_baseline.py "${COMMON[@]}" --facts "$BFACTS" --threads "$THREADS"; fi

if skip b; then echo "skipped (--skip b)" > "$OUTDIR/causal_tracer.err"; cat "$OUTDIR/causal_tracer.err"
else
  CT_PY="${KT_CT_PYTHON:-}"
  if [ -z "$CT_PY" ]; then
    if "$PY" -c 'import causal_tracer' 2>/dev/null; then CT_PY="$PY"
    else CT_PY=$(bash bench/setup_venv.sh 2>"$OUTDIR/setup_venv.err" | tail -1) || CT_PY=""; fi
  fi
  if [ -n "$CT_PY" ]; then
    run causal_tracer "$CT_PY" bench/causal_tracer_baseline.py "${COMMON[@]}" --facts "$BFACTS" --threads "$THREADS"
  else
    echo "could not install causal-tracer: $(tail -1 "$OUTDIR/setup_venv.err")" > "$OUTDIR/causal_tracer.err"
    echo "--- causal-tracer (b): $(cat "$OUTDIR/causal_tracer.err")"
  fi
fi

echo
python3 bench/bench_table.py --title "knowtrace vs Python baselines ($(date -u +%Y-%m-%d), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(getconf _NPROCESSORS_ONLN) cores)" \
  --section "$(basename "$MODEL") · $DEVICE · $DTYPE · S=$SAMPLES · W=$WINDOW · noise $NOISE · $THREADS threads" \
  --kt "$OUTDIR/knowtrace.json" \
  --baseline "ROME on transformers (a)=$OUTDIR/rome.json" \
  --baseline "causal-tracer 1.1.0 (b)=$OUTDIR/causal_tracer.json" | tee "$OUTDIR/table.md"
