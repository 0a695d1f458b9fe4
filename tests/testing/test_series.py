"""Tests of mercure.testing.series: the deterministic DICOM generator."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import ExplicitVRBigEndian, ImplicitVRLittleEndian, RLELossless

from mercure.testing.series import (
    CT_IMAGE_STORAGE,
    SECONDARY_CAPTURE_IMAGE_STORAGE,
    SeriesSpec,
    generate_series,
    generate_study,
    main,
)


def _bytes_of(paths: list[Path]) -> list[bytes]:
    return [path.read_bytes() for path in paths]


def test_same_seed_gives_same_bytes(tmp_path: Path) -> None:
    """Two runs with the same arguments write byte-identical files."""
    first = generate_series(tmp_path / "a", "tiny", 5, seed=7)
    second = generate_series(tmp_path / "b", "tiny", 5, seed=7)
    assert _bytes_of(first.paths) == _bytes_of(second.paths)
    assert (first.study_uid, first.series_uid) == (second.study_uid, second.series_uid)


def test_different_seed_gives_different_uids_and_pixels(tmp_path: Path) -> None:
    """Another seed changes the study, series and instance UIDs and the pixel data."""
    first = generate_series(tmp_path / "a", "tiny", 3, seed=1)
    second = generate_series(tmp_path / "b", "tiny", 3, seed=2)
    assert first.study_uid != second.study_uid
    assert first.series_uid != second.series_uid
    assert not first.sop_instance_uids & second.sop_instance_uids
    pixels = [pydicom.dcmread(s.paths[0]).PixelData for s in (first, second)]
    assert pixels[0] != pixels[1]


def test_ct_instances_read_back_with_their_description(tmp_path: Path) -> None:
    """pydicom reads every CT file back as Part 10 with the UIDs the description lists."""
    series = generate_series(tmp_path, "ct", 3, seed=3, patient_id="P1")
    assert len(series) == 3
    for instance in series.instances:
        ds = pydicom.dcmread(instance.path)
        assert ds.file_meta.MediaStorageSOPInstanceUID == instance.sop_instance_uid
        assert ds.SOPInstanceUID == instance.sop_instance_uid
        assert ds.InstanceNumber == instance.instance_number
        assert ds.SeriesInstanceUID == series.series_uid
        assert ds.StudyInstanceUID == series.study_uid
        assert ds.SOPClassUID == CT_IMAGE_STORAGE
        assert (ds.Modality, ds.PatientID, ds.Rows, ds.Columns) == ("CT", "P1", 512, 512)
        assert len(ds.PixelData) == 512 * 512 * 2
        assert instance.size == instance.path.stat().st_size
    assert 512 * 512 * 2 < series.instances[0].size < 512 * 512 * 2 + 4096


def test_kinds_have_their_sizes(tmp_path: Path) -> None:
    """MR is 256x256 and tiny stays around 9 KB per file."""
    mr = generate_series(tmp_path / "mr", "mr", 1)
    tiny = generate_series(tmp_path / "tiny", "tiny", 1)
    assert pydicom.dcmread(mr.paths[0]).Modality == "MR"
    assert pydicom.dcmread(mr.paths[0]).Rows == 256
    assert 8192 < tiny.total_bytes < 10 * 1024


def test_overrides_and_extra_tags_apply_to_every_instance(tmp_path: Path) -> None:
    """Modality, size and the tags mapping are set on each file; None removes an element."""
    series = generate_series(
        tmp_path,
        "tiny",
        2,
        modality="OT",
        size=(16, 8),
        tags={"InstitutionName": "Elsewhere", "StationName": None, "BodyPartExamined": "CHEST"},
    )
    for path in series.paths:
        ds = pydicom.dcmread(path)
        assert (ds.Modality, ds.Rows, ds.Columns) == ("OT", 16, 8)
        assert ds.SOPClassUID == SECONDARY_CAPTURE_IMAGE_STORAGE
        assert ds.InstitutionName == "Elsewhere"
        assert ds.BodyPartExamined == "CHEST"
        assert "StationName" not in ds


@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, ExplicitVRBigEndian])
def test_uncompressed_syntaxes_carry_the_same_pixels(tmp_path: Path, syntax: str) -> None:
    """Each uncompressed syntax is declared in File Meta and holds the same pixel values."""
    reference = pydicom.dcmread(generate_series(tmp_path / "ref", "tiny", 1).paths[0])
    ds = pydicom.dcmread(
        generate_series(tmp_path / "x", "tiny", 1, transfer_syntax=syntax).paths[0]
    )
    assert ds.file_meta.TransferSyntaxUID == syntax
    pixels = bytearray(ds.PixelData)
    if syntax == ExplicitVRBigEndian:
        pixels[0::2], pixels[1::2] = pixels[1::2], pixels[0::2]
    assert bytes(pixels) == reference.PixelData


@pytest.mark.peers
def test_rle_series_decompresses_to_the_same_pixels(tmp_path: Path) -> None:
    """DCMTK's dcmdrle decodes an RLE Lossless file to the pixels of the uncompressed one."""
    reference = pydicom.dcmread(generate_series(tmp_path / "ref", "tiny", 1).paths[0])
    compressed = generate_series(tmp_path / "rle", "tiny", 1, transfer_syntax=RLELossless)
    assert pydicom.dcmread(compressed.paths[0]).file_meta.TransferSyntaxUID == RLELossless
    decoded = tmp_path / "decoded.dcm"
    subprocess.run(["dcmdrle", str(compressed.paths[0]), str(decoded)], check=True)
    assert pydicom.dcmread(decoded).PixelData == reference.PixelData


def test_unknown_syntax_and_kind_are_refused(tmp_path: Path) -> None:
    """Asking for what the generator cannot write raises ValueError naming the choices."""
    with pytest.raises(ValueError, match="not supported"):
        generate_series(tmp_path, "tiny", 1, transfer_syntax="1.2.840.10008.1.2.4.50")
    with pytest.raises(ValueError, match="unknown series kind"):
        generate_series(tmp_path, "xray", 1)


def test_late_instances_join_the_same_series(tmp_path: Path) -> None:
    """A second call with a higher first instance number adds new instances to the series."""
    early = generate_series(tmp_path, "tiny", 3, seed=5)
    late = generate_series(tmp_path, "tiny", 2, seed=5, first_instance_number=4)
    assert late.series_uid == early.series_uid
    assert not late.sop_instance_uids & early.sop_instance_uids
    assert [p.name for p in late.paths] == ["IM00004.dcm", "IM00005.dcm"]


def test_study_holds_several_series_of_one_study(tmp_path: Path) -> None:
    """generate_study writes one subfolder per series, all with the same study and patient."""
    study = generate_study(
        tmp_path,
        [SeriesSpec("tiny", 2, series_description="scout"), {"kind": "mr", "count": 1}],
        seed=9,
    )
    assert [len(s) for s in study.series] == [2, 1]
    assert len({s.series_uid for s in study.series}) == 2
    assert {pydicom.dcmread(p).StudyInstanceUID for p in study.paths} == {study.study_uid}
    assert pydicom.dcmread(study.series[0].paths[0]).SeriesDescription == "scout"
    assert [s.folder.name for s in study.series] == ["series01", "series02"]


def test_no_temporary_files_are_left_behind(tmp_path: Path) -> None:
    """Only the final .dcm names remain in the folder."""
    generate_series(tmp_path, "tiny", 4)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"IM0000{i}.dcm" for i in range(1, 5)]


def test_command_line_prints_a_json_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI generates the series and reports count, UIDs and seconds as JSON."""
    assert main([str(tmp_path), "--kind", "tiny", "--count", "3", "--syntax", "implicit"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["series"][0]["count"] == 3
    assert report["series"][0]["transfer_syntax"] == ImplicitVRLittleEndian
    assert len(list(tmp_path.glob("*.dcm"))) == 3


@pytest.mark.peers
@pytest.mark.parametrize("syntax", ["explicit", "implicit", "big", "deflated", "rle"])
def test_dcmtk_accepts_generated_files(tmp_path: Path, syntax: str) -> None:
    """DCMTK's dcmdump parses each generated syntax without complaint."""
    series = generate_series(tmp_path, "tiny", 1, transfer_syntax=syntax)
    result = subprocess.run(
        ["dcmdump", "-q", "+E", str(series.paths[0])], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert series.sop_instance_uids.pop() in result.stdout
