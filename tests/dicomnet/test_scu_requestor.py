"""The requestor: our SCU towards DCMTK's storescp and towards our own SCP (also over TLS)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
from dicomnet_helpers import ServerThread, dataset_bytes, pydicom_file, pydicom_files

from mercure.dicomnet import (
    REJECT_CALLING_AET,
    Association,
    AssociationError,
    AssociationRejected,
    ContextProposal,
    DicomFileError,
    PresentationContextError,
    read_file_meta,
)
from mercure.dicomnet.recording import RecordingHandler
from mercure.dicomnet.uids import (
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    VERIFICATION_SOP_CLASS,
    storage_sop_classes,
)
from mercure.testing.peers import StoreSCP
from mercure.testing.series import GeneratedSeries
from mercure.testing.wait import wait_until

VERIFY = ContextProposal(VERIFICATION_SOP_CLASS)


def proposals_for(paths: list[Path]) -> list[ContextProposal]:
    """One context per (SOP class, transfer syntax) of the files, Verification too."""
    pairs = sorted({(m.sop_class_uid, m.transfer_syntax_uid) for m in map(read_file_meta, paths)})
    return [VERIFY, *(ContextProposal(sop_class, (syntax,)) for sop_class, syntax in pairs)]


async def send_files(port: int, paths: list[Path], **connect: object) -> list[int]:
    """Send files on one association; the statuses in order."""
    async with await Association.connect(
        "127.0.0.1", port, called_aet="DICOMNET", contexts=proposals_for(paths), **connect
    ) as assoc:
        return [(await assoc.store_file(path)).status for path in paths]


@pytest.mark.peers
def test_series_reaches_dcmtk_storescp(
    storescp: Callable[..., StoreSCP], tiny_series: GeneratedSeries
) -> None:
    """A generated series sent with store_file lands complete in storescp's folder."""
    receiver = storescp()
    statuses = asyncio.run(send_files(receiver.port, tiny_series.paths))
    assert statuses == [0] * len(tiny_series)
    receiver.wait_for_files(len(tiny_series))
    assert receiver.sop_instance_uids() == tiny_series.sop_instance_uids


@pytest.mark.peers
def test_echo_to_storescp_succeeds(storescp: Callable[..., StoreSCP]) -> None:
    """C-ECHO towards DCMTK answers success, and the association releases cleanly."""
    receiver = storescp()

    async def echo() -> int:
        async with await Association.connect(
            "127.0.0.1", receiver.port, called_aet="STORESCP"
        ) as assoc:
            return (await assoc.echo()).status

    assert asyncio.run(echo()) == 0


def test_every_pydicom_storage_file_arrives_byte_identical(
    scp: Callable[..., ServerThread],
) -> None:
    """All storage instances among pydicom's test files go through our SCU and SCP unchanged."""
    files = []
    for path in pydicom_files():
        try:
            meta = read_file_meta(path)
        except DicomFileError:
            continue
        if meta.sop_class_uid in storage_sop_classes():
            files.append(path)
    assert len(files) > 100
    server = scp()
    statuses = asyncio.run(send_files(server.port, files))
    assert statuses == [0] * len(files)
    received = server.handler.instances
    for path, instance in zip(files, received, strict=True):
        assert instance.context.transfer_syntax_uid == read_file_meta(path).transfer_syntax_uid
        assert instance.dataset == dataset_bytes(path), path.name


def test_large_instance_is_split_for_a_peer_with_a_small_pdu(
    scp: Callable[..., ServerThread], ct_series: GeneratedSeries
) -> None:
    """A 0.5 MB instance to a peer accepting only 4 KiB PDUs arrives intact."""
    server = scp(max_pdu=4096)
    path = ct_series.paths[0]
    assert asyncio.run(send_files(server.port, [path])) == [0]
    (instance,) = server.handler.instances
    assert instance.dataset == dataset_bytes(path)


def test_in_memory_dataset_is_sent(scp: Callable[..., ServerThread]) -> None:
    """store_dataset sends bytes held in memory, with the SOP UIDs given."""
    server = scp()
    data = dataset_bytes(pydicom_file("MR_small_implicit.dcm"))

    async def send() -> int:
        mr = "1.2.840.10008.5.1.4.1.1.4"
        contexts = [ContextProposal(mr, (IMPLICIT_VR_LITTLE_ENDIAN,))]
        async with await Association.connect(
            "127.0.0.1", server.port, called_aet="X", contexts=contexts
        ) as assoc:
            return (
                await assoc.store_dataset(mr, "1.2.3.99", IMPLICIT_VR_LITTLE_ENDIAN, data)
            ).status

    assert asyncio.run(send()) == 0
    (instance,) = server.handler.instances
    assert (instance.context.sop_instance_uid, instance.dataset) == ("1.2.3.99", data)


def test_rejection_raises_with_the_peers_reason(scp: Callable[..., ServerThread]) -> None:
    """An A-ASSOCIATE-RJ surfaces as AssociationRejected carrying result, source and reason."""
    server = scp(RecordingHandler(accept=lambda request: REJECT_CALLING_AET))

    async def connect() -> None:
        await Association.connect(
            "127.0.0.1", server.port, called_aet="DICOMNET", calling_aet="NOBODY"
        )

    with pytest.raises(AssociationRejected, match="calling AE title not recognised") as rejected:
        asyncio.run(connect())
    assert (rejected.value.result, rejected.value.source, rejected.value.reason) == (1, 1, 3)


def test_file_in_a_syntax_the_peer_refused_raises_and_the_association_survives(
    scp: Callable[..., ServerThread],
) -> None:
    """No accepted context for the file's syntax: PresentationContextError; echo still works."""
    server = scp(transfer_syntaxes=(IMPLICIT_VR_LITTLE_ENDIAN,))
    path = pydicom_file("CT_small.dcm")

    async def attempt() -> int:
        contexts = [
            VERIFY,
            ContextProposal(read_file_meta(path).sop_class_uid, (EXPLICIT_VR_LITTLE_ENDIAN,)),
        ]
        async with await Association.connect(
            "127.0.0.1", server.port, called_aet="X", contexts=contexts
        ) as assoc:
            with pytest.raises(PresentationContextError, match="accepted no context"):
                await assoc.store_file(path)
            return (await assoc.echo()).status

    assert asyncio.run(attempt()) == 0


def test_unreachable_peer_raises_association_error() -> None:
    """Connecting to a closed port is an AssociationError (transient), not an OSError."""
    from mercure.core.errors import TransientError
    from mercure.testing.ports import free_port

    async def connect() -> None:
        await Association.connect("127.0.0.1", free_port(), called_aet="NOBODY", connect_timeout=2)

    with pytest.raises(TransientError, match="cannot connect"):
        asyncio.run(connect())


@pytest.mark.peers
def test_tls_with_required_client_certificate(scp: Callable[..., ServerThread], pki: Path) -> None:
    """Over TLS with a client certificate: stored byte-identical, the handler sees the certificate;
    without a certificate the handshake fails and nothing is stored."""
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki / "ca.pem"))
    server_context.load_cert_chain(pki / "server.pem", pki / "server.key")
    server_context.verify_mode = ssl.CERT_REQUIRED
    server = scp(ssl_context=server_context)
    path = pydicom_file("CT_small.dcm")
    client = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    client.load_cert_chain(pki / "client.pem", pki / "client.key")
    assert asyncio.run(send_files(server.port, [path], ssl_context=client)) == [0]
    handler = server.handler
    assert handler.instances[0].dataset == dataset_bytes(path)
    assert wait_until(lambda: handler.opened)[0].tls

    anonymous = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    with pytest.raises(AssociationError):
        asyncio.run(send_files(server.port, [path], ssl_context=anonymous))
    assert len(handler.instances) == 1
