#!/usr/bin/env bash
# A virtual environment for baseline (b) (causal-tracer) that reuses the
# system's torch/transformers (--system-site-packages) and installs the
# package with --no-deps, so nothing the rest of the project uses changes.
#   bash bench/setup_venv.sh [DIR]    (default $HOME/.cache/knowtrace/bench-venv)
# Prints the venv's python on the last line.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-${KT_BENCH_VENV:-$HOME/.cache/knowtrace/bench-venv}}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "setup_venv: creating $VENV (system site packages visible)" >&2
  "$PY" -m venv --system-site-packages "$VENV"
fi
if ! "$VENV/bin/python" -c 'import causal_tracer' 2>/dev/null; then
  reqs=$(grep -vE '^\s*(#|$)' bench/requirements.txt | sed 's/\s*#.*//')
  deps=$(echo "$reqs" | grep -E '^(matplotlib|tqdm)==')
  ct=$(echo "$reqs" | grep -E '^causal-tracer==')
  echo "setup_venv: pip install $(echo $deps) && pip install --no-deps $ct" >&2
  "$VENV/bin/python" -m pip install -q $deps >&2
  "$VENV/bin/python" -m pip install -q --no-deps "$ct" >&2
fi
"$VENV/bin/python" -c 'import causal_tracer, transformers; print("setup_venv: causal-tracer", causal_tracer.__version__, "on transformers", transformers.__version__)' >&2
echo "$VENV/bin/python"
