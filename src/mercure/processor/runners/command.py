"""The ``command`` runner: a local executable with the module interface.

The module runs in its own session (process group), so a timeout kills it with everything it
started, and so it survives a processor killed with SIGKILL: the restarted processor finds it
by the pid and kernel start time recorded in the task's job record and kills its group. With
scale-out the record names the host too: a pid recorded on another host is left alone.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mercure.core.config.models import CommandModule
from mercure.core.errors import PermanentError
from mercure.core.masking import scrub_file
from mercure.processor.runners import RunOutcome, RunRequest

log = logging.getLogger(__name__)

BASE_ENVIRONMENT = ("PATH", "LANG", "HOME", "TMPDIR")
"""Variables a command module inherits from the processor; nothing else of its environment."""


def module_environment(request: RunRequest, module: CommandModule) -> dict[str, str]:
    """The whole environment of a command module run.

    The processor's own environment holds the secrets of the installation (``${VAR}`` target
    passwords, the bookkeeper key): a module gets only :data:`BASE_ENVIRONMENT`, what its
    configuration lists under ``environment``, and the module contract's variables.
    """
    env = {name: os.environ[name] for name in BASE_ENVIRONMENT if name in os.environ}
    env.setdefault("PATH", os.defpath)
    env = {**env, **module.environment, **contract_environment(request.in_dir, request.out_dir)}
    if request.persistence_dir is not None:
        env["MODULE_PERSISTENCE_DIR"] = str(request.persistence_dir)
    return env


def contract_environment(in_dir: Path | str, out_dir: Path | str) -> dict[str, str]:
    """The variables that name a module's folders, as mercure sets them (docs/modules.md)."""
    return {
        "MERCURE_IN_DIR": str(in_dir),
        "MERCURE_OUT_DIR": str(out_dir),
        "MONAI_INPUTPATH": str(in_dir),
        "MONAI_OUTPUTPATH": str(out_dir),
        "HOLOSCAN_INPUT_PATH": str(in_dir),
        "HOLOSCAN_OUTPUT_PATH": str(out_dir),
    }


def process_start_time(pid: int) -> int | None:
    """The kernel start time of ``pid`` (clock ticks since boot); None if there is no such pid.

    A pid alone may have been reused by an unrelated process; pid plus start time may not.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may contain spaces and parentheses: split after its last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])


PR_SET_PDEATHSIG = 1
_libc_prctl: Any = None


def _prctl() -> Any:
    """libc's ``prctl``, loaded in the parent: the child between fork and exec only calls it."""
    global _libc_prctl
    if _libc_prctl is None:
        _libc_prctl = ctypes.CDLL(None, use_errno=True).prctl
    return _libc_prctl


def _die_with(parent: int, prctl: Any) -> Callable[[], None]:
    """What the module's process runs before exec: be killed when ``parent`` dies."""

    def arrange() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # died before the request was in place
            os._exit(127)

    return arrange


class CommandRunner:
    """Runs :class:`CommandModule` modules as local processes.

    ``die_with_parent`` (``mercure worker``): the module is killed with SIGKILL when the worker
    process dies. With scale-out the task's next run may be on another host, which cannot stop
    a module left running here; two runs would then write into one work area.
    """

    def __init__(self, *, die_with_parent: bool = False) -> None:
        self.die_with_parent = die_with_parent

    def run(self, request: RunRequest) -> RunOutcome:
        """Start the command, wait for it or its timeout, kill its process group in any case."""
        module = request.module
        if not isinstance(module, CommandModule):
            raise PermanentError(f"module {request.module_name} is not a command module")
        env = module_environment(request, module)
        before_exec = _die_with(os.getpid(), _prctl()) if self.die_with_parent else None
        started = time.monotonic()
        with open(request.log_path, "wb") as log_file:
            try:
                process = subprocess.Popen(
                    module.command,
                    cwd=request.out_dir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=before_exec,  # one foreign call between fork and exec
                )
            except OSError as exc:
                raise PermanentError(
                    f"module {request.module_name}: cannot start {module.command[0]}: {exc}"
                ) from None
            request.record(
                {"runner": "command", "pid": process.pid, "start": process_start_time(process.pid)}
            )
            timed_out = False
            try:
                exit_code: int | None = process.wait(timeout=module.timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                exit_code = None
            # Children the module left behind (or the whole module on timeout) go with it.
            _kill_group(process.pid)
            if timed_out:
                process.wait()
        # The log is kept with the task and sent to the bookkeeper: no secret the module printed.
        scrub_file(request.log_path)
        return RunOutcome(exit_code, timed_out, time.monotonic() - started)

    def stop_orphans(self, task_id: str, record: dict[str, Any]) -> None:
        """Kill the recorded process group if that very process still exists on this host."""
        pid, start = record.get("pid"), record.get("start")
        if not isinstance(pid, int):
            return
        host = record.get("host")
        if host is not None and host != socket.gethostname():
            # Scale-out: a worker on another host ran it; its pid means nothing here.
            log.warning(
                "task %s: its module ran on host %s (process group %d), which this worker "
                "cannot stop; it runs again here",
                task_id,
                host,
                pid,
            )
            return
        if start is not None and process_start_time(pid) != start:
            return
        log.warning("task %s: stopping orphaned module process group %d", task_id, pid)
        _kill_group(pid)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
