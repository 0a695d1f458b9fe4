"""The shared STOW-RS body (core/dicomwebclient.DicomMultipart): the bytes a server receives,
parsed back with the receiver's own multipart reader, and a file that shrinks mid-send."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest

from mercure.core.dicomwebclient import BodyChanged, DicomMultipart, DicomPart
from mercure.core.ingest.multipart import MultipartReader, PartData, PartEnd, PartStart


async def _collect(body: DicomMultipart) -> bytes:
    return b"".join([chunk async for chunk in body.stream()])


def test_paths_and_open_files_make_one_body_the_reader_splits_back(tmp_path: Path) -> None:
    first = tmp_path / "a.dcm"
    first.write_bytes(b"A" * 3_000_000)  # more than one block
    second = io.BytesIO(b"second file")
    second.read()  # an open file is sent from its start, wherever it was left
    body = DicomMultipart(
        [DicomPart("a.dcm", 3_000_000, first), DicomPart("b.dcm", 11, second)], "test"
    )
    data = asyncio.run(_collect(body))
    assert len(data) == body.length
    assert body.boundary.startswith("test-") and body.boundary in body.content_type
    parts: list[bytes] = []
    reader = MultipartReader(body.boundary)
    for event in reader.feed(data):
        if isinstance(event, PartStart):
            parts.append(b"")
        elif isinstance(event, PartData):
            parts[-1] += bytes(event.data)
        elif isinstance(event, PartEnd):
            pass
    assert parts == [b"A" * 3_000_000, b"second file"]


def test_a_file_that_shrinks_while_sent_stops_the_body(tmp_path: Path) -> None:
    path = tmp_path / "cut.dcm"
    path.write_bytes(b"x" * 100)
    body = DicomMultipart([DicomPart("cut.dcm", 500, path)])
    with pytest.raises(BodyChanged, match=r"cut\.dcm shrank while being sent"):
        asyncio.run(_collect(body))
