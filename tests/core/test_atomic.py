"""Atomic writes: a concurrent reader never sees a half-written file."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import pytest

from mercure.core.atomic import atomic_write_json


def _writer(path: str, rounds: int) -> None:
    for n in range(rounds):
        # Large enough that a non-atomic write would be visible in pieces.
        atomic_write_json(Path(path), {"n": n, "payload": "x" * (64 * 1024 + n)}, fsync=False)


def test_concurrent_reader_never_sees_a_partial_file(tmp_path: Path) -> None:
    """A reader in this process parses every version a writer process replaces, whole."""
    path = tmp_path / "task.json"
    atomic_write_json(path, {"n": -1, "payload": ""})
    context = multiprocessing.get_context("spawn")
    writer = context.Process(target=_writer, args=(str(path), 400))
    writer.start()
    reads = 0
    try:
        while writer.is_alive() or reads == 0:
            document = json.loads(path.read_text())
            assert len(document["payload"]) in (0, 64 * 1024 + document["n"])
            reads += 1
    finally:
        writer.join(30)
    assert writer.exitcode == 0
    assert reads > 10
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".")]


def test_failed_write_leaves_old_file_and_no_temporary(tmp_path: Path) -> None:
    """A value that cannot be written leaves the previous file untouched."""
    path = tmp_path / "task.json"
    atomic_write_json(path, {"ok": True})
    with pytest.raises(TypeError):
        atomic_write_json(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"ok": True}
    assert os.listdir(tmp_path) == ["task.json"]
