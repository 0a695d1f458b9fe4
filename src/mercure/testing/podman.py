"""Podman's Docker-compatible API as a test peer for the ``docker`` module runner.

No Docker engine runs on the test machines, but ``podman system service`` serves the Docker
Engine API on a Unix socket. Two settings are needed in this sandbox (it may not raise resource
limits): ``default_ulimits = []`` and the ``runc`` runtime, given by ``CONTAINERS_CONF``. Module
images are built locally (no registry is reachable): ``FROM scratch`` plus the static busybox
and a shell script.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path
from types import TracebackType

import docker

from mercure.testing.wait import wait_until

BUSYBOX = "/bin/busybox"
CONTAINERS_CONF = '[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = "runc"\n'


def podman_available() -> bool:
    """Whether podman, runc and a static busybox are installed."""
    return all(shutil.which(name) for name in ("podman", "runc")) and Path(BUSYBOX).exists()


class PodmanService:
    """``podman system service`` on a socket in ``folder``; stopped by its pid."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.socket = folder / "podman.sock"
        self.process: subprocess.Popen[bytes] | None = None
        self._client: docker.DockerClient | None = None

    @property
    def url(self) -> str:
        """The Docker API URL (``unix://...``) for clients and ``processing.docker_url``."""
        return f"unix://{self.socket}"

    def client(self) -> docker.DockerClient:
        """The Docker SDK client talking to this service (closed when the service stops)."""
        if self._client is None:
            self._client = docker.DockerClient(base_url=self.url)
        return self._client

    def start(self) -> PodmanService:
        """Start the service and wait until it answers a ping."""
        self.folder.mkdir(parents=True, exist_ok=True)
        conf = self.folder / "containers.conf"
        conf.write_text(CONTAINERS_CONF)
        env = {**os.environ, "CONTAINERS_CONF": str(conf)}
        log = open(self.folder / "podman.log", "wb")  # noqa: SIM115 - lives as long as the service
        self.process = subprocess.Popen(
            ["podman", "system", "service", "--time=0", self.url],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        wait_until(self._answers, 30, message="podman API socket", ignore=(OSError,))
        self.client().ping()
        return self

    def _answers(self) -> bool:
        # A raw request: a Docker client would leak its socket when the service is not up yet.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(self.socket))
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: podman\r\n\r\n")
            return sock.recv(64).startswith(b"HTTP/1.")

    def stop(self) -> None:
        """Stop the service (its process group) by the pid this object started."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def build_module_image(self, tag: str, script: str, folder: Path) -> str:
        """Build ``tag`` from scratch: busybox (applets on PATH) and ``script`` as its command."""
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(BUSYBOX, folder / "busybox")
        (folder / "busybox").chmod(0o755)
        (folder / "module.sh").write_text(script)
        (folder / "Dockerfile").write_text(
            "FROM scratch\n"
            "COPY busybox /bin/busybox\n"
            "COPY module.sh /module.sh\n"
            'RUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
            "ENV PATH=/bin\n"
            'CMD ["/bin/sh", "/module.sh"]\n'
        )
        self.client().images.build(path=str(folder), tag=tag, rm=True)
        return tag

    def __enter__(self) -> PodmanService:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
