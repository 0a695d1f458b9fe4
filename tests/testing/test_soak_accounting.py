"""The soak's accounting: every acknowledged instance is delivered, discarded, in error/, stuck
or lost, and duplicates are judged against what was in flight."""

from __future__ import annotations

from collections import Counter

from mercure.testing.soak import Ledger, Outcome, SoakReport, account


def _ledger(**series: list[tuple[str, str]]) -> Ledger:
    ledger = Ledger()
    for series_uid, instances in series.items():
        for uid, kind in instances:
            ledger.acknowledged(uid, series_uid, kind)
    return ledger


def _outcome(**fields: object) -> Outcome:
    values: dict[str, object] = {
        "orthanc_received": Counter(),
        "orthanc_stored": set(),
        "archive": Counter(),
        "discarded": set(),
        "errors": {},
        "stuck": {},
    }
    values.update(fields)
    return Outcome(**values)  # type: ignore[arg-type]


def test_each_instance_is_counted_where_its_rule_sent_it() -> None:
    ledger = _ledger(s1=[("a", "direct"), ("b", "direct")], s2=[("c", "processed")])
    ledger.acknowledged("d", "s3", "junk")
    ledger.acknowledged("e", "s4", "study")
    outcome = _outcome(
        orthanc_received=Counter({"a": 1, "b": 1, "e": 1}),
        orthanc_stored={"a", "b", "e"},
        archive=Counter({"c": 1}),
        discarded={"d"},
    )
    report = account(ledger, outcome, allowed_duplicates=0)
    assert report.acknowledged == 5
    assert report.delivered == {"orthanc": 3, "archive": 1}
    assert report.discarded == 1
    assert report.passed, report.failures


def test_an_instance_nowhere_is_lost_and_one_in_a_queue_is_stuck() -> None:
    ledger = _ledger(s1=[("a", "direct"), ("b", "direct"), ("c", "direct")])
    outcome = _outcome(
        orthanc_received=Counter({"a": 1}), orthanc_stored={"a"}, stuck={"b": "outgoing"}
    )
    report = account(ledger, outcome, allowed_duplicates=0)
    assert report.lost == ["c"]
    assert report.stuck == ["b in outgoing/"]
    assert not report.passed
    assert "1 acknowledged instances lost" in report.render()


def test_errors_are_not_lost_and_their_reasons_are_grouped() -> None:
    ledger = _ledger(s1=[("a", "direct"), ("b", "direct")])
    reason = "pacs: association rejected for 1.2.3.4.5.6.7"
    outcome = _outcome(errors={"a": reason, "b": reason.replace("4.5.6.7", "9.9.9.9")})
    report = account(ledger, outcome, allowed_duplicates=0)
    assert report.errors == 2 and not report.lost
    assert report.error_reasons == Counter({"pacs: association rejected for <uid>": 2})


def test_a_discarded_instance_that_also_reached_a_target_is_misplaced() -> None:
    ledger = _ledger(s1=[("a", "junk")], s2=[("b", "direct")])
    outcome = _outcome(
        discarded={"a"},
        orthanc_received=Counter({"a": 1}),
        orthanc_stored={"a"},
        archive=Counter({"b": 1}),
    )
    report = account(ledger, outcome, allowed_duplicates=0)
    assert report.misplaced == ["a", "b"]
    assert not report.passed


def test_duplicates_within_what_was_in_flight_pass_and_beyond_fail() -> None:
    ledger = _ledger(s1=[("a", "direct"), ("b", "direct"), ("c", "direct")])
    received = Counter({"a": 2, "b": 1, "c": 1})
    outcome = _outcome(orthanc_received=received, orthanc_stored={"a", "b", "c"})
    assert account(ledger, outcome, allowed_duplicates=1).passed
    beyond = account(ledger, outcome, allowed_duplicates=0)
    assert beyond.duplicates == {"orthanc": 1, "archive": 0}
    assert not beyond.passed


def test_an_instance_a_sender_sent_again_may_arrive_twice() -> None:
    ledger = _ledger(s1=[("a", "direct"), ("b", "direct")])
    ledger.resent.add("a")
    outcome = _outcome(orthanc_received=Counter({"a": 2, "b": 1}), orthanc_stored={"a", "b"})
    assert account(ledger, outcome, allowed_duplicates=0).duplicates["orthanc"] == 0


def test_a_whole_series_delivered_twice_fails_whatever_the_allowance() -> None:
    ledger = _ledger(s1=[("a", "direct"), ("b", "direct")])
    outcome = _outcome(orthanc_received=Counter({"a": 2, "b": 2}), orthanc_stored={"a", "b"})
    report = account(ledger, outcome, allowed_duplicates=100)
    assert report.whole_series_resent == ["s1"]
    assert not report.passed


def test_the_bookkeeper_must_agree_with_the_folders() -> None:
    report = account(_ledger(), _outcome(), allowed_duplicates=0)
    report.folders = {"success": 3, "discard": 1, "error": 0}
    report.bookkeeper = {"success": 2, "discard": 1, "error": 0}
    assert not report.passed and "disagrees" in report.render()
    report.bookkeeper = dict(report.folders)
    assert isinstance(report, SoakReport) and report.passed
