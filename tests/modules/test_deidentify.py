"""The de-identification module: no attribute of the Basic Profile keeps its original value."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataset import Dataset

from mercure.modules.deidentify.deidentifier import Deidentifier, Options
from mercure.modules.deidentify.profile import BASIC_PROFILE
from mercure.testing.series import GeneratedSeries

SECRET = b"site secret for tests"

PYDICOM_FILES = [
    "CT_small.dcm",
    "MR_small.dcm",
    "JPEG2000.dcm",
    "rtplan.dcm",
    "rtstruct.dcm",
    "rtdose.dcm",
    "test-SR.dcm",
    "reportsi.dcm",
    "image_dfl.dcm",
    "examples_overlay.dcm",
    "waveform_ecg.dcm",
    "priv_SQ.dcm",
    "nested_priv_SQ.dcm",
    "SC_rgb_rle.dcm",
    "liver_1frame.dcm",
    "GDCMJ2K_TextGBR.dcm",
]

_SAMPLE = {
    "PN": "Doe^Jane",
    "DA": "20240115",
    "TM": "101010",
    "DT": "20240115101010",
    "CS": "SECRET",
    "AS": "042Y",
    "IS": "42",
    "DS": "4.2",
    "AE": "SECRETAE",
    "SH": "secret sh",
}
_LONG_TEXT = {"LO", "ST", "LT", "UT", "UC"}


def profile_values(dataset: Dataset) -> Iterator[tuple[int, str]]:
    """(tag, value) of every non-empty Basic Profile attribute, at any nesting depth."""
    for element in dataset.iterall():
        action = BASIC_PROFILE.get(int(element.tag))
        if action not in (None, "K") and element.VR != "SQ" and element.value:
            yield int(element.tag), str(element.value)


def assert_profile_applied(original: Dataset, result: Dataset) -> None:
    """No profile attribute keeps an original value; nothing private is left."""
    remaining = set(profile_values(result))
    kept = [(keyword_for_tag(tag), value) for tag, value in profile_values(original)]
    leaked = [(kw, value) for kw, value in kept if (pydicom.tag.Tag(kw), value) in remaining]
    assert not leaked
    assert not [e.tag for e in result.iterall() if e.tag.is_private]
    assert result.PatientIdentityRemoved == "YES"


def deidentified(dataset: Dataset, options: Options | None = None) -> Dataset:
    """De-identify a copy, write it and read it back (what a receiver would get)."""
    copy = pydicom.dcmread(io.BytesIO(_bytes(dataset)), force=True)
    Deidentifier(SECRET, options).deidentify(copy)
    return pydicom.dcmread(io.BytesIO(_bytes(copy)), force=True)


def _bytes(dataset: Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    return buffer.getvalue()


def _every_profile_attribute() -> dict[str, Any]:
    """A value for each text-like attribute of the profile, to put into generated series."""
    tags: dict[str, Any] = {}
    for number, tag in enumerate(BASIC_PROFILE):
        vr, keyword = dictionary_VR(tag), keyword_for_tag(tag)
        if tag >> 16 in (0x0000, 0x0002):
            continue
        if vr == "UI":
            tags[keyword] = f"1.2.826.0.1.3680043.10.999.{number}"
        elif vr in _SAMPLE:
            tags[keyword] = _SAMPLE[vr]
        elif vr in _LONG_TEXT:
            tags[keyword] = f"secret {keyword}"[:64]
    reference = Dataset()
    reference.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    reference.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.10.999.1000"
    tags["ReferencedImageSequence"] = [reference]
    other = Dataset()
    other.PatientID = "OTHER-ID-1"
    tags["OtherPatientIDsSequence"] = [other]
    return tags


@pytest.fixture(scope="module")
def full_ct(tmp_path_factory: pytest.TempPathFactory) -> GeneratedSeries:
    """Two real-size CT instances carrying every text-like attribute of the profile."""
    from mercure.testing.series import generate_series

    folder = tmp_path_factory.mktemp("full-ct")
    return generate_series(folder, "ct", 2, tags=_every_profile_attribute(), patient_id="PID-1")


def test_ct_series_with_every_profile_attribute_keeps_no_original_value(
    full_ct: GeneratedSeries,
) -> None:
    """A CT instance with ~300 profile attributes set: each is removed, emptied or replaced."""
    for path in full_ct.paths:
        original = pydicom.dcmread(path)
        assert len(list(profile_values(original))) > 250
        result = deidentified(original)
        assert_profile_applied(original, result)
        assert result.ReferencedImageSequence[0].ReferencedSOPInstanceUID.startswith("2.25.")
        assert result.PixelData == original.PixelData


@pytest.mark.filterwarnings("ignore:Invalid value for VR")  # real-world files are like that
@pytest.mark.parametrize("name", PYDICOM_FILES)
def test_pydicom_test_file_keeps_no_original_value(name: str) -> None:
    """pydicom's real-world files (CT, MR, RT, SR, compressed, private tags, overlays)."""
    original = pydicom.dcmread(get_testdata_file(name), force=True)
    assert_profile_applied(original, deidentified(original))


def test_same_patient_gets_same_pseudonym_and_uids(
    make_series: Callable[..., GeneratedSeries],
) -> None:
    """Two series of one patient share pseudonym and study UID; another patient differs."""
    first = make_series("tiny", 1, patient_id="P1", study_uid="1.2.3.4", series_number=1)
    second = make_series("tiny", 1, patient_id="P1", study_uid="1.2.3.4", series_number=2)
    other = make_series("tiny", 1, patient_id="P2", study_uid="1.2.3.5")
    a, b, c = (deidentified(pydicom.dcmread(s.paths[0])) for s in (first, second, other))
    assert a.PatientID == b.PatientID != c.PatientID
    assert a.PatientID.startswith("ANON") and "P1" not in str(a.PatientName)
    assert a.StudyInstanceUID == b.StudyInstanceUID != "1.2.3.4"
    assert a.SeriesInstanceUID != b.SeriesInstanceUID
    assert a.file_meta.MediaStorageSOPInstanceUID == a.SOPInstanceUID


def test_keep_options_shift_dates_per_patient_and_keep_series_description(
    make_series: Callable[..., GeneratedSeries],
) -> None:
    """Dates move back by one offset per patient; the series description stays."""
    series = make_series(
        "tiny", 1, patient_id="P1", series_description="T1 axial", tags={"StudyDate": "20240301"}
    )
    later = make_series("tiny", 1, patient_id="P1", tags={"StudyDate": "20240311"})
    options = Options(keep_dates_shifted=True, keep_series_descriptions=True)
    a = deidentified(pydicom.dcmread(series.paths[0]), options)
    b = deidentified(pydicom.dcmread(later.paths[0]), options)
    assert (_date(b.StudyDate) - _date(a.StudyDate)).days == 10
    assert a.StudyDate != "20240301"
    assert a.SeriesDescription == "T1 axial"
    assert "113107" in [code.CodeValue for code in a.DeidentificationMethodCodeSequence]


def _date(text: str) -> date:
    return date(int(text[:4]), int(text[4:6]), int(text[6:8]))


def test_module_runs_over_a_folder_with_the_module_interface(
    ct_series: GeneratedSeries, tmp_path: Path
) -> None:
    """``python -m mercure.modules.deidentify`` de-identifies a real CT series folder."""
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    out_dir.mkdir()
    for path in ct_series.paths:
        os.link(path, in_dir / path.name)
    (in_dir / "notes.txt").write_text("not DICOM")
    (in_dir / "task.json").write_text(json.dumps({"process": {"settings": {}}}))
    env = {
        **os.environ,
        "MERCURE_IN_DIR": str(in_dir),
        "MERCURE_OUT_DIR": str(out_dir),
        "MERCURE_DEID_SECRET": SECRET.decode(),
    }
    subprocess.run([sys.executable, "-m", "mercure.modules.deidentify"], env=env, check=True)
    result = json.loads((out_dir / "result.json").read_text())
    assert result["deidentified"] == len(ct_series)
    assert result["skipped_not_dicom"] == 1
    for path in out_dir.glob("*.dcm"):
        dataset = pydicom.dcmread(path)
        assert path.stem == dataset.SOPInstanceUID
        assert dataset.SOPInstanceUID not in ct_series.sop_instance_uids
        assert dataset.PatientID != ct_series.patient_id


def test_module_without_secret_refuses_to_run(tmp_path: Path) -> None:
    """No site secret: exit code 2 and a message naming the variable."""
    env = {**os.environ, "MERCURE_IN_DIR": str(tmp_path), "MERCURE_OUT_DIR": str(tmp_path)}
    env.pop("MERCURE_DEID_SECRET", None)
    done = subprocess.run(
        [sys.executable, "-m", "mercure.modules.deidentify"], env=env, capture_output=True
    )
    assert done.returncode == 2
    assert b"MERCURE_DEID_SECRET" in done.stdout
