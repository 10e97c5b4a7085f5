# Shared by the system tests: run the knowtrace binary on the resilience
# fixture and compare results directories byte for byte.
#   source common.sh KNOWTRACE_BINARY
set -euo pipefail
KT="$(realpath "$1")"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CONFIG="$HERE/../fixtures/resilience/gpt2-tiny.yaml"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/knowtrace-system.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
# Bitwise equality needs one thread count everywhere: fp32 sums may be split
# differently with more threads (test_determinism checks that difference).
export OMP_NUM_THREADS=1
unset KNOWTRACE_CRASH_AT

fail() { echo "FAIL: $*" >&2; exit 1; }

# The stored results that must not depend on how the run went.
same_results() {
  local a="$1" b="$2" f n=0
  for f in filter.jsonl errors.jsonl summary.json summary.csv overview.csv; do
    cmp -s "$a/$f" "$b/$f" || fail "$b/$f differs from $a/$f"
  done
  for f in "$a"/traces/*.npz; do
    cmp -s "$f" "$b/traces/$(basename "$f")" || fail "$b/traces/$(basename "$f") differs from $f"
    n=$((n + 1))
  done
  [ "$(ls "$b"/traces/*.npz | wc -l)" -eq "$n" ] || fail "$b/traces holds other files than $a/traces"
  if find "$b" -name '*.tmp.*' | grep -q .; then fail "temporary files left in $b"; fi
  echo "identical: $n traces, filter, errors and summaries ($b)"
}
