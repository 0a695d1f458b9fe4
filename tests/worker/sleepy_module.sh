#!/bin/sh
# A processing module that takes a while: sleepy_module.sh RUNS_FILE SECONDS
# Appends "start <task id> <pid>" before and "end <task id> <pid>" after its nap to RUNS_FILE
# (one short append each), so that a test counts how often each task ran. A shell script, not
# Python: a hundred tasks should cost their naps, not a hundred interpreter start-ups.
set -e
task_id=$(sed -n 's/^  "id": "\(.*\)",$/\1/p' "$MERCURE_IN_DIR/task.json")
echo "start $task_id $$" >> "$1"
sleep "$2"
for file in "$MERCURE_IN_DIR"/*.dcm; do cp "$file" "$MERCURE_OUT_DIR/"; done
echo "end $task_id $$" >> "$1"
