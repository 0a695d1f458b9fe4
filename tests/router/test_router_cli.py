"""``mercure rule-test`` and ``mercure study``."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from router_harness import Harness

from mercure.cli import main
from mercure.core.datafolder import Stage

RULES = """
rules:
  ct_head:
    rule: "tags.Modality == 'CT' and 'HEAD' in tags.StudyDescription.upper()"
    targets: pacs
  mr: {rule: "tags.Modality == 'MR'", action: process, processing_module: seg, targets: archive}
  broken: {rule: "float(tags.Modality) > 1", targets: pacs}
  quiet: {rule: "True", targets: pacs, disabled: true}
"""


def run(h: Harness, *args: str) -> int:
    """Run the command line against the harness' configuration."""
    return main([*args, "--config", str(h.config_path)])


def test_rule_test_names_the_result_and_the_tags_used(
    make_router: Callable[..., Harness], capsys: pytest.CaptureFixture[str]
) -> None:
    """One rule against a DICOM file: true, with each tag it read and its value."""
    h = make_router(RULES)
    series = h.series(1, modality="CT", study_description="Head routine")
    assert run(h, "rule-test", str(series.paths[0]), "--rule", "ct_head") == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("ct_head: true")
    assert "    Modality = 'CT'" in out
    assert "    StudyDescription = 'Head routine'" in out


def test_rule_test_of_an_expression_needs_no_configuration(
    make_series: Callable[..., object], capsys: pytest.CaptureFixture[str]
) -> None:
    """-e with a file works without mercure.yaml; false exits 1 and names the missing tag;
    a standard tag the file lacks is '' as in mercure."""
    series = make_series("tiny", 1, tags={"BodyPartExamined": None})
    path = str(series.paths[0])  # type: ignore[attr-defined]
    assert main(["rule-test", path, "-e", "tags.ViewPosition == 'PA'"]) == 1
    assert "ViewPosition is missing: the rule is false" in capsys.readouterr().out
    assert main(["rule-test", path, "-e", "tags.BodyPartExamined == ''"]) == 0


def test_rule_test_of_all_rules_shows_what_the_router_would_do(
    make_router: Callable[..., Harness], capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --rule: every rule's result, run-time errors, and the decision."""
    h = make_router(RULES)
    series = h.series(1, modality="MR")
    assert run(h, "rule-test", str(series.paths[0])) == 0
    out = capsys.readouterr().out
    assert "ct_head: false" in out and "mr: true" in out and "quiet: disabled" in out
    assert "error:" in out and "(the rule counts as false)" in out
    assert out.strip().splitlines()[-1] == "=> process with seg, then to archive (mr)"


def test_rule_test_reads_a_series_waiting_in_incoming(
    make_router: Callable[..., Harness], capsys: pytest.CaptureFixture[str]
) -> None:
    """A SeriesInstanceUID names a series in incoming/; its tags.json is what rules see."""
    h = make_router(RULES)
    series = h.series(2, modality="CT")
    h.writer.send(series, calling_aet="SCANNER7")
    assert run(h, "rule-test", series.series_uid, "-e", "tags.SenderAET == 'SCANNER7'") == 0
    assert "SenderAET = 'SCANNER7'" in capsys.readouterr().out


def test_rule_test_reports_what_it_cannot_read(
    make_router: Callable[..., Harness], capsys: pytest.CaptureFixture[str]
) -> None:
    """Unknown series, unreadable file, unknown rule, bad syntax: exit 1 with the reason."""
    h = make_router(RULES)
    junk = h.root / "junk.dcm"
    junk.write_bytes(b"not dicom")
    tags = h.root / "tags.json"
    tags.write_text(json.dumps({"Modality": "CT"}))
    assert run(h, "rule-test", "1.2.3.999") == 1
    assert "no such file, folder, or series" in capsys.readouterr().err
    assert run(h, "rule-test", str(junk)) == 1
    assert "not a readable DICOM file" in capsys.readouterr().err
    assert run(h, "rule-test", str(tags), "--rule", "nope") == 1
    assert "no rule 'nope'" in capsys.readouterr().err
    assert run(h, "rule-test", str(tags), "-e", "tags.Modality ==") == 1
    assert "column" in capsys.readouterr().err


STUDY = """
router: {series_complete_trigger: 60, study_complete_trigger: 900, rescan_interval: 100000}
rules:
  collect: {rule: "True", targets: pacs, action_trigger: study}
"""


def test_study_complete_moves_a_collecting_study_on_now(
    make_router: Callable[..., Harness], capsys: pytest.CaptureFixture[str]
) -> None:
    """`mercure study list` shows it; `mercure study complete UID` sends it to its action."""
    h = make_router(STUDY)
    series = h.send(h.series(2))
    h.advance(61)
    assert run(h, "study", "list") == 0
    assert f"{series.study_uid}#collect  1 series  timeout" in capsys.readouterr().out
    assert run(h, "study", "complete", series.study_uid) == 0
    assert "moved to outgoing/" in capsys.readouterr().out
    _path, task = h.only_task(Stage.OUTGOING)
    assert task.study is not None and task.study.complete_force
    h.advance(1000)  # the router notices the study left and does not trip over it
    assert h.tasks(Stage.STUDIES) == []
    assert run(h, "study", "complete", series.study_uid) == 1


def test_study_complete_can_discard(
    make_router: Callable[..., Harness], capsys: pytest.CaptureFixture[str]
) -> None:
    """--discard sends the study to discard/ with the reason."""
    h = make_router(STUDY)
    series = h.send(h.series(2))
    h.advance(61)
    assert run(h, "study", "complete", series.study_uid, "--discard") == 0
    _path, task = h.only_task(Stage.DISCARD)
    assert task.info.reason == "completed by `mercure study complete`"
