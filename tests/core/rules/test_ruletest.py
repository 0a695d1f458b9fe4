"""The rule test shared by ``mercure rule-test`` and the web interface's tester."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from mercure.core.config import LoadedConfig, validate_document
from mercure.core.config.models import Rule
from mercure.core.rules import SeriesTags, compile_rule
from mercure.core.rules.ruletest import (
    SourceError,
    evaluate_rule,
    evaluate_rules,
    incoming_series_tags,
    load_source_tags,
    replace_rule,
    tags_from_upload,
)
from mercure.testing.series import GeneratedSeries

CONFIG = {
    "targets": {
        "pacs": {"type": "folder", "folder": "out/pacs"},
        "archive": {"type": "folder", "folder": "out/archive"},
    },
    "modules": {
        "anon": {"runner": "command", "command": ["true"]},
        "seg": {"runner": "command", "command": ["true"]},
    },
    "rules": {
        "ct": {"rule": "tags.Modality == 'CT'", "targets": ["pacs", "archive"]},
        "ct_seg": {
            "rule": "tags.Modality == 'CT' and 'HEAD' in tags.StudyDescription.upper()",
            "action": "process",
            "processing_module": ["anon", "seg"],
            "targets": "archive",
        },
        "study": {
            "rule": "tags.ViewPosition == 'PA'",
            "targets": "pacs",
            "action_trigger": "study",
        },
        "broken": {"rule": "float(tags.Modality) > 1", "targets": "pacs"},
        "off": {"rule": "True", "targets": "pacs", "disabled": True},
        "rest": {"rule": "True", "action": "discard", "fallback": True},
    },
}


def loaded(tmp_path: Path, document: dict[str, object] | None = None) -> LoadedConfig:
    """The test configuration, validated as check-config does."""
    return validate_document(document or CONFIG, base_dir=tmp_path)


def test_every_rule_is_reported_with_the_tags_it_used_and_the_decision(tmp_path: Path) -> None:
    """Values, used tags with their values, errors, disabled rules; the decision spelled out:
    route targets merged, each processing chain with its targets after it."""
    config = loaded(tmp_path)
    tags = SeriesTags({"Modality": "CT", "StudyDescription": "Head routine"})
    report = evaluate_rules(config.config, config.compiled_rules, tags)
    by_name = {rule.name: rule for rule in report.rules}
    assert list(by_name) == ["ct", "ct_seg", "study", "broken", "off", "rest"]
    assert by_name["ct"].value and by_name["ct"].used == (("Modality", "CT"),)
    assert by_name["ct_seg"].used == (("Modality", "CT"), ("StudyDescription", "Head routine"))
    assert not by_name["study"].value and by_name["study"].missing == ("ViewPosition",)
    assert not by_name["broken"].value and "float()" in (by_name["broken"].error or "")
    assert by_name["off"].disabled and by_name["off"].used == ()
    assert by_name["rest"].fallback and by_name["rest"].value  # evaluated, but not decisive
    decision = report.decision
    assert not decision.discarded
    assert decision.fired == ("ct", "ct_seg")
    assert decision.route_targets == ("pacs", "archive")
    [step] = decision.processing
    assert (step.rule, step.modules, step.then_targets) == ("ct_seg", ("anon", "seg"), ("archive",))
    assert "broken" in decision.errors


def test_the_decision_names_the_discard_and_why(tmp_path: Path) -> None:
    """Nothing fires but the fallback discard rule: discarded by it."""
    config = loaded(tmp_path)
    report = evaluate_rules(config.config, config.compiled_rules, SeriesTags({"Modality": "MR"}))
    assert report.decision.discarded
    assert report.decision.reason == "discarded by rule 'rest'"


def test_a_study_rule_collects_the_study(tmp_path: Path) -> None:
    """A study-level rule with a StudyInstanceUID collects; without one it acts on the series."""
    config = loaded(tmp_path)
    tags = {"ViewPosition": "PA", "Modality": "DX", "StudyInstanceUID": "1.2.3"}
    report = evaluate_rules(config.config, config.compiled_rules, tags)
    assert report.decision.study_rules == ("study",)


def test_an_edited_rule_replaces_the_saved_one_in_place(tmp_path: Path) -> None:
    """replace_rule keeps the position (a rename too); the others keep their compiled rules."""
    config = loaded(tmp_path)
    edited = Rule(rule="tags.Modality == 'MR'", targets=["pacs"])
    compiled = compile_rule(edited.rule, name="mr")
    new_config, new_compiled = replace_rule(
        config.config, config.compiled_rules, "mr", edited, compiled, replaces="ct"
    )
    assert list(new_config.rules) == ["mr", "ct_seg", "study", "broken", "off", "rest"]
    assert new_compiled["mr"] is compiled
    assert new_compiled["ct_seg"] is config.compiled_rules["ct_seg"]
    report = evaluate_rules(new_config, new_compiled, {"Modality": "MR"})
    assert report.decision.fired == ("mr",) and report.decision.route_targets == ("pacs",)
    added, _ = replace_rule(config.config, config.compiled_rules, "new", edited, compiled)
    assert list(added.rules)[-1] == "new" and len(added.rules) == 7
    assert next(iter(config.config.rules)) == "ct"  # the configuration itself is unchanged


def test_one_expression_reports_its_value_and_tags(tmp_path: Path) -> None:
    """An expression that is not in the configuration, against plain tags."""
    rule = compile_rule("tags.SeriesDescription.startswith('T1')", name="expression")
    outcome = evaluate_rule(rule, {"SeriesDescription": "T1 axial"})
    assert outcome.name == "expression" and outcome.value
    assert outcome.used == (("SeriesDescription", "T1 axial"),)


def test_tags_come_from_a_file_a_tags_json_a_folder_or_incoming(
    tmp_path: Path, make_series: Callable[..., GeneratedSeries]
) -> None:
    """Every kind of source gives the same keyword -> text mapping."""
    series = make_series("tiny", 2, modality="CT")
    from_file = load_source_tags(str(series.paths[0]), None)
    assert from_file["Modality"] == "CT"
    assert load_source_tags(str(series.paths[0].parent), None)["Modality"] == "CT"
    tags_json = tmp_path / "tags.json"
    tags_json.write_text(json.dumps({"Modality": "MR", "ImageType": ["ORIGINAL", "PRIMARY"]}))
    assert load_source_tags(str(tags_json), None)["ImageType"] == "ORIGINAL\\PRIMARY"
    data_dir = tmp_path / "data"
    waiting = data_dir / "incoming" / series.series_uid
    waiting.mkdir(parents=True)
    (waiting / "tags.json").write_text(json.dumps({"Modality": "CT", "SenderAET": "CT7"}))
    assert load_source_tags(series.series_uid, data_dir)["SenderAET"] == "CT7"
    assert incoming_series_tags(data_dir, series.series_uid)["SenderAET"] == "CT7"


def test_unreadable_sources_say_what_is_wrong(tmp_path: Path) -> None:
    """A missing series, a non-DICOM file, an empty folder, a path escaping incoming/."""
    data_dir = tmp_path / "data"
    (data_dir / "incoming").mkdir(parents=True)
    with pytest.raises(SourceError, match="no such file, folder, or series"):
        load_source_tags("1.2.3.999", data_dir)
    for escape in ("..", "../..", "incoming/../..", ""):
        with pytest.raises(SourceError, match=r"no series .* waiting in incoming/"):
            incoming_series_tags(data_dir, escape)
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not dicom at all")
    with pytest.raises(SourceError, match="not a readable DICOM file"):
        load_source_tags(str(junk), None)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceError, match=r"neither tags\.json nor \.dcm"):
        load_source_tags(str(empty), None)


def test_an_upload_is_read_from_memory_header_only(
    make_series: Callable[..., GeneratedSeries],
) -> None:
    """The bytes of a DICOM file give its tags; junk and an empty upload are named errors."""
    series = make_series("tiny", 1, modality="MR", series_description="T2 <b>FLAIR</b>")
    tags = tags_from_upload(series.paths[0].read_bytes(), "scan.dcm")
    assert tags["Modality"] == "MR" and tags["SeriesDescription"] == "T2 <b>FLAIR</b>"
    with pytest.raises(SourceError, match=r"scan\.dcm: not a readable DICOM file"):
        tags_from_upload(b"\0" * 200, "scan.dcm")
    with pytest.raises(SourceError, match="the file is empty"):
        tags_from_upload(b"", "scan.dcm")
