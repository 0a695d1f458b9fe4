"""``mercure webgui`` as a real process: start, session key, HTTPS, clean stop."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from mercure.core.heartbeat import read_heartbeats
from mercure.testing.ports import free_port
from mercure.testing.wait import wait_until


class WebGuiProcess:
    """``mercure webgui --config`` in a subprocess (no bookkeeper: the page says so)."""

    def __init__(self, folder: Path, **webgui: object) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.config = folder / "mercure.yaml"
        document = {
            "data_dir": str(folder / "data"),
            "bookkeeper": {"port": free_port(), "api_key": "webgui-test-key-0123456789"},
            "webgui": {"port": self.port, **webgui},
            "supervisor": {"heartbeat_interval": 0.5},
        }
        self.config.write_text(yaml.safe_dump(document))
        self.log = folder / "webgui.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> subprocess.Popen[bytes]:
        """Start it (do not wait)."""
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "mercure", "webgui", "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self.process

    def wait_listening(self) -> None:
        """Until the port accepts connections (fails early if the process ends)."""

        def listening() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"webgui exited: {self.log.read_text()[-3000:]}")
            with socket.socket() as probe:
                return probe.connect_ex(("127.0.0.1", self.port)) == 0

        wait_until(listening, timeout=30, interval=0.05, message="webgui listening")

    def stop(self) -> int:
        """SIGTERM and the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)

    def close(self) -> None:
        """Kill it if a test left it running."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def webgui_process(tmp_path: Path) -> Iterator[Callable[..., WebGuiProcess]]:
    """Factory of webgui processes; each is killed at the end if still running."""
    made: list[WebGuiProcess] = []

    def make(**webgui: object) -> WebGuiProcess:
        process = WebGuiProcess(tmp_path / f"site{len(made)}", **webgui)
        made.append(process)
        return process

    yield make
    for process in made:
        process.close()


@pytest.mark.slow
def test_serves_the_sign_in_page_makes_its_key_and_stops_cleanly(
    webgui_process: Callable[..., WebGuiProcess],
) -> None:
    """The first start makes data/.secrets/webgui.key (0600); it beats; SIGTERM ends it 0."""
    web = webgui_process()
    web.start()
    web.wait_listening()
    page = httpx.get(f"http://127.0.0.1:{web.port}/login", timeout=10)
    assert page.status_code == 200
    assert "Sign-in is not possible right now" in page.text  # no bookkeeper runs here
    key = web.folder / "data" / ".secrets" / "webgui.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert len(key.read_text().strip()) >= 40
    run_dir = web.folder / "data" / "run"
    wait_until(
        lambda: any(
            b.service == "webgui" and b.state == "running" for b in read_heartbeats(run_dir)
        ),
        timeout=10,
    )
    assert web.stop() == 0
    assert "webgui stopped" in web.log.read_text()


@pytest.mark.slow
def test_serves_https_with_the_configured_certificate(
    webgui_process: Callable[..., WebGuiProcess], pki: Path
) -> None:
    """tls_certificate/tls_key: HTTPS only, HSTS, Secure cookies."""
    web = webgui_process(tls_certificate=str(pki / "server.pem"), tls_key=str(pki / "server.key"))
    web.start()
    web.wait_listening()
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    page = httpx.get(f"https://127.0.0.1:{web.port}/login", verify=context, timeout=10)
    assert page.status_code == 200
    assert page.headers["strict-transport-security"].startswith("max-age=")
    assert "Secure" in page.headers["set-cookie"]
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{web.port}/login", timeout=5)
    assert web.stop() == 0


@pytest.mark.slow
def test_unusable_certificate_stops_the_start_with_its_name(
    webgui_process: Callable[..., WebGuiProcess], tmp_path: Path
) -> None:
    """A key that does not belong to the certificate is named at start-up."""
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("not a certificate\n")
    web = webgui_process(tls_certificate=str(bogus), tls_key=str(bogus))
    process = web.start()
    assert process.wait(timeout=60) != 0
    assert f"webgui cannot use tls_certificate {bogus}" in web.log.read_text()


@pytest.mark.slow
def test_busy_port_is_named(webgui_process: Callable[..., WebGuiProcess]) -> None:
    """Another program on the port: the service says which address and port."""
    web = webgui_process()
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", web.port))
        taken.listen()
        process = web.start()
        assert process.wait(timeout=60) != 0
    assert f"webgui cannot listen on 127.0.0.1:{web.port}" in web.log.read_text()
    assert os.path.exists(web.log)
