"""De-identified by the processor, delivered by the dispatcher, stored by a real Orthanc."""

from __future__ import annotations

import io
import shutil
import sys
from pathlib import Path

import pydicom
import pytest
from processor_harness import Processor
from pydicom.data import get_testdata_file

from mercure.core.datafolder import Stage
from mercure.testing.peers import Orthanc
from mercure.testing.series import GeneratedSeries

pytestmark = [pytest.mark.peers, pytest.mark.slow]

# rtplan.dcm and rtdose.dcm (RT, implicit VR) are left out: Orthanc answers 0xA900 to the
# dispatcher's dicom target for them even untouched (DCMTK storescu stores them): reported.
PYDICOM_FILES = [
    "CT_small.dcm",
    "MR_small.dcm",
    "JPEG2000.dcm",
    "test-SR.dcm",
    "SC_rgb_rle.dcm",
    "examples_overlay.dcm",
]


def test_deidentified_series_and_test_files_arrive_at_orthanc(
    processor: Processor, orthanc: Orthanc, ct_series: GeneratedSeries, tmp_path: Path
) -> None:
    """A CT series and pydicom's files reach Orthanc de-identified, every instance."""
    processor.config["modules"]["deidentify"] = {
        "runner": "command",
        "command": [sys.executable, "-m", "mercure.modules.deidentify"],
        "environment": {"MERCURE_DEID_SECRET": "end to end secret"},
    }
    processor.config["targets"] = {
        "orthanc": {
            "type": "dicom",
            "host": "127.0.0.1",
            "port": orthanc.dicom_port,
            "aet_target": orthanc.aet,
        }
    }
    processor.start()
    processor.start_dispatcher()
    files = []
    for name in PYDICOM_FILES:
        files.append(tmp_path / name)
        shutil.copyfile(get_testdata_file(name), files[-1])
    tasks = [
        processor.add_task(ct_series, ["deidentify"], targets=["orthanc"]),
        processor.add_task(files, ["deidentify"], targets=["orthanc"]),
    ]
    for task_id in tasks:
        processor.wait_for(task_id, Stage.SUCCESS, timeout=90)
    originals = [pydicom.dcmread(path) for path in [*ct_series.paths, *files]]
    original_uids = {ds.SOPInstanceUID for ds in originals}
    original_patients = {str(ds.PatientID) for ds in originals} | {
        str(ds.PatientName) for ds in originals
    }
    stored = [
        pydicom.dcmread(io.BytesIO(orthanc.instance_file(instance)))
        for instance in orthanc.instances()
    ]
    assert len(stored) == len(originals)
    for ds in stored:
        assert ds.SOPInstanceUID not in original_uids
        assert ds.PatientIdentityRemoved == "YES"
        assert str(ds.PatientID).startswith("ANON")
        assert str(ds.PatientID) not in original_patients
        assert str(ds.PatientName) not in original_patients
