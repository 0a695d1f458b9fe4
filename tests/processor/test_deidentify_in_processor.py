"""The shipped de-identification module run by the processor as a command module."""

from __future__ import annotations

import json
import sys

import pydicom
from processor_harness import Processor

from mercure.core.datafolder import Stage
from mercure.testing.series import GeneratedSeries


def test_deidentify_module_processes_a_ct_series(
    processor: Processor, ct_series: GeneratedSeries
) -> None:
    """A real CT series goes through the shipped module to outgoing/, de-identified."""
    processor.config["modules"]["deidentify"] = {
        "runner": "command",
        "command": [sys.executable, "-m", "mercure.modules.deidentify"],
        "environment": {"MERCURE_DEID_SECRET": "processor test secret"},
        "settings": {"keep_series_descriptions": False},
    }
    processor.start()
    task_id = processor.add_task(
        ct_series, ["deidentify"], settings={"keep_series_descriptions": True}, targets=["pacs"]
    )
    folder = processor.wait_for(task_id, Stage.OUTGOING, timeout=60)
    result = json.loads((folder / "result.json").read_text())
    assert result["deidentified"] == len(ct_series)
    assert result["options"]["keep_series_descriptions"] is True  # the rule's setting wins
    files = sorted(folder.glob("*.dcm"))
    assert len(files) == len(ct_series)
    original = pydicom.dcmread(ct_series.paths[0])
    for path in files:
        dataset = pydicom.dcmread(path)
        assert dataset.PatientID != ct_series.patient_id
        assert dataset.StudyInstanceUID != ct_series.study_uid
        assert dataset.PatientName != original.PatientName
        assert dataset.SeriesDescription == original.SeriesDescription
