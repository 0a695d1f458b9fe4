"""Private and unknown SOP classes at a real receiver: refused by default, accepted as configured.

Senders: DCMTK storescu (which proposes a SOP class it does not know only from a presentation
context profile, ``-xf``), findscu, and pynetdicom's SCU.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE

from mercure.dicomnet.filemeta import read_file_meta
from mercure.testing.peers import storescu
from mercure.testing.peers.dcmtk import dcmtk_program
from mercure.testing.peers.process import run_client
from mercure.testing.receiver import (
    RunningReceiver,
    dataset_bytes,
    receiver_config,
    run_receiver_to_exit,
)
from mercure.testing.series import GeneratedSeries, generate_series
from mercure.testing.wait import wait_until

pytestmark = pytest.mark.peers

SIEMENS_CSA_NON_IMAGE = "1.3.12.2.1107.5.9.1"
SOME_PRIVATE_CLASS = "1.2.826.0.1.3680043.9.7433.42.1"
VERIFICATION = "1.2.840.10008.1.1"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
MODALITY_WORKLIST_FIND = "1.2.840.10008.5.1.4.31"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
ABSTRACT_SYNTAX_NOT_SUPPORTED = 3


def private_series(folder: Path, sop_class: str, count: int = 3) -> GeneratedSeries:
    """A tiny series whose SOP class (dataset and File Meta) is ``sop_class``."""
    return generate_series(
        folder, kind="tiny", count=count, seed=11, tags={"SOPClassUID": sop_class}
    )


def storescu_profile(folder: Path, sop_class: str) -> list[str]:
    """storescu arguments proposing ``sop_class`` in Explicit/Implicit VR LE from a profile."""
    config = folder / "storescu-private.cfg"
    config.write_text(
        "[[TransferSyntaxes]]\n[Uncompressed]\n"
        "TransferSyntax1 = LittleEndianExplicit\nTransferSyntax2 = LittleEndianImplicit\n"
        f"[[PresentationContexts]]\n[Private]\nPresentationContext1 = {sop_class}\\Uncompressed\n"
        "[[Profiles]]\n[Private]\nPresentationContexts = Private\n"
    )
    return ["-xf", str(config), "Private"]


def assert_arrived_as_sent(
    receiver: RunningReceiver, series: GeneratedSeries, calling: str
) -> None:
    """Each instance is incoming/<series>/<sop>.dcm, dataset bytes as sent, File Meta right."""
    [folder] = receiver.series_folders()
    assert folder.name == series.series_uid
    for instance in series.instances:
        received = folder / f"{instance.sop_instance_uid}.dcm"
        assert dataset_bytes(received) == dataset_bytes(instance.path)
        meta = pydicom.dcmread(received, stop_before_pixels=True).file_meta
        assert meta.MediaStorageSOPClassUID == series.sop_class_uid
        assert meta.MediaStorageSOPInstanceUID == instance.sop_instance_uid
        assert meta.TransferSyntaxUID == EXPLICIT_VR_LITTLE_ENDIAN
        assert meta.SourceApplicationEntityTitle == calling
        assert read_file_meta(received).sop_class_uid == series.sop_class_uid
    journal = (folder / "journal.jsonl").read_text().splitlines()
    stored = {json.loads(line).get("sop") for line in journal} - {None}
    assert stored == series.sop_instance_uids


def test_default_listener_refuses_private_class_from_storescu(
    receiver: RunningReceiver, tmp_path: Path
) -> None:
    """storescu finds no acceptable context and fails; nothing is stored; the log names the UID."""
    series = private_series(tmp_path / "in", SIEMENS_CSA_NON_IMAGE)
    result = storescu(
        receiver.port,
        series.folder,
        called_aet="MERCURE",
        extra_args=storescu_profile(tmp_path, SIEMENS_CSA_NON_IMAGE),
        check=False,
    )
    assert result.returncode != 0
    assert "No Acceptable Presentation Contexts" in result.stdout + result.stderr
    wait_until(
        lambda: f"abstract syntax not supported: {SIEMENS_CSA_NON_IMAGE}" in receiver.log_text(),
        timeout=10,
        message="the refused SOP class in the receiver's log",
    )
    assert receiver.instances() == []


def test_default_listener_refuses_private_class_from_pynetdicom(
    receiver: RunningReceiver, tmp_path: Path
) -> None:
    """pynetdicom sees its private context refused and has nothing to send the instance on."""
    series = private_series(tmp_path / "in", SIEMENS_CSA_NON_IMAGE, count=1)
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(SIEMENS_CSA_NON_IMAGE, EXPLICIT_VR_LITTLE_ENDIAN)
    ae.add_requested_context(VERIFICATION)
    assoc = ae.associate("127.0.0.1", receiver.port, ae_title="MERCURE")
    assert assoc.is_established
    try:
        [refused] = assoc.rejected_contexts
        assert (refused.abstract_syntax, refused.result) == (
            SIEMENS_CSA_NON_IMAGE,
            ABSTRACT_SYNTAX_NOT_SUPPORTED,
        )
        with pytest.raises(ValueError, match="No presentation context"):
            assoc.send_c_store(series.paths[0])
        assert assoc.send_c_echo().Status == 0x0000
    finally:
        assoc.release()
    assert receiver.instances() == []


@pytest.mark.parametrize(
    ("listener", "sop_class"),
    [
        ({"extra_sop_classes": [SIEMENS_CSA_NON_IMAGE]}, SIEMENS_CSA_NON_IMAGE),
        ({"accept_unknown_sop_classes": True}, SOME_PRIVATE_CLASS),
    ],
    ids=["extra_sop_classes", "accept_unknown_sop_classes"],
)
def test_private_class_from_storescu_arrives_byte_identical(
    receiver_factory: Callable[..., RunningReceiver],
    tmp_path: Path,
    listener: dict[str, object],
    sop_class: str,
) -> None:
    """An accepted private class is placed like any instance, File Meta naming the class."""
    receiver = receiver_factory(listener=listener)
    series = private_series(tmp_path / "in", sop_class)
    storescu(
        receiver.port,
        series.folder,
        calling_aet="CT01",
        called_aet="MERCURE",
        extra_args=storescu_profile(tmp_path, sop_class),
    )
    assert_arrived_as_sent(receiver, series, "CT01")


def test_extra_class_listener_still_refuses_another_private_class(
    receiver_factory: Callable[..., RunningReceiver], tmp_path: Path
) -> None:
    """extra_sop_classes names what is accepted; another private class stays refused."""
    receiver = receiver_factory(listener={"extra_sop_classes": [SIEMENS_CSA_NON_IMAGE]})
    series = private_series(tmp_path / "in", SOME_PRIVATE_CLASS)
    result = storescu(
        receiver.port,
        series.folder,
        called_aet="MERCURE",
        extra_args=storescu_profile(tmp_path, SOME_PRIVATE_CLASS),
        check=False,
    )
    assert result.returncode != 0
    assert receiver.instances() == []


def test_promiscuous_listener_stores_private_class_but_refuses_query_and_worklist(
    receiver_factory: Callable[..., RunningReceiver], tmp_path: Path
) -> None:
    """pynetdicom: an arbitrary private class is stored, C-FIND/C-MOVE/worklist are refused."""
    receiver = receiver_factory(listener={"accept_unknown_sop_classes": True})
    series = private_series(tmp_path / "in", SOME_PRIVATE_CLASS, count=2)
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(SOME_PRIVATE_CLASS, EXPLICIT_VR_LITTLE_ENDIAN)
    ae.add_requested_context(VERIFICATION)
    for query_model in (STUDY_ROOT_FIND, STUDY_ROOT_MOVE, MODALITY_WORKLIST_FIND):
        ae.add_requested_context(query_model)
    assoc = ae.associate("127.0.0.1", receiver.port, ae_title="MERCURE")
    assert assoc.is_established
    try:
        refused = {c.abstract_syntax: c.result for c in assoc.rejected_contexts}
        assert refused == {
            STUDY_ROOT_FIND: ABSTRACT_SYNTAX_NOT_SUPPORTED,
            STUDY_ROOT_MOVE: ABSTRACT_SYNTAX_NOT_SUPPORTED,
            MODALITY_WORKLIST_FIND: ABSTRACT_SYNTAX_NOT_SUPPORTED,
        }
        for path in series.paths:
            assert assoc.send_c_store(path).Status == 0x0000
        assert assoc.send_c_echo().Status == 0x0000
    finally:
        assoc.release()
    assert_arrived_as_sent(receiver, series, "MODALITY")


@pytest.mark.parametrize("model", [("-S", "STUDY"), ("-W", None)], ids=["study-root", "worklist"])
def test_promiscuous_listener_refuses_findscu(
    receiver_factory: Callable[..., RunningReceiver], model: tuple[str, str | None]
) -> None:
    """DCMTK findscu (Study Root, Modality Worklist) gets no acceptable context."""
    receiver = receiver_factory(listener={"accept_unknown_sop_classes": True})
    flag, level = model
    keys = ["-k", f"QueryRetrieveLevel={level}"] if level else ["-k", "PatientName"]
    result = run_client(
        [dcmtk_program("findscu"), flag, "-aec", "MERCURE", *keys, "127.0.0.1", receiver.port],
        what="findscu",
        timeout=30,
        check=False,
    )
    assert result.returncode != 0
    assert "No Acceptable Presentation Contexts" in result.stdout + result.stderr


def test_invalid_extra_sop_class_stops_the_receiver_with_its_key_path(tmp_path: Path) -> None:
    """A UID with a leading-zero component: the receiver does not start and names where it is."""
    config = receiver_config(
        tmp_path / "data", listener={"extra_sop_classes": ["1.3.12.2.1107.5.09.1"]}
    )
    result = run_receiver_to_exit(config, tmp_path / "mercure.yaml")
    assert result.returncode != 0
    assert (
        "receiver.listeners[0].extra_sop_classes[0]: not a valid UID: "
        "component '09' has a leading zero"
    ) in result.stderr
