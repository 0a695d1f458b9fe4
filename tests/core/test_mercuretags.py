"""mercure's tag set for one instance: standard tags as '' when absent, sender, additional tags."""

from __future__ import annotations

import io

import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from mercure.core.mercuretags import (
    MERCURE_STANDARD_TAGS,
    mercure_tags,
    parse_additional_tag,
    tag_number_key,
    with_standard_tags,
)


def _dataset() -> pydicom.Dataset:
    """A written and read back CT instance with one private element, as the receiver sees it."""
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID = "1.2.3.4"
    ds.Modality = "CT"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.ImageComments = 'line one\r\nsaid "hi"'
    ds.PatientName = "Doe^Jane"
    block = ds.private_block(0x0019, "SIEMENS CT VA0  COAD", create=True)
    block.add_new(0x0C, "LO", "tilt 0")
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    return pydicom.dcmread(buffer)


def test_mercure_tags_writes_every_standard_tag_empty_when_absent() -> None:
    """Absent standard tags are '', present ones their text, multi-values joined by a backslash."""
    tags = mercure_tags(_dataset(), sender_aet="MODALITY", receiver_aet="MERCURE")
    assert set(MERCURE_STANDARD_TAGS) <= set(tags)
    assert tags["BodyPartExamined"] == ""
    assert tags["Modality"] == "CT"
    assert tags["ImageType"] == "ORIGINAL\\PRIMARY\\AXIAL"
    assert tags["ImageComments"] == "line one; said 'hi'"
    assert tags["MediaStorageSOPClassUID"] == "1.2.840.10008.5.1.4.1.1.2"
    assert (tags["SenderAET"], tags["ReceiverAET"], tags["SenderAddress"]) == (
        "MODALITY",
        "MERCURE",
        "",
    )
    assert "StudyDate" not in tags  # not in mercure's list, not asked for


def test_mercure_tags_adds_additional_tags_by_keyword_and_number() -> None:
    """A private number is written as (gggg,eeee); a public one under its keyword."""
    tags = mercure_tags(_dataset(), ["0019,100C", "(0008,0020)", "PatientName", "0029,1010"])
    assert tags["(0019,100c)"] == "tilt 0"
    assert tags["StudyDate"] == ""
    assert tags["PatientName"] == "Doe^Jane"
    assert tags["(0029,1010)"] == ""


@pytest.mark.parametrize(
    ("text", "key"),
    [("0019,100C", "(0019,100c)"), ("(0019,100c)", "(0019,100c)"), ("0019_100c", "(0019,100c)")],
)
def test_tag_number_forms_share_one_key(text: str, key: str) -> None:
    """The three ways of writing a tag number name the same key."""
    assert tag_number_key(text) == key


def test_bad_additional_tag_name_says_why() -> None:
    """A name that is neither a keyword nor a number is refused with the name in the reason."""
    with pytest.raises(ValueError, match="'BodyPart' is neither a DICOM keyword"):
        parse_additional_tag("BodyPart")


def test_with_standard_tags_keeps_present_values() -> None:
    """Filling in '' never overwrites a tag the series has."""
    filled = with_standard_tags({"Modality": "MR", "StudyDate": "20240101"})
    assert filled["Modality"] == "MR"
    assert filled["BodyPartExamined"] == ""
    assert filled["StudyDate"] == "20240101"
