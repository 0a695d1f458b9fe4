"""DICOM over TLS: DCMTK's storescu with a client certificate, and senders without one (with one
receiver process, and with two, where the handshake runs on an inherited socket)."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest

from mercure.dicomnet.errors import AssociationError
from mercure.dicomnet.requestor import Association, ContextProposal
from mercure.testing.peers import PeerError, storescu
from mercure.testing.receiver import RunningReceiver, receiver_config, run_receiver_to_exit
from mercure.testing.series import generate_series

pytestmark = pytest.mark.peers


def tls_listener(pki: Path, *, require: bool) -> dict[str, object]:
    """Listener settings for TLS with the test server certificate."""
    tls: dict[str, object] = {
        "certificate": str(pki / "server.pem"),
        "key": str(pki / "server.key"),
    }
    if require:
        tls |= {"ca_certificate": str(pki / "ca.pem"), "require_client_certificate": True}
    return {"tls": tls}


def send_without_client_certificate(receiver: RunningReceiver, pki: Path, path: Path) -> int:
    """C-STORE one file over TLS from Python's ssl, presenting no client certificate."""

    async def send() -> int:
        context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        association = await Association.connect(
            "127.0.0.1",
            receiver.port,
            called_aet="MERCURE",
            contexts=[ContextProposal("1.2.840.10008.5.1.4.1.1.2")],
            ssl_context=context,
            server_hostname="127.0.0.1",
            acse_timeout=10,
        )
        async with association:
            return (await association.store_file(path)).status

    return asyncio.run(send())


@pytest.mark.parametrize("processes", [1, 2])
def test_storescu_with_client_certificate_is_accepted(
    receiver_factory: Callable[..., RunningReceiver], pki: Path, tmp_path: Path, processes: int
) -> None:
    """A sender presenting a certificate from the configured CA delivers over TLS."""
    receiver = receiver_factory(
        listener=tls_listener(pki, require=True), receiver={"processes": processes}
    )
    series = generate_series(tmp_path / "in", kind="tiny", count=3)
    tls = ["+tls", str(pki / "client.key"), str(pki / "client.pem"), "+cf", str(pki / "ca.pem")]
    storescu(receiver.port, series.folder, called_aet="MERCURE", extra_args=tls)
    assert len(receiver.instances()) == 3


@pytest.mark.parametrize("processes", [1, 2])
def test_sender_without_required_client_certificate_is_refused(
    receiver_factory: Callable[..., RunningReceiver], pki: Path, tmp_path: Path, processes: int
) -> None:
    """With require_client_certificate, a TLS sender without a certificate stores nothing."""
    receiver = receiver_factory(
        listener=tls_listener(pki, require=True), receiver={"processes": processes}
    )
    series = generate_series(tmp_path / "in", kind="tiny", count=1)
    with pytest.raises((AssociationError, ssl.SSLError, ConnectionError)):
        send_without_client_certificate(receiver, pki, series.paths[0])
    assert receiver.instances() == []


def test_client_certificate_optional_when_not_required(
    receiver_factory: Callable[..., RunningReceiver], pki: Path, tmp_path: Path
) -> None:
    """Without the requirement, a TLS sender without a certificate delivers."""
    receiver = receiver_factory(listener=tls_listener(pki, require=False))
    series = generate_series(tmp_path / "in", kind="tiny", count=1)
    assert send_without_client_certificate(receiver, pki, series.paths[0]) == 0
    assert len(receiver.instances()) == 1


@pytest.mark.parametrize("processes", [1, 2])
def test_plain_sender_to_tls_listener_stores_nothing(
    receiver_factory: Callable[..., RunningReceiver], pki: Path, tmp_path: Path, processes: int
) -> None:
    """A sender that does not speak TLS to a TLS listener fails and nothing is stored."""
    receiver = receiver_factory(
        listener=tls_listener(pki, require=False), receiver={"processes": processes}
    )
    series = generate_series(tmp_path / "in", kind="tiny", count=1)
    with pytest.raises(PeerError):
        storescu(receiver.port, series.folder, called_aet="MERCURE", timeout=30)
    assert receiver.instances() == []


def test_unreadable_certificate_stops_the_receiver_with_a_clear_error(tmp_path: Path) -> None:
    """A listener whose certificate cannot be loaded: exit 1, the log names listener and file."""

    missing = tmp_path / "missing.pem"
    config = receiver_config(
        tmp_path / "data", listener={"tls": {"certificate": str(missing), "key": str(missing)}}
    )
    result = run_receiver_to_exit(config, tmp_path / "mercure.yaml")
    assert result.returncode == 1
    assert "listener 'default': cannot load its TLS certificate or key" in result.stderr


@pytest.mark.parametrize("processes", [1, 2])
def test_port_in_use_stops_the_receiver_with_a_clear_error(tmp_path: Path, processes: int) -> None:
    """A listener port someone else holds: exit 1, the log names the listener and the port
    (with several processes the parent opens the port and says so)."""

    with socket.socket() as holder:
        holder.bind(("0.0.0.0", 0))
        holder.listen()
        port = holder.getsockname()[1]
        config = receiver_config(tmp_path / "data", port, receiver={"processes": processes})
        result = run_receiver_to_exit(config, tmp_path / "mercure.yaml")
    assert result.returncode == 1
    assert f"listener 'default' cannot listen on 0.0.0.0:{port}" in result.stderr
