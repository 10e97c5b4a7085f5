#!/usr/bin/env bash
# The researcher's one command: build if needed, then run a config.
#   bash run.sh [CONFIG] [knowtrace run flags...]
#   bash run.sh                                   # hparams/smollm2-135m.yaml
#   bash run.sh hparams/llama-3.2-3b.yaml --limit 50 --results results/llama-try
#   CONFIG_PATH=hparams/llama_config.yaml bash run.sh   # as the seed project's run.sh
# Results go to results/<config name>/ (see README.md); rerunning resumes.
set -euo pipefail
cd "$(dirname "$0")"
BUILD_DIR="${BUILD_DIR:-build}"
CONFIG="${1:-${CONFIG_PATH:-hparams/smollm2-135m.yaml}}"
[ $# -gt 0 ] && shift
if [ ! -x "$BUILD_DIR/knowtrace" ]; then
  echo "run.sh: $BUILD_DIR/knowtrace is missing: running scripts/setup.sh" >&2
  bash scripts/setup.sh
fi
# known_1000 lives outside the repository; ../shared/data beside a checkout is used when present.
if [ -z "${KNOWTRACE_DATA_DIR:-}" ] && [ -f ../shared/data/known_1000.json ]; then
  export KNOWTRACE_DATA_DIR="$(cd ../shared/data && pwd)"
fi
source scripts/cpu-env.sh  # OPENBLAS_CORETYPE where it helps
# OMP_WAIT_POLICY is left as you set it: libgomp's default (spin a little,
# then sleep) is the fastest on a machine of your own; PASSIVE suits one
# shared with other jobs (docs/PERFORMANCE.md).
exec "$BUILD_DIR/knowtrace" run "$CONFIG" "$@"
