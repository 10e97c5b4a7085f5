#!/usr/bin/env bash
# Splitting a run: two --shard runs merged, and mpirun -np 2 (when this
# knowtrace has MPI), each give the results of one single-process run byte
# for byte. A rank killed mid-run leaves its finished facts; a rerun
# completes the rest.
#   bash tests/system/shards_mpi.sh build/knowtrace [mpi]
source "$(dirname "$0")/common.sh" "$1"
"$KT" run "$CONFIG" --results "$WORK/ref" > /dev/null 2>&1 || fail "single run failed"

"$KT" run "$CONFIG" --results "$WORK/s0" --shard 0/2 > /dev/null 2>&1 || fail "shard 0/2 failed"
"$KT" run "$CONFIG" --results "$WORK/s1" --shard 1/2 > /dev/null 2>&1 || fail "shard 1/2 failed"
n0=$(ls "$WORK/s0/traces" | wc -l); n1=$(ls "$WORK/s1/traces" | wc -l)
[ "$n0" -gt 0 ] && [ "$n1" -gt 0 ] || fail "a shard traced nothing ($n0, $n1 files)"
echo "shards: $n0 + $n1 trace files"
"$KT" merge "$WORK/s0" "$WORK/s1" --into "$WORK/merged" > /dev/null 2>&1 || fail "merge failed"
same_results "$WORK/ref" "$WORK/merged"
# A shard of another run is refused.
"$KT" run "$CONFIG" --results "$WORK/other" --shard 1/2 --dtype bfloat16 --stages filter > /dev/null 2>&1 || fail "bf16 shard failed"
if "$KT" merge "$WORK/s0" "$WORK/other" --into "$WORK/bad" 2> "$WORK/log"; then fail "merge accepted a shard of another run"; fi
grep -q "different 'dtype'" "$WORK/log" || { cat "$WORK/log" >&2; fail "merge refusal does not name dtype"; }

[ "${2:-}" = "mpi" ] || exit 0
MPIRUN=(mpirun -np 2 --oversubscribe -x OMP_NUM_THREADS)
[ "$(id -u)" -eq 0 ] && MPIRUN+=(--allow-run-as-root)
"${MPIRUN[@]}" "$KT" run "$CONFIG" --results "$WORK/mpi" > "$WORK/log" 2>&1 || { cat "$WORK/log" >&2; fail "mpirun failed"; }
same_results "$WORK/ref" "$WORK/mpi"
# Both ranks die after their second stored fact; the rerun does the rest.
if "${MPIRUN[@]}" -x KNOWTRACE_CRASH_AT=trace:2 "$KT" run "$CONFIG" --results "$WORK/mpi2" > "$WORK/log" 2>&1; then
  fail "the ranks were not killed"
fi
stored=$(ls "$WORK/mpi2/traces" | wc -l)
[ "$stored" -ge 10 ] || fail "killed ranks left $stored trace files, expected their finished facts (>= 10)"
"${MPIRUN[@]}" "$KT" run "$CONFIG" --results "$WORK/mpi2" > "$WORK/log" 2>&1 || { cat "$WORK/log" >&2; fail "mpirun resume failed"; }
grep -q "already stored" "$WORK/log" || { cat "$WORK/log" >&2; fail "the resume recomputed everything"; }
same_results "$WORK/ref" "$WORK/mpi2"
echo "mpirun -np 2: identical to one process; killed ranks resumed ($stored files kept)"
