#!/usr/bin/env bash
# bash bench/gpu/kill_resume.sh DIR KIT_COMMAND...  (part (e) of evidence.sh)
# Starts `KIT_COMMAND --out DIR` (a checkpointed `evidence train-run`), kills it with SIGKILL (its whole process group,
# no chance to clean up) as soon as its first checkpoint pointer DIR/checkpoints/latest.json exists, then runs the same
# command again, which resumes from that checkpoint and finishes. Exit status: the second run's; 1 when the first run
# ended before a checkpoint could be seen. Stopped itself (evidence.sh's timeout), it stops the run it started too.
set -uo pipefail
[ $# -ge 2 ] || { echo "usage: kill_resume.sh DIR KIT_COMMAND..." >&2; exit 2; }
dir=$1; shift
rm -rf "$dir"; mkdir -p "$(dirname "$dir")"
setsid "$@" --out "$dir" > "$dir.first.log" 2>&1 &
pid=$!
trap 'kill -KILL "$pid" 2>/dev/null; exit 143' TERM INT
while [ ! -f "$dir/checkpoints/latest.json" ] && kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
if [ ! -f "$dir/checkpoints/latest.json" ]; then
  echo "the first run ended before its first checkpoint could be seen (its log: $dir.first.log)"
  tail -n 5 "$dir.first.log"
  exit 1
fi
# setsid made the run a session and process-group leader (pgid = pid): kill the group, so nothing it started survives.
if [ "$(ps -o pgid= -p "$pid" 2>/dev/null | tr -d ' ')" = "$pid" ]; then kill -KILL -- "-$pid" 2>/dev/null; else kill -KILL "$pid" 2>/dev/null; fi
wait "$pid" 2>/dev/null
trap - TERM INT
steps=$(grep -c . "$dir/log.csv" 2>/dev/null || echo 0)
echo "killed with SIGKILL once $(tr -d '\n ' < "$dir/checkpoints/latest.json") existed (log.csv held $((steps > 0 ? steps - 1 : 0)) steps); resuming:"
exec "$@" --out "$dir"
