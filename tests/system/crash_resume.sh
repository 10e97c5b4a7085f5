#!/usr/bin/env bash
# Crash safety: kill `knowtrace run` with SIGKILL at many moments (injected
# points in the filter, mid-trace, half-way through a file write, between
# the summary files, while plotting, and at random times), resume each time,
# and require the final results to equal an uninterrupted run's byte for
# byte. Then corrupt stored files and require them to be found and redone.
#   bash tests/system/crash_resume.sh build/knowtrace
source "$(dirname "$0")/common.sh" "$1"
SECONDS=0
"$KT" run "$CONFIG" --results "$WORK/ref" > /dev/null 2>&1 || fail "uninterrupted run failed"
echo "uninterrupted run: ${SECONDS}s"

DIR="$WORK/killed"
kills=0
run_once() {  # run_once [crash point]: 0 when it completed, 1 when killed
  local rc=0
  { KNOWTRACE_CRASH_AT="${1:-}" "$KT" run "$CONFIG" --results "$DIR" > "$WORK/log" 2>&1 || rc=$?; } 2> /dev/null
  if [ "$rc" -eq 137 ]; then kills=$((kills + 1)); return 1; fi
  [ "$rc" -eq 0 ] || { cat "$WORK/log" >&2; fail "run exited with $rc (crash point '${1:-}')"; }
  return 0
}
# Injected points, in the order a run reaches them; each resumes the last.
for point in filter:1 filter:3 write:1 write:2 trace:1 write:7 trace:2 write:25 trace:3 write:40 \
             aggregate:1 write:70 plot:1 trace:4 plot:20 aggregate:1 write:3; do
  run_once "$point" || true
done
echo "injected crash points: $kills of 17 reached"
# Random moments: kill after 0.1 .. 2.4 s, resume; when a run finished
# before its kill, start over so that the next kill lands mid-run. Until 30
# kills in all (injected + random), at most 40 tries.
RANDOM=7
tries=0
while [ "$kills" -lt 30 ] && [ "$tries" -lt 40 ]; do
  tries=$((tries + 1))
  KNOWTRACE_CRASH_AT= "$KT" run "$CONFIG" --results "$DIR" > "$WORK/log" 2>&1 &
  pid=$!
  sleep "$(printf '0.%d' $((RANDOM % 9 + 1)))"
  [ $((tries % 3)) -eq 0 ] && sleep 1.5
  if kill -9 "$pid" 2> /dev/null; then kills=$((kills + 1)); else rm -rf "$DIR"; fi
  { wait "$pid" || true; } 2> /dev/null
done
run_once "" || fail "the final resume was killed"
echo "SIGKILLs survived: $kills ($tries random tries; resumed after each)"
[ "$kills" -ge 20 ] || fail "only $kills kills landed; the test needs at least 20"
same_results "$WORK/ref" "$DIR"

# Corrupt files: each is reported with its path and recomputed.
t1="$DIR/traces/3_mlp.npz"; t2="$DIR/traces/5_hidden.npz"
truncate -s 100 "$t1"
printf '\x55' | dd of="$t2" bs=1 seek=200 conv=notrunc 2> /dev/null
printf 'x' >> "$DIR/filter.jsonl"
printf 'y' >> "$DIR/summary.json"
"$KT" run "$CONFIG" --results "$DIR" > /dev/null 2> "$WORK/log" || { cat "$WORK/log" >&2; fail "run over corrupt files failed"; }
for f in "$t1" "$t2" "$DIR/filter.jsonl"; do
  grep -q "$f" "$WORK/log" || { cat "$WORK/log" >&2; fail "no message naming $f"; }
done
same_results "$WORK/ref" "$DIR"
echo "corrupt files found and recomputed: 2 traces, filter.jsonl, summary.json"
echo "total ${SECONDS}s"
