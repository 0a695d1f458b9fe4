"""Runs one command module through CommandRunner (a child process for the runner's tests).

Usage: command_runner_child.py DIE_WITH_PARENT(0|1) WORK_DIR. The module writes its pid to
WORK_DIR/module.pid and sleeps; the test kills this process and looks at the module.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mercure.core.config.models import CommandModule
from mercure.processor.runners import RunRequest
from mercure.processor.runners.command import CommandRunner

if __name__ == "__main__":
    die_with_parent, work = sys.argv[1] == "1", Path(sys.argv[2])
    pid_file = work / "module.pid"
    module = CommandModule.model_validate(
        {"runner": "command", "command": ["/bin/sh", "-c", f"echo $$ > {pid_file}; exec sleep 600"]}
    )
    (work / "in").mkdir()
    (work / "out").mkdir()
    request = RunRequest("t1", 1, "sleeper", module, work / "in", work / "out", work / "log")
    CommandRunner(die_with_parent=die_with_parent).run(request)
