"""The router's small parts: journal reading, required series, inotify, the quiet time."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mercure.core.config import validate_document
from mercure.core.dicomtags import normalise_tags
from mercure.core.inotify import IN_MODIFY, IN_MOVED_TO, Inotify
from mercure.core.rules.required import RequiredSeriesError, parse_required_series
from mercure.router.completion import CompletionPolicy
from mercure.router.journal import JournalState, read_head_and_tail, read_new_lines
from mercure.testing.wait import wait_until


def instance_line(sop: str, aet: str = "CT1", listener: str = "default") -> str:
    """A journal line for one instance."""
    record = {
        "sop": sop,
        "calling_aet": aet,
        "called_aet": "MERCURE",
        "address": "10.0.0.9",
        "listener": listener,
        "assoc": "a1",
        "time": 1700000000.5,
        "size": 100,
        "ts": "1.2.840.10008.1.2.1",
    }
    return json.dumps(record) + "\n"


RELEASE = json.dumps({"event": "released", "assoc": "a1", "listener": "fast", "time": 1.0}) + "\n"


def test_journal_is_read_incrementally_and_skips_a_torn_line(tmp_path: Path) -> None:
    """Each complete line is read once; a line without newline waits for the next read."""
    journal = tmp_path / "journal.jsonl"
    journal.write_text(instance_line("1.1") + instance_line("1.2")[:30])
    state = JournalState()
    assert read_new_lines(journal, state)
    assert (state.instances, state.calling_aet, state.address) == (1, "CT1", "10.0.0.9")
    with journal.open("a") as handle:
        handle.write(instance_line("1.2")[30:] + RELEASE)
    assert read_new_lines(journal, state)
    assert state.instances == 2 and state.released and state.release_listener == "fast"
    assert not read_new_lines(journal, state)
    with journal.open("a") as handle:
        handle.write(instance_line("1.3"))
    read_new_lines(journal, state)
    assert not state.released


def test_journal_head_and_tail_give_sender_and_release_of_a_long_journal(
    tmp_path: Path,
) -> None:
    """At start-up only the first and last lines of a long journal are read."""
    journal = tmp_path / "journal.jsonl"
    lines = [instance_line(f"1.{n}", aet="FIRST" if n == 0 else "LATER") for n in range(2000)]
    journal.write_text("".join(lines) + RELEASE + '{"torn": ')
    state = read_head_and_tail(journal)
    assert state.calling_aet == "FIRST" and state.released
    assert state.offset == journal.stat().st_size - len('{"torn": ')


def test_unreadable_journal_lines_are_ignored(tmp_path: Path) -> None:
    """Garbage lines neither fail nor count."""
    journal = tmp_path / "journal.jsonl"
    journal.write_text("not json\n[1, 2]\n" + instance_line("1.1"))
    state = JournalState()
    read_new_lines(journal, state)
    assert state.instances == 1


@pytest.mark.parametrize(
    ("expression", "descriptions", "expected"),
    [
        ("'T1' and ('T2' or 'FLAIR')", ["t1 mprage", "AX FLAIR"], True),
        ("'T1' and ('T2' or 'FLAIR')", ["T1 MPRAGE", "DWI"], False),
        ("'T1' and 'T2'", ["T1", "T2*"], True),
        ("'dwi' or 'adc'", ["ep2d ADC map"], True),
        ("not 'localizer'", ["T1"], True),
        ("'T1'", [], False),
        ("", ["anything"], True),
    ],
)
def test_required_series_match_parts_of_descriptions_ignoring_case(
    expression: str, descriptions: list[str], expected: bool
) -> None:
    """mercure's notation: quoted parts of series descriptions with and/or/not."""
    assert parse_required_series(expression).satisfied_by(descriptions) is expected


@pytest.mark.parametrize(
    ("expression", "column"),
    [("'T1' and", 9), ("T1", 1), ("'T1' 'T2'", 6), ("('T1' or 'T2'", 14), ("'T1' + 'T2'", 6)],
)
def test_invalid_required_series_name_the_column(expression: str, column: int) -> None:
    """A broken expression is an error that says where."""
    with pytest.raises(RequiredSeriesError, match=f"column {column}"):
        parse_required_series(expression)


def test_inotify_reports_a_file_renamed_into_a_watched_folder(tmp_path: Path) -> None:
    """The ctypes binding sees renames and appends, with the entry name."""
    watched = tmp_path / "series"
    watched.mkdir()
    inotify = Inotify()
    try:
        wd = inotify.add_watch(watched, IN_MOVED_TO | IN_MODIFY)
        (tmp_path / "tmp").write_bytes(b"x")
        os.rename(tmp_path / "tmp", watched / "a.dcm")
        with (watched / "journal.jsonl").open("a") as handle:
            handle.write("line\n")
        events = wait_until(inotify.read_events, timeout=5)
        assert (events[0].wd, events[0].name) == (wd, "a.dcm") and events[0].mask & IN_MOVED_TO
        assert any(e.name == "journal.jsonl" and e.mask & IN_MODIFY for e in events)
        inotify.remove_watch(wd)
        inotify.remove_watch(wd)  # a watch already gone is fine
        with pytest.raises(FileNotFoundError):
            inotify.add_watch(tmp_path / "missing", IN_MOVED_TO)
    finally:
        inotify.close()


def policy(document: str) -> CompletionPolicy:
    """The completion policy of a configuration given as YAML."""
    import yaml

    return CompletionPolicy(validate_document(yaml.safe_load(document)))


def test_most_specific_quiet_time_wins() -> None:
    """Rule over calling AE over listener over the default; release only if shorter."""
    completion = policy(
        """
router: {series_complete_trigger: 60, series_complete_trigger_by_calling_aet: {CT1: 90}}
receiver:
  listeners: [{name: fast, series_complete_trigger: 20, complete_on_release: true,
               release_grace: 3}]
"""
    )
    journal = JournalState(calling_aet="OTHER", listener="none")
    assert completion.quiet_time(journal, None).seconds == 60
    journal.listener = "fast"
    assert completion.quiet_time(journal, None).source == "listener fast"
    journal.calling_aet = "CT1"
    assert completion.quiet_time(journal, None).seconds == 90
    assert completion.quiet_time(journal, 120).seconds == 120
    journal.released, journal.release_listener = True, "fast"
    assert completion.quiet_time(journal, 120).seconds == 3
    assert completion.quiet_time(journal, 2).seconds == 2


def test_tag_values_become_text() -> None:
    """Lists join with a backslash, numbers are written out, nulls dropped."""
    assert normalise_tags({"A": ["1", 2], "B": 3.5, "C": None, "D": "x"}) == {
        "A": "1\\2",
        "B": "3.5",
        "D": "x",
    }
