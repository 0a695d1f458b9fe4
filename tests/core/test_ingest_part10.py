"""Part 10 streams placed through the receiver's write path (core/ingest/part10.py)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from mercure.core.datafolder import Stage
from mercure.core.ingest.part10 import Part10Error, Part10Stream, ingest_association
from mercure.core.ingest.placement import JOURNAL, TAGS, AssociationState
from mercure.dicomnet.dimse import CANNOT_UNDERSTAND, DATASET_DOES_NOT_MATCH_SOP_CLASS, SUCCESS
from mercure.dicomnet.filemeta import read_file_meta
from mercure.testing.series import generate_series


@pytest.fixture
def placing(data_and_placer):  # type: ignore[no-untyped-def]
    data, placer = data_and_placer
    state = AssociationState(
        key="stow-1",
        listener="stow",
        calling_aet="STOW:lab",
        called_aet="STOW",
        address="127.0.0.9",
    )
    association = ingest_association("STOW:lab", "STOW", ("127.0.0.9", 4242))
    yield data, placer, state, association
    placer.release(state, released=True)


def _dataset(path: Path) -> bytes:
    raw = path.read_bytes()
    return raw[read_file_meta(path).dataset_offset :]


async def _place(stream: Part10Stream, raw: bytes, chunk: int) -> int:
    try:
        for at in range(0, len(raw), chunk):
            stream.feed(raw[at : at + chunk])
        return await stream.finish()
    except BaseException:
        stream.abort()
        raise


@pytest.mark.parametrize("chunk", [1, 7, 65536])
def test_part10_stream_lands_byte_identical_dataset_with_journal_and_tags(placing, tmp_path, chunk):  # type: ignore[no-untyped-def]
    """Chunked however, a Part 10 stream lands as its dataset, journalled, with the sender."""
    data, placer, state, association = placing
    series = generate_series(tmp_path / "src", count=3, size=(16, 16))
    for instance in series.instances:
        stream = Part10Stream(association, lambda ctx: placer.open_sink(state, ctx))
        status = asyncio.run(_place(stream, instance.path.read_bytes(), chunk))
        assert status == SUCCESS
        assert stream.context is not None
        assert stream.context.sop_instance_uid == instance.sop_instance_uid
    folder = data.stage(Stage.INCOMING) / series.series_uid
    for instance in series.instances:
        placed = folder / f"{instance.sop_instance_uid}.dcm"
        assert _dataset(placed) == _dataset(instance.path)
    lines = [json.loads(line) for line in (folder / JOURNAL).read_text().splitlines()]
    assert [line["sop"] for line in lines] == [i.sop_instance_uid for i in series.instances]
    assert {line["calling_aet"] for line in lines} == {"STOW:lab"}
    tags = json.loads((folder / TAGS).read_text())
    assert tags["SenderAET"] == "STOW:lab"
    assert tags["SenderAddress"] == "127.0.0.9"


def test_stream_without_dicm_is_refused_and_nothing_kept(placing):  # type: ignore[no-untyped-def]
    """Bytes that are not Part 10 are refused with a clear error; no sink is ever opened."""
    _, placer, state, association = placing
    opened = []
    stream = Part10Stream(
        association, lambda ctx: opened.append(ctx) or placer.open_sink(state, ctx)
    )
    with pytest.raises(Part10Error, match="DICM"):
        asyncio.run(_place(stream, b"hello world" * 50, 64))
    assert opened == []
    assert list(placer.staging.folder.iterdir()) == []


def test_oversized_file_meta_is_refused_before_buffering_more(placing):  # type: ignore[no-untyped-def]
    """A File Meta element claiming megabytes is refused at once (bounded memory)."""
    _, placer, state, association = placing
    huge = bytes(128) + b"DICM" + b"\x02\x00\x01\x00OB\x00\x00" + (10 << 20).to_bytes(4, "little")
    stream = Part10Stream(association, lambda ctx: placer.open_sink(state, ctx), max_meta=4096)
    with pytest.raises(Part10Error, match="larger than 4096"):
        stream.feed(huge)


def test_truncated_file_meta_is_refused(placing, tmp_path):  # type: ignore[no-untyped-def]
    """A stream ending inside its File Meta says so."""
    _, placer, state, association = placing
    series = generate_series(tmp_path / "src", count=1, size=(8, 8))
    stream = Part10Stream(association, lambda ctx: placer.open_sink(state, ctx))
    with pytest.raises(Part10Error, match="inside its File Meta"):
        asyncio.run(_place(stream, series.instances[0].path.read_bytes()[:150], 10))


def test_study_other_than_expected_is_not_kept(placing, tmp_path):  # type: ignore[no-untyped-def]
    """An instance of another study than the URL's answers 0xA900 and leaves nothing behind."""
    data, placer, state, association = placing
    series = generate_series(tmp_path / "src", count=1, size=(8, 8))
    stream = Part10Stream(
        association, lambda ctx: placer.open_sink(state, ctx), expected_study_uid="1.2.3.4"
    )
    status = asyncio.run(_place(stream, series.instances[0].path.read_bytes(), 100))
    assert status == DATASET_DOES_NOT_MATCH_SOP_CLASS
    assert stream.reason is not None and "1.2.3.4" in stream.reason
    assert not (data.stage(Stage.INCOMING) / series.series_uid).exists()
    assert list(placer.staging.folder.iterdir()) == []


def test_broken_dataset_goes_to_error_with_status(placing, tmp_path):  # type: ignore[no-untyped-def]
    """Valid File Meta, broken dataset: the placer keeps it in error/ and answers 0xC000."""
    data, placer, state, association = placing
    series = generate_series(tmp_path / "src", count=1, size=(8, 8))
    path = series.instances[0].path
    raw = path.read_bytes()
    at = read_file_meta(path).dataset_offset
    broken = raw[:at] + b"\x08\x00\x16\x00UI\xff\xff" + b"x" * 40
    stream = Part10Stream(association, lambda ctx: placer.open_sink(state, ctx))
    assert asyncio.run(_place(stream, broken, 50)) == CANNOT_UNDERSTAND
    assert stream.reason
    assert len(list(data.stage(Stage.ERROR).iterdir())) == 1
