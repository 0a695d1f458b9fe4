"""Reading a series' ``journal.jsonl`` (see docs/data-folder.md) incrementally.

The receiver appends one line per instance and one per association release; the router needs
only a little of it: who sent the series and through which listener (the first instance line,
for the completion time overrides), and whether the newest line is a release (for completion on
release). Lines are read once each, from the offset reached last time; a torn last line (no
newline yet) is left for the next read. At start-up only the head and the tail are read, so that
rebuilding the state of thousands of waiting series stays cheap.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

JOURNAL_FILE = "journal.jsonl"
_TAIL_BYTES = 16384


@dataclass(slots=True)
class JournalState:
    """What the router knows from one series' journal so far."""

    offset: int = 0
    """Bytes read, always at a line boundary."""
    instances: int = 0
    """Instance lines read (only those after ``offset`` started; a start-up read skips some)."""
    calling_aet: str | None = None
    called_aet: str | None = None
    address: str | None = None
    listener: str | None = None
    first_time: float | None = None
    last_time: float | None = None
    released: bool = False
    """The newest line is an association release: no instance arrived since."""
    release_listener: str | None = None

    def absorb(self, line: dict[str, Any]) -> None:
        """Take one journal line into account."""
        if line.get("event") == "released":
            self.released = True
            self.release_listener = _text(line.get("listener")) or self.listener
            return
        if "sop" not in line:
            return
        self.released = False
        self.instances += 1
        moment = _number(line.get("time"))
        if self.calling_aet is None:
            self.calling_aet = _text(line.get("calling_aet"))
            self.called_aet = _text(line.get("called_aet"))
            self.address = _text(line.get("address"))
            self.listener = _text(line.get("listener"))
            self.first_time = moment
        if moment is not None:
            self.last_time = moment


def read_new_lines(path: Path, state: JournalState) -> bool:
    """Read the complete lines added since ``state.offset``; True if there were any."""
    try:
        with open(path, "rb") as handle:
            handle.seek(state.offset)
            chunk = handle.read()
    except FileNotFoundError:
        return False
    end = chunk.rfind(b"\n")
    if end < 0:
        return False
    for raw in chunk[: end + 1].splitlines():
        line = _parse(raw)
        if line is not None:
            state.absorb(line)
    state.offset += end + 1
    return True


def read_head_and_tail(path: Path) -> JournalState:
    """The state after a whole journal, reading only its first and last lines (start-up)."""
    state = JournalState()
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size <= _TAIL_BYTES:
                read_new_lines(path, state)
                return state
            head = handle.readline()
            handle.seek(size - _TAIL_BYTES)
            tail = handle.read()
    except FileNotFoundError:
        return state
    first = _parse(head) if head.endswith(b"\n") else None
    if first is not None:
        state.absorb(first)
    end = tail.rfind(b"\n")
    # The first piece of the tail is most likely the end of a line cut in two: skip it.
    for raw in tail[: end + 1].splitlines()[1:]:
        line = _parse(raw)
        if line is not None:
            state.absorb(line)
    state.offset = size - _TAIL_BYTES + end + 1
    return state


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        line = json.loads(raw)
    except ValueError:
        return None
    return line if isinstance(line, dict) else None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None
