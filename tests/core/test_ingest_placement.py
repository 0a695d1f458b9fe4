"""The receiver's write path (core/ingest/placement.py): the journal line and the first write."""

from __future__ import annotations

import asyncio
import errno
import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mercure.core.datafolder import Stage
from mercure.core.ingest.placement import JOURNAL, AssociationState, Placer, journal_line
from mercure.dicomnet.dimse import CANNOT_UNDERSTAND, OUT_OF_RESOURCES, SUCCESS
from mercure.dicomnet.errors import StoreRefused
from mercure.dicomnet.filemeta import build_file_meta, read_file_meta
from mercure.dicomnet.handler import AssociationInfo, StoreContext
from mercure.testing.series import generate_series

EXPLICIT_LE = "1.2.840.10008.1.2.1"


def _association() -> AssociationInfo:
    return AssociationInfo(
        id=1,
        calling_aet="MODALITY",
        called_aet="MERCURE",
        peer_host="127.0.0.1",
        peer_port=4242,
        contexts=(),
        peer_max_pdu=16384,
        tls=False,
        started_at=0.0,
    )


def _context(sop_class: str, sop_instance: str, syntax: str = EXPLICIT_LE) -> StoreContext:
    return StoreContext(_association(), sop_class, sop_instance, syntax, 1, 1, 0, "")


@settings(max_examples=300, deadline=None)
@given(
    texts=st.lists(st.text(), min_size=5, max_size=5),
    sop=st.text(),
    syntax=st.text(),
    study=st.none() | st.text(),
    stamp=st.floats(min_value=0, max_value=1e10, allow_nan=False),
    size=st.integers(min_value=0, max_value=1 << 40),
)
def test_journal_line_is_exactly_what_json_dumps_writes(
    texts: list[str], sop: str, syntax: str, study: str | None, stamp: float, size: int
) -> None:
    """Quotes, backslashes, control characters, any Unicode (lone surrogates too): the line
    built field by field is byte for byte ``json.dumps`` of the whole record."""
    key, listener, calling, called, address = texts
    state = AssociationState(
        key=key, listener=listener, calling_aet=calling, called_aet=called, address=address
    )
    context = _context("1.2.3", sop, syntax)
    record = {
        "sop": sop,
        "calling_aet": calling,
        "called_aet": called,
        "address": address,
        "listener": listener,
        "assoc": key,
        "time": stamp,
        "size": size,
        "ts": syntax,
        "study": study,
    }
    expected = (json.dumps(record) + "\n").encode()
    assert journal_line(state, context, stamp, size, study) == expected
    # The association's part is encoded once and reused: the second line is as exact.
    assert journal_line(state, context, stamp, size, study) == expected


@pytest.fixture
def placing(data_and_placer):  # type: ignore[no-untyped-def]
    data, placer = data_and_placer
    state = AssociationState(
        key="default-1-1",
        listener="default",
        calling_aet="MODALITY",
        called_aet="MERCURE",
        address="127.0.0.1",
    )
    yield data, placer, state
    placer.release(state, released=True)


async def _finish(result: object) -> object:
    return await result if asyncio.iscoroutine(result) else result  # type: ignore[misc]


def _place(placer: Placer, state: AssociationState, path: Path, chunk: int) -> tuple[int, str]:
    meta = read_file_meta(path)
    dataset = path.read_bytes()[meta.dataset_offset :]
    sink = placer.open_sink(state, _context(meta.sop_class_uid, meta.sop_instance_uid))
    for at in range(0, len(dataset), chunk):
        sink.write(memoryview(dataset)[at : at + chunk])
    status = asyncio.run(_finish(sink.finish()))  # type: ignore[arg-type]
    assert isinstance(status, int)
    return status, meta.sop_instance_uid


def test_short_gathered_writes_are_completed(
    placing, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """The File Meta and the first dataset bytes go out in one ``writev``. A kernel may write
    less than asked (a signal arriving mid-write); what is left of the File
    Meta and of the chunk is written after it, in order. Simulated here by a ``writev`` that
    writes only its first ``cut`` bytes, for cuts inside the File Meta, at its end and inside
    the chunk."""
    data, placer, state = placing
    series = generate_series(tmp_path / "src", count=3, size=(16, 16))
    real_write = os.write
    head = len(
        build_file_meta(
            series.sop_class_uid,
            series.instances[0].sop_instance_uid,
            EXPLICIT_LE,
            "MODALITY",
        )
    )
    for instance, cut in zip(series.instances, (5, head, head + 3), strict=True):

        def short_writev(fd: int, buffers: tuple[bytes, ...], cut: int = cut) -> int:
            return real_write(fd, b"".join(bytes(b) for b in buffers)[:cut])

        monkeypatch.setattr(os, "writev", short_writev)
        status, sop = _place(placer, state, instance.path, 64)
        monkeypatch.undo()
        assert status == SUCCESS
        placed = data.stage(Stage.INCOMING) / series.series_uid / f"{sop}.dcm"
        original = instance.path.read_bytes()
        landed = placed.read_bytes()
        assert (
            landed[read_file_meta(placed).dataset_offset :]
            == (original[read_file_meta(instance.path).dataset_offset :])
        )


def test_instance_without_dataset_bytes_keeps_its_file_meta_in_error(placing) -> None:  # type: ignore[no-untyped-def]
    """No dataset bytes at all: no first write carries the File Meta, so finishing writes it;
    the instance is refused (no SOP Instance UID in it) and kept in error/ as a Part 10 file."""
    data, placer, state = placing
    sink = placer.open_sink(state, _context("1.2.840.10008.5.1.4.1.1.2", "1.2.3.4"))
    status = sink.finish()
    assert status == CANNOT_UNDERSTAND
    kept = list(data.stage(Stage.ERROR).glob("*/1.2.3.4.dcm"))
    assert len(kept) == 1
    assert read_file_meta(kept[0]).sop_instance_uid == "1.2.3.4"


def test_journal_lines_parse_with_the_instances_values(placing, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """What the router reads: one JSON line per instance, with its SOP, size and study."""
    data, placer, state = placing
    series = generate_series(tmp_path / "src", count=2, size=(16, 16))
    for instance in series.instances:
        assert _place(placer, state, instance.path, 1000)[0] == SUCCESS
    journal = data.stage(Stage.INCOMING) / series.series_uid / JOURNAL
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    assert [line["sop"] for line in lines] == [i.sop_instance_uid for i in series.instances]
    for line, instance in zip(lines, series.instances, strict=True):
        size = len(instance.path.read_bytes()) - read_file_meta(instance.path).dataset_offset
        assert line["size"] == size
        assert line["study"] == series.study_uid
        assert line["assoc"] == "default-1-1"
        assert line["ts"] == EXPLICIT_LE


@pytest.mark.parametrize(
    ("call", "code"), [("writev", errno.ENOSPC), ("write", errno.ENOSPC), ("write", errno.EDQUOT)]
)
def test_disk_full_while_writing_is_out_of_resources_and_leaves_nothing(
    placing, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, call: str, code: int
) -> None:  # type: ignore[no-untyped-def]
    """A full disk or quota, on the gathered first write or on a later chunk, refuses the
    instance with Out of Resources (0xA700: the sender tries again later), and aborting the
    sink removes its partial file. The kernel's error is simulated by a failing ``writev`` or
    ``write``: filling a real disk is not something a test may do here."""
    data, placer, state = placing
    series = generate_series(tmp_path / "src", count=1, size=(16, 16))
    meta = read_file_meta(series.instances[0].path)
    dataset = memoryview(series.instances[0].path.read_bytes()[meta.dataset_offset :])
    sink = placer.open_sink(state, _context(meta.sop_class_uid, meta.sop_instance_uid))
    if call == "write":
        sink.write(dataset[:64])  # the File Meta and the first bytes went out

    def full(*args: object) -> int:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, call, full)
    with pytest.raises(StoreRefused) as refused:
        sink.write(dataset[64:])
    monkeypatch.undo()
    assert refused.value.status == OUT_OF_RESOURCES
    assert "disk full" in refused.value.reason
    sink.abort()
    assert not Path(sink.temp_path).exists()
    assert not list(data.stage(Stage.INCOMING).glob("*/*.dcm"))
