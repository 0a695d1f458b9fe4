"""A processing module that takes a while: ``sleepy_module.py RUNS_FILE SECONDS``.

It appends ``start <task id> <pid>`` before and ``end <task id> <pid>`` after its nap to
RUNS_FILE (one short append each), so that a test counts how often each task ran.
"""

import json
import os
import shutil
import sys
import time
from pathlib import Path

in_dir, out_dir = Path(os.environ["MERCURE_IN_DIR"]), Path(os.environ["MERCURE_OUT_DIR"])
task_id = json.loads((in_dir / "task.json").read_text())["id"]


def record(what: str) -> None:
    with open(sys.argv[1], "a") as handle:
        handle.write(f"{what} {task_id} {os.getpid()}\n")


record("start")
time.sleep(float(sys.argv[2]))
for path in in_dir.iterdir():
    if path.suffix == ".dcm":
        shutil.copyfile(path, out_dir / path.name)
record("end")
