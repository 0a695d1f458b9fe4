"""The tags the router gives rules: tags.json, plus router.additional_tags read from an instance."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from router_harness import Harness

from mercure.core.datafolder import Stage
from mercure.core.rules import SeriesTags, compile_rule
from mercure.core.rules.ruletest import load_source_tags, series_folder_tags
from mercure.router.tags import series_tags


def _instance(folder: Path) -> Path:
    """One CT instance with a private element (0019,100C) and no BodyPartExamined."""
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID = "1.2.3.4"
    ds.Modality = "CT"
    ds.StudyDate = "20240102"
    block = ds.private_block(0x0019, "SIEMENS CT VA0  COAD", create=True)
    block.add_new(0x0C, "LO", "tilt 0")
    path = folder / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def test_additional_tags_missing_from_tags_json_are_read_from_an_instance(tmp_path: Path) -> None:
    """A tags.json written before the tag was configured still gives rules the private tag."""
    path = _instance(tmp_path)
    (tmp_path / "tags.json").write_text(json.dumps({"Modality": "CT"}))
    tags = series_tags(tmp_path, [path], additional_tags=["0019,100C", "StudyDate", "0029,1010"])
    assert tags["(0019,100c)"] == "tilt 0"
    assert tags["StudyDate"] == "20240102"
    assert tags["(0029,1010)"] == ""
    rule = compile_rule("tags['0019_100c'] == 'tilt 0' and tags.BodyPartExamined == ''")
    assert rule.evaluate(SeriesTags(tags)).value is True


def test_without_additional_tags_private_tags_stay_absent(tmp_path: Path) -> None:
    """Private tags are read only when configured, as in mercure."""
    path = _instance(tmp_path)
    tags = series_tags(tmp_path, [path])
    assert "(0019,100c)" not in tags
    assert tags["Modality"] == "CT"
    result = compile_rule("tags['0019,100C'] == 'tilt 0'").evaluate(SeriesTags(tags))
    assert result.value is False and result.missing_tags == ("(0019,100c)",)


def test_rule_test_of_a_file_reads_the_configured_additional_tags(tmp_path: Path) -> None:
    """`mercure rule-test` and the web tester see a private tag as the router does."""
    path = _instance(tmp_path)
    assert load_source_tags(str(path), None, ["0019,100C"])["(0019,100c)"] == "tilt 0"
    (tmp_path / "tags.json").write_text(json.dumps({"Modality": "CT"}))
    assert series_folder_tags(tmp_path, ["0019,100C"])["(0019,100c)"] == "tilt 0"
    assert "(0019,100c)" not in series_folder_tags(tmp_path)


PRIVATE_RULES = """
router: {series_complete_trigger: 60, rescan_interval: 600, additional_tags: {"0019,100C": tilt}}
rules:
  tilted: {rule: "tags['0019_100c'] == 'tilt 0'", targets: [pacs]}
  no_body_part: {rule: "tags.BodyPartExamined == ''", targets: [archive]}
"""


def test_router_routes_by_a_private_additional_tag_and_an_absent_standard_tag(
    make_router: Callable[..., Harness],
) -> None:
    """End to end: the private tag is read from the instances, BodyPartExamined is ''."""
    h = make_router(PRIVATE_RULES)
    series = h.series(2, modality="CT", tags={"BodyPartExamined": None})
    for path in series.paths:
        ds = pydicom.dcmread(path)
        ds.private_block(0x0019, "SIEMENS CT VA0  COAD", create=True).add_new(0x0C, "LO", "tilt 0")
        ds.save_as(path)
    h.send(series)
    h.advance(61)
    _path, task = h.only_task(Stage.OUTGOING)
    assert task.info.triggered_rules == {"tilted": True, "no_body_part": True}
