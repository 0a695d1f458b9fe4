"""A real peer program run as a child process: start, wait until it serves, stop by its PID.

Every peer runs in its own session (process group), so that stopping it also stops the children
it forked (``storescp --fork``); the group is addressed by the PID this process started, never
by a program name. Output goes to a log file whose tail is shown when start-up fails.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from mercure.core.errors import MercureError
from mercure.testing.wait import wait_until

log = logging.getLogger(__name__)

_LOG_TAIL_BYTES = 4000
_PR_SET_PDEATHSIG = 1


class PeerError(MercureError):
    """A peer program failed to start, to stop, or to do what a helper asked of it."""


class PeerNotInstalledError(PeerError):
    """The peer program is not installed on this machine."""


def peer_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a DICOM peer: ours plus ``TCP_NODELAY=1``.

    Debian's DCMTK (and Orthanc, built on it) leaves Nagle's algorithm on unless TCP_NODELAY is
    set, and a C-STORE link then stalls on delayed ACKs at ~11 instances/s.
    """
    env = dict(os.environ)
    env["TCP_NODELAY"] = "1"
    env.update(extra or {})
    return env


def require_program(program: str, what: str, package: str) -> str:
    """The full path of ``program``, or PeerNotInstalledError saying which package provides it."""
    path = shutil.which(program) or next(
        (str(p) for p in (Path("/usr/sbin") / program, Path("/sbin") / program) if p.exists()),
        None,
    )
    if path is None:
        raise PeerNotInstalledError(
            f"{what} not found: install Debian package {package} (scripts/install.sh --test does)"
        )
    return path


def is_listening(port: int, pid: int | None = None) -> bool:
    """Whether a socket listens on TCP ``port`` (any address), read from /proc, not by connecting.

    Connecting to probe would show up in the peer as an aborted association; reading the kernel's
    socket table has no side effect. With ``pid`` the socket must belong to that process, so a
    stranger that took the port first is not mistaken for the peer.
    """
    wanted = f":{port:04X}"
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            # fields[1]: local "address:port" in hex; fields[3]: state, 0A is LISTEN; [9]: inode.
            if len(fields) > 9 and fields[1].endswith(wanted) and fields[3] == "0A":
                inodes.add(f"socket:[{fields[9]}]")
    if pid is None or not inodes:
        return bool(inodes)
    try:
        descriptors = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False
    for descriptor in descriptors:
        with contextlib.suppress(OSError):
            if os.readlink(descriptor) in inodes:
                return True
    return False


def log_tail(path: Path, limit: int = _LOG_TAIL_BYTES) -> str:
    """The last ``limit`` bytes of a log file as text (empty if there is none)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - limit))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _die_with_parent() -> None:
    """In the child before exec: get SIGKILL when the test process dies, leaving no orphans.

    Peers run in their own session, so an interrupted test run would otherwise leave them
    running. Linux only; elsewhere this does nothing.
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class PeerProcess:
    """Base of the peers: a program started in its own process group and stopped by PID.

    Subclasses give the command line and :meth:`is_ready`; :meth:`start` waits (by polling, no
    sleeps) until the peer serves or fails with its log. Use as a context manager.
    """

    #: How the peer is named in messages.
    name = "peer"
    #: Seconds the peer may take to become ready.
    start_timeout = 30.0
    #: Whether :meth:`stop` asks politely (SIGTERM) before it kills.
    graceful_stop = True

    def __init__(self, argv: Sequence[str], log_path: Path, *, cwd: Path | None = None) -> None:
        self.argv = [str(arg) for arg in argv]
        self.log_path = log_path
        self.cwd = cwd
        self.env: dict[str, str] = {}
        """Variables added to the peer's environment (e.g. ``LD_PRELOAD`` in bench/)."""
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        """The PID of the started program (also its process group id)."""
        if self._process is None:
            raise PeerError(f"{self.name} is not started")
        return self._process.pid

    @property
    def running(self) -> bool:
        """Whether the started program is still alive."""
        return self._process is not None and self._process.poll() is None

    def is_ready(self) -> bool:
        """Whether the peer serves requests now; subclasses define what that means."""
        raise NotImplementedError

    def log_text(self) -> str:
        """The peer's log so far (its tail, for messages)."""
        return log_tail(self.log_path)

    def start(self) -> Self:
        """Start the program and return once it is ready; PeerError (with the log) otherwise."""
        if self._process is not None:
            raise PeerError(f"{self.name} is already started (pid {self._process.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the child's life
        log.debug("starting %s: %s", self.name, " ".join(self.argv))
        self._process = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=peer_environment(self.env),
            cwd=self.cwd,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        try:
            wait_until(
                lambda: not self.running or self.is_ready(),
                timeout=self.start_timeout,
                message=f"{self.name} ready",
            )
        except AssertionError:
            self.stop()
            raise PeerError(
                f"{self.name} did not become ready within {self.start_timeout:g} s; "
                f"log {self.log_path}:\n{self.log_text()}"
            ) from None
        if not self.running:
            code = self._process.returncode
            self.stop()
            raise PeerError(
                f"{self.name} exited with code {code} during start-up; "
                f"command: {' '.join(self.argv)}\nlog {self.log_path}:\n{self.log_text()}"
            )
        return self

    def stop(self, timeout: float = 10.0, *, graceful: bool | None = None) -> None:
        """Stop the program and everything it forked.

        Gracefully (default: :attr:`graceful_stop`) means SIGTERM, then SIGKILL after
        ``timeout``; otherwise SIGKILL at once.
        """
        process = self._process
        if process is None:
            return
        if self.graceful_stop if graceful is None else graceful:
            self._signal_group(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s (pid %d) ignored SIGTERM; killing it", self.name, process.pid)
        # Killing the whole group also ends forked children (storescp --fork) still serving.
        self._signal_group(process.pid, signal.SIGKILL)
        process.wait()
        self._process = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def crash(self) -> None:
        """SIGKILL the program alone, not its process group: what it started lives on, as
        after a crash of a supervisor (its children see their parent die)."""
        process = self._process
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
        process.wait()
        self._process = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    @staticmethod
    def _signal_group(pgid: int, signum: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signum)

    def __enter__(self) -> Self:
        return self.start() if self._process is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def run_client(
    argv: Sequence[str], *, what: str, timeout: float, check: bool
) -> subprocess.CompletedProcess[str]:
    """Run a DICOM client program to completion with ``TCP_NODELAY=1``; output is captured.

    With ``check`` a non-zero exit or a timeout raises PeerError carrying the command and output.
    """
    command = [str(arg) for arg in argv]
    log.debug("running %s: %s", what, " ".join(command))
    try:
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=peer_environment(),
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise PeerError(f"{what} did not finish within {timeout:g} s: {' '.join(command)}") from exc
    if check and result.returncode != 0:
        raise PeerError(
            f"{what} failed with exit code {result.returncode}: {' '.join(command)}\n"
            f"{result.stdout}{result.stderr}"
        )
    return result
