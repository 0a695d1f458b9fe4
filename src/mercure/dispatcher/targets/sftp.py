"""The ``sftp`` target (paramiko): each task into ``<folder>/<task_id>/``, then ``.complete``.

A file is uploaded under a dot-name and renamed into place, so whoever watches the folder never
sees half a file; the ``.complete`` marker (holding the number of instances) is written last,
once every instance of the task is there. Files matching ``file_filter`` (comma-separated glob
patterns, mercure's meaning) are not uploaded; they count as done for this target. The
server's host key is checked against ``known_hosts`` when given; without it any key is
accepted (and a warning is logged).
"""

from __future__ import annotations

import asyncio
import io
import logging
import posixpath
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import paramiko

from mercure.core.config.models import SftpTarget
from mercure.dispatcher.errors import DeliveryError
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
TIMEOUT = 20.0
TEST_TIMEOUT = 10.0


class SftpPlugin(TargetPlugin):
    """Uploads over SFTP."""

    def __init__(self, name: str, config: SftpTarget) -> None:
        super().__init__(name)
        self.config = config

    @property
    def where(self) -> str:
        """user@host:port, for messages."""
        return f"{self.config.user}@{self.config.host}:{self.config.port}"

    def _client(self, *, warn: bool) -> paramiko.SSHClient:
        """An SSH client that verifies the server's key against known_hosts when it is given.

        Raises :class:`DeliveryError` when known_hosts cannot be read.
        """
        config = self.config
        client = paramiko.SSHClient()
        if config.known_hosts:
            try:
                client.load_host_keys(str(config.known_hosts))
            except OSError as exc:
                client.close()
                raise DeliveryError(f"cannot read known_hosts {config.known_hosts}: {exc}") from exc
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
        else:
            if warn:
                log.warning(
                    "target %s: no known_hosts given, the server's key is not verified", self.name
                )
            client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        return client

    def _connect(
        self, client: paramiko.SSHClient, timeout: float, sock: socket.socket | None = None
    ) -> None:
        """Open the SSH session and log in with the configured password or key, nothing else."""
        config = self.config
        client.connect(
            config.host,
            config.port,
            username=config.user,
            password=config.password.get_secret_value() if config.password else None,
            key_filename=str(config.key_file) if config.key_file else None,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
            allow_agent=False,
            look_for_keys=False,
            sock=sock,
        )

    @contextmanager
    def _session(self) -> Iterator[paramiko.SFTPClient]:
        config = self.config
        client = self._client(warn=True)
        try:
            self._connect(client, TIMEOUT)
            sftp = client.open_sftp()
        except paramiko.AuthenticationException as exc:
            client.close()
            raise DeliveryError(f"SFTP login as {self.where} failed: {exc}") from exc
        except socket.gaierror as exc:
            client.close()
            raise DeliveryError(f"unknown host {config.host!r}: {exc.strerror}") from exc
        except paramiko.SSHException as exc:
            client.close()
            raise DeliveryError(f"SSH connection to {self.where} failed: {exc}") from exc
        except OSError as exc:
            client.close()
            raise DeliveryError(f"cannot connect to {self.where}: {exc}") from exc
        try:
            yield sftp
        except (OSError, paramiko.SSHException) as exc:
            raise DeliveryError(f"SFTP transfer to {self.where} failed: {exc}") from exc
        finally:
            client.close()

    async def send(self, job: SendJob, confirm: Confirm) -> SendResult:
        """Upload the pending files, then the marker."""
        return await asyncio.to_thread(self._send, job, confirm)

    def _send(self, job: SendJob, confirm: Confirm) -> SendResult:
        folder = posixpath.join(self.config.folder, job.task_id)
        files, skipped = left_out(job.files, self.config.file_filter)
        for path in skipped:
            confirm(path, 0)
        with self._session() as sftp:
            _makedirs(sftp, folder)
            for path in files:
                temp = posixpath.join(folder, f".{path.name}.part")
                attributes = sftp.put(str(path), temp)
                sftp.posix_rename(temp, posixpath.join(folder, path.name))
                confirm(path, attributes.st_size or path.stat().st_size)
            temp = posixpath.join(folder, f"{COMPLETE_MARKER}.part")
            delivered = sum(1 for name in sftp.listdir(folder) if not name.startswith("."))
            sftp.putfo(io.BytesIO(f"{delivered}\n".encode()), temp)
            sftp.posix_rename(temp, posixpath.join(folder, COMPLETE_MARKER))
        return SendResult()

    async def test(self, steps: TestSteps) -> str:
        """Connect, verify the host key, log in, write and remove a probe file."""
        return await asyncio.to_thread(self._test, steps)

    def _test(self, steps: TestSteps) -> str:
        config = self.config
        try:
            sock = socket.create_connection((config.host, config.port), timeout=TEST_TIMEOUT)
        except socket.gaierror as exc:
            steps.fail("connect", DeliveryError(f"unknown host {config.host!r}: {exc.strerror}"))
        except OSError as exc:
            steps.fail(
                "connect", DeliveryError(f"cannot connect to {config.host}:{config.port}: {exc}")
            )
        steps.ok("connect", f"{config.host}:{config.port} accepted the connection")
        try:
            client = self._client(warn=False)
        except DeliveryError as exc:
            sock.close()
            steps.fail("host key verified", exc)
        try:
            try:
                self._connect(client, TEST_TIMEOUT, sock)
            except paramiko.BadHostKeyException as exc:
                steps.fail(
                    "host key verified",
                    DeliveryError(f"the server's key is not the one in known_hosts: {exc}"),
                )
            except paramiko.AuthenticationException as exc:
                self._host_key_step(steps, client)
                steps.fail("login", DeliveryError(f"SFTP login as {self.where} failed: {exc}"))
            except paramiko.SSHException as exc:
                step = "host key verified" if "known_hosts" in str(exc) else "SSH handshake"
                steps.fail(step, DeliveryError(f"SSH connection to {self.where} failed: {exc}"))
            except OSError as exc:
                steps.fail("SSH handshake", DeliveryError(f"{self.where}: {exc}"))
            self._host_key_step(steps, client)
            how = "key" if config.key_file else "password" if config.password else "no secret"
            try:
                sftp = client.open_sftp()
            except (OSError, paramiko.SSHException) as exc:
                steps.fail("login", DeliveryError(f"no SFTP service for {self.where}: {exc}"))
            steps.ok("login", f"logged in as {config.user} ({how}), SFTP session open")
            probe = posixpath.join(config.folder, ".mercure-test-target")
            try:
                sftp.putfo(io.BytesIO(b"mercure test-target\n"), probe)
            except (OSError, paramiko.SSHException) as exc:
                steps.fail("write probe", DeliveryError(f"cannot write {probe}: {exc}"))
            steps.ok("write probe", f"wrote {probe}")
            try:
                sftp.remove(probe)
            except (OSError, paramiko.SSHException) as exc:
                steps.fail("remove probe", DeliveryError(f"cannot remove {probe}: {exc}"))
            steps.ok("remove probe", f"removed {probe}")
        finally:
            client.close()
            sock.close()
        return f"SFTP login as {self.where} and a write into {config.folder} succeeded"

    def _host_key_step(self, steps: TestSteps, client: paramiko.SSHClient) -> None:
        transport = client.get_transport()
        key = transport.get_remote_server_key() if transport is not None else None
        shown = f"{key.get_name()} {key.fingerprint}" if key is not None else "unknown key"
        if self.config.known_hosts:
            steps.ok("host key verified", f"{shown} is in {self.config.known_hosts}")
        else:
            steps.warning(
                "host key verified",
                f"not verified: no known_hosts given; the server showed {shown}",
            )


def _makedirs(sftp: paramiko.SFTPClient, folder: str) -> None:
    missing = []
    current = folder
    while current not in ("", "/", "."):
        try:
            sftp.stat(current)
            break
        except FileNotFoundError:
            missing.append(current)
            current = posixpath.dirname(current)
    for part in reversed(missing):
        sftp.mkdir(part)
