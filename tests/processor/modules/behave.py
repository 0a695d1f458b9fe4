"""A test module whose behaviour comes from its settings in task.json (``behaviour``).

copy: copy the input files to the output, write result.json with the settings it saw.
fail: write to stdout and stderr, exit 1 (with "once": only if settings["flag"] does not exist
  yet, which it then creates; else copy).  nothing: exit 0 without output.
hang: record its pid in settings["pid_file"], then wait forever (with "once": only if that
  file does not exist yet; else copy).
barrier: announce itself in settings["barrier"] and wait until ``count`` modules did (parallel).
"""

import json
import os
import shutil
import sys
import time
from pathlib import Path

in_dir = Path(os.environ["MERCURE_IN_DIR"])
out_dir = Path(os.environ["MERCURE_OUT_DIR"])
task = json.loads((in_dir / "task.json").read_text())
settings = task["process"]["settings"]
behaviour = settings.get("behaviour", "copy")
print(f"module {task['process']['module_name']} starts: {behaviour}", flush=True)

if behaviour == "fail" and settings.get("once") and not Path(settings["flag"]).exists():
    Path(settings["flag"]).touch()
    sys.exit("failing this first time")
if behaviour == "fail" and not settings.get("once"):
    print("something went wrong", file=sys.stderr, flush=True)
    sys.exit(1)
if behaviour == "nothing":
    sys.exit(0)
if behaviour == "hang" and not (settings.get("once") and Path(settings["pid_file"]).exists()):
    Path(settings["pid_file"]).write_text(str(os.getpid()))
    while True:
        time.sleep(3600)
if behaviour == "barrier":
    barrier = Path(settings["barrier"])
    (barrier / task["id"]).touch()
    deadline = time.monotonic() + 15
    while len(list(barrier.iterdir())) < settings["count"]:
        if time.monotonic() > deadline:
            sys.exit("the other modules never started: not run in parallel")
        time.sleep(0.02)

files = [p for p in in_dir.iterdir() if p.name != "task.json"]
for path in files:
    shutil.copyfile(path, out_dir / f"{settings.get('prefix', '')}{path.name}")
result = {"settings": settings, "files": len(files), "module": task["process"]["module_name"]}
if "notification" in settings:  # a notification request, mercure's format
    result["__mercure_notification"] = settings["notification"]
(out_dir / "result.json").write_text(json.dumps(result))
print(f"copied {len(files)} files", flush=True)
