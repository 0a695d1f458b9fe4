"""Fixtures of the dicomnet tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from dicomnet_helpers import RawPeer, ServerThread

from mercure.dicomnet import AssociationHandler, ListenerSettings, scanner
from mercure.dicomnet.recording import RecordingHandler
from mercure.testing.ports import free_port


@pytest.fixture(scope="module", params=["compiled", "python"])
def scanner_implementation(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run a module's tests once with each scanner :func:`~scanner.new_scanner` makes: the
    compiled one, and the Python one (as where no C compiler was there at install)."""
    if request.param == "compiled" and scanner.CompiledScanner is None:
        pytest.fail("the compiled scanner is not built: run scripts/install.sh")
    with pytest.MonkeyPatch.context() as patch:
        if request.param == "python":
            patch.setattr(scanner, "CompiledScanner", None)
        yield request.param


@pytest.fixture
def scp() -> Iterator[Callable[..., ServerThread]]:
    """Factory: ``scp(handler=None, **ListenerSettings fields)`` -> running ServerThread."""
    started: list[ServerThread] = []

    def start(handler: AssociationHandler | None = None, **settings: Any) -> ServerThread:
        settings.setdefault("host", "127.0.0.1")
        settings.setdefault("port", free_port())
        settings.setdefault("ae_title", "DICOMNET")
        server = ServerThread(handler or RecordingHandler(), ListenerSettings(**settings))
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
    errors = [context for server in started for context in server.loop_errors]
    assert not errors, f"the server's event loop reported errors: {errors}"


@pytest.fixture
def raw_peer() -> Iterator[Callable[[int], RawPeer]]:
    """Factory: ``raw_peer(port)`` -> connected RawPeer; all closed afterwards."""
    peers: list[RawPeer] = []

    def connect(port: int) -> RawPeer:
        peer = RawPeer(port)
        peers.append(peer)
        return peer

    yield connect
    for peer in peers:
        peer.close()
