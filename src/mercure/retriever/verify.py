"""Counting what arrived: the distinct SOP instances in ``incoming/<series>/journal.jsonl``.

The journal is where the receiver and the retriever's own write path (C-GET, WADO-RS) record
each instance once it is durable, so it is the count that decides whether a series is complete.
A re-sent instance has a second line with the same SOP Instance UID: it counts once.
"""

from __future__ import annotations

import json
import os

from mercure.core.datafolder import DataFolder, Stage

JOURNAL_FILE = "journal.jsonl"


def arrived_instances(data: DataFolder, series_uid: str) -> set[str]:
    """SOP Instance UIDs journalled in ``incoming/<series_uid>/`` (empty if no such folder)."""
    path = os.path.join(data.stage(Stage.INCOMING), series_uid, JOURNAL_FILE)
    try:
        with open(path, "rb") as journal:
            raw = journal.read()
    except FileNotFoundError:
        return set()
    found: set[str] = set()
    for line in raw.split(b"\n")[:-1]:  # the part after the last newline may be torn
        try:
            record = json.loads(line)
        except ValueError:
            continue
        sop = record.get("sop") if isinstance(record, dict) else None
        if isinstance(sop, str):
            found.add(sop)
    return found
