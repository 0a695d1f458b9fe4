"""The ``rsync`` target: each task into ``<folder>/<task_id>/`` on an SSH server, with rsync.

As mercure does: the task's files are copied with the ``rsync`` program over ``ssh`` (file
modes 660 less the server's umask), then an empty ``.complete`` marker is created beside them; with
``run_on_complete``, ``<folder>/mercure_complete.sh <task folder> rsync`` then runs on the server
(it must exist and be executable, else the delivery fails and is retried).

rsync writes each file under a temporary name and renames it into place, so the folder never
shows half a file. The password, when one is configured instead of a key, reaches ssh through
an askpass program in a private temporary folder (``SSH_ASKPASS_REQUIRE=force``): it is never on
a command line (visible to every user of the host) nor in an environment variable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import shutil
import stat
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from mercure.core.config.models import RsyncTarget
from mercure.core.masking import excerpt, scrub
from mercure.dispatcher.errors import DeliveryError, TargetConfigError
from mercure.dispatcher.targets.base import (
    Confirm,
    SendJob,
    SendResult,
    TargetPlugin,
    TestSteps,
    left_out,
)

log = logging.getLogger(__name__)

COMPLETE_MARKER = ".complete"
COMPLETE_SCRIPT = "mercure_complete.sh"
CONNECT_TIMEOUT = 20
TEST_TIMEOUT = 30.0


def _program(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        package = "rsync" if name == "rsync" else "openssh-client"
        raise TargetConfigError(
            f"the {name} program is not installed on this host (Debian package {package})"
        )
    return found


@contextlib.contextmanager
def _askpass(password: str | None) -> Iterator[dict[str, str]]:
    """The environment that gives ssh ``password`` through a private askpass program (none
    without a password); the folder holding both goes when the block ends."""
    if password is None:
        yield {}
        return
    with tempfile.TemporaryDirectory(prefix="mercure-askpass-") as folder:
        os.chmod(folder, stat.S_IRWXU)
        secret = Path(folder) / "password"
        descriptor = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(password + "\n")
        program = Path(folder) / "askpass"
        program.write_text(f"#!/bin/sh\nexec cat {shlex.quote(str(secret))}\n")
        program.chmod(stat.S_IRWXU)
        yield {"SSH_ASKPASS": str(program), "SSH_ASKPASS_REQUIRE": "force"}


class RsyncPlugin(TargetPlugin):
    """Copies with rsync over ssh."""

    def __init__(self, name: str, config: RsyncTarget) -> None:
        super().__init__(name)
        self.config = config

    @property
    def where(self) -> str:
        """user@host:port, for messages."""
        return f"{self.config.user}@{self.config.host}:{self.config.port}"

    def ssh_command(self) -> list[str]:
        """ssh with this target's port, login and host key policy (no secret in it)."""
        config = self.config
        command = [
            _program("ssh"),
            "-F",
            "/dev/null",  # the host's and the user's ssh_config play no part
            "-p",
            str(config.port),
            "-o",
            f"ConnectTimeout={CONNECT_TIMEOUT}",
            "-o",
            "ServerAliveInterval=15",
            "-o",
            "ServerAliveCountMax=4",
            "-o",
            "IdentityAgent=none",
            "-o",
            "LogLevel=ERROR",
        ]
        if config.known_hosts:
            command += [
                "-o",
                f"UserKnownHostsFile={config.known_hosts}",
                "-o",
                "StrictHostKeyChecking=yes",
            ]
        else:
            command += ["-o", "UserKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=no"]
        if config.key_file:
            command += [
                "-i",
                str(config.key_file),
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "BatchMode=yes",
                "-o",
                "PasswordAuthentication=no",
                "-o",
                "KbdInteractiveAuthentication=no",
            ]
        elif config.password is not None:
            command += [
                "-o",
                "PubkeyAuthentication=no",
                "-o",
                "PreferredAuthentications=password,keyboard-interactive",
                "-o",
                "NumberOfPasswordPrompts=1",
            ]
        else:
            command += ["-o", "BatchMode=yes"]
        return command

    def _login(self) -> str:
        return f"{self.config.user}@{self.config.host}"

    def _remote(self, *command: str) -> list[str]:
        """ssh running ``command`` on the server (quoted for its shell)."""
        return [*self.ssh_command(), self._login(), "--", shlex.join(command)]

    def rsync_command(self, task_id: str) -> list[str]:
        """rsync copying the files named on standard input into ``<folder>/<task_id>/``."""
        destination = f"{self.config.folder.rstrip('/') or '/'}/{task_id}/"
        return [
            _program("rsync"),
            "--recursive",
            "--times",
            "--chmod=F660",
            "--files-from=-",
            "--from0",
            "-e",
            shlex.join(self.ssh_command()),
            "./",
            f"{self._login()}:{destination}",
        ]

    async def _run(
        self, command: Sequence[str], *, cwd: Path | None = None, stdin: bytes | None = None
    ) -> tuple[int, str]:
        """Run ``command`` (with the askpass when there is a password): exit code, output."""
        password = self.config.password.get_secret_value() if self.config.password else None
        with _askpass(password if not self.config.key_file else None) as extra:
            environment = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "HOME": os.environ.get("HOME", "/"),
                "LC_ALL": "C",
                **extra,
            }
            process = await asyncio.create_subprocess_exec(
                *command,
                cwd=cwd,
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=environment,
                start_new_session=True,  # no terminal: ssh asks the askpass, never a tty
            )
            try:
                output, _ = await process.communicate(stdin)
            except asyncio.CancelledError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
                raise
        assert process.returncode is not None
        return process.returncode, scrub(output.decode("utf-8", "replace").strip())

    def _failure(self, what: str, code: int, output: str) -> DeliveryError:
        return DeliveryError(f"{what} {self.where} failed (exit {code}): {excerpt(output)}")

    async def send(self, job: SendJob, confirm: Confirm) -> SendResult:
        """rsync the pending files, mark the folder complete, run the script if asked."""
        if not self.config.known_hosts:
            log.warning(
                "target %s: no known_hosts given, the server's key is not verified", self.name
            )
        files, skipped = left_out(job.files, self.config.file_filter)
        for path in skipped:
            confirm(path, 0)
        folder = f"{self.config.folder.rstrip('/') or '/'}/{job.task_id}"
        if files:
            names = b"\0".join(os.fsencode(path.relative_to(job.task_dir)) for path in files)
            code, output = await self._run(
                self.rsync_command(job.task_id), cwd=job.task_dir, stdin=names
            )
            if code != 0:
                raise self._failure("rsync to", code, output)
            for path in files:
                confirm(path, path.stat().st_size)
        else:  # every file left out by file_filter: the folder and its marker still appear
            code, output = await self._run(self._remote("mkdir", "-p", folder))
            if code != 0:
                raise self._failure("creating the task folder on", code, output)
        code, output = await self._run(self._remote("touch", f"{folder}/{COMPLETE_MARKER}"))
        if code != 0:
            raise self._failure("marking the task complete on", code, output)
        if self.config.run_on_complete:
            script = f"{self.config.folder.rstrip('/')}/{COMPLETE_SCRIPT}"
            code, output = await self._run(self._remote("test", "-x", script))
            if code != 0:
                raise DeliveryError(
                    f"run_on_complete: {script} on {self.where} is missing or not executable"
                )
            code, output = await self._run(self._remote(script, folder, "rsync"))
            if code != 0:
                raise self._failure(f"{COMPLETE_SCRIPT} on", code, output)
        return SendResult()

    async def test(self, steps: TestSteps) -> str:
        """Programs here, login, rsync on the server, folder writable, the script if asked."""
        try:
            rsync = _program("rsync")
            _program("ssh")
        except TargetConfigError as exc:
            steps.fail("programs", exc)
        steps.ok("programs", f"{rsync} and ssh are installed")
        if not self.config.known_hosts:
            steps.warning("host key", "not verified: no known_hosts given")
        code, output = await self._timed(self._remote("true"))
        if code != 0:
            steps.fail("login", self._failure("ssh login as", code, output))
        how = "key" if self.config.key_file else "password" if self.config.password else "none"
        steps.ok("login", f"logged in as {self.config.user} ({how})")
        code, output = await self._timed(self._remote("rsync", "--version"))
        if code != 0:
            steps.fail("rsync on the server", self._failure("rsync --version on", code, output))
        steps.ok("rsync on the server", output.splitlines()[0] if output else "found")
        folder = self.config.folder
        code, output = await self._timed(self._remote("test", "-d", folder, "-a", "-w", folder))
        if code != 0:
            steps.fail("folder", DeliveryError(f"{folder} on {self.where} is no writable folder"))
        steps.ok("folder", f"{folder} is a writable folder")
        if self.config.run_on_complete:
            script = f"{folder.rstrip('/')}/{COMPLETE_SCRIPT}"
            code, output = await self._timed(self._remote("test", "-x", script))
            if code != 0:
                steps.fail(
                    "run_on_complete script",
                    DeliveryError(f"{script} on {self.where} is missing or not executable"),
                )
            steps.ok("run_on_complete script", f"{script} is executable")
        else:
            steps.skipped("run_on_complete script", "run_on_complete is off")
        return f"rsync over ssh as {self.where} into {folder} works"

    async def _timed(self, command: Sequence[str]) -> tuple[int, str]:
        try:
            return await asyncio.wait_for(self._run(command), TEST_TIMEOUT)
        except TimeoutError:
            return 255, f"no answer within {TEST_TIMEOUT:.0f} s"
