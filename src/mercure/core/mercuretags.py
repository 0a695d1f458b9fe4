"""mercure's tag set: the tags mercure 0.4.1 writes into each instance's ``.tags`` file.

mercure's receiver reads a fixed list of standard tags from every instance and writes each of
them, as ``''`` when the instance lacks it, plus the sender (``SenderAddress``, ``SenderAET``,
``ReceiverAET``) and the tags named in its ``dicom_receiver.additional_tags`` (our
``router.additional_tags``): keys are DICOM keywords or tag numbers ``gggg,eeee``, values only
examples shown in the web interface. An additional tag is written under its keyword when the
DICOM dictionary knows the number, else as ``(gggg,eeee)`` (lower-case hex), which is how
private tags appear. Values: multiple values joined by a backslash, CR as ``;``, LF as a
space, ``"`` as ``'``.

:func:`mercure_tags` gives that mapping for one dataset (modules get it in their ``.tags``
files); :func:`with_standard_tags` gives a rule's tag mapping mercure's ``''`` for the standard
tags a series lacks; :func:`additional_tag_values` reads the additional tags for rules.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from pydicom.datadict import keyword_for_tag, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag, Tag

from mercure.core.dicomtags import MAX_VALUE_LENGTH

MERCURE_STANDARD_TAGS: tuple[str, ...] = (
    "SpecificCharacterSet",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "Modality",
    "BodyPartExamined",
    "ProtocolName",
    "RetrieveAETitle",
    "StationAETitle",
    "Manufacturer",
    "ManufacturerModelName",
    "StudyDescription",
    "CodeValue",
    "CodeMeaning",
    "SeriesDescription",
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "ReferringPhysicianName",
    "StudyID",
    "SeriesNumber",
    "StudyInstanceUID",
    "SeriesDate",
    "SeriesTime",
    "AcquisitionDate",
    "AcquisitionTime",
    "SequenceName",
    "ScanningSequence",
    "SequenceVariant",
    "MagneticFieldStrength",
    "StationName",
    "DeviceSerialNumber",
    "DeviceUID",
    "SoftwareVersions",
    "ContrastBolusAgent",
    "ImageComments",
    "SliceThickness",
    "InstanceNumber",
    "AcquisitionNumber",
    "InstitutionName",
    "AcquisitionType",
    "ImageType",
    "MediaStorageSOPClassUID",
)
"""The DICOM tags mercure's receiver writes for every instance, ``''`` when absent (its
``getdcmtags``); ``MediaStorageSOPClassUID`` comes from the file meta information."""

SENDER_TAGS: tuple[str, ...] = ("SenderAddress", "SenderAET", "ReceiverAET")
"""What mercure adds about how the instance arrived (always written, ``''`` when unknown)."""

_NUMBER = re.compile(r"^\(?\s*([0-9a-fA-F]{4})\s*[,_]\s*([0-9a-fA-F]{4})\s*\)?$")


def tag_number_key(text: str) -> str | None:
    """``(gggg,eeee)`` for a tag number written ``gggg,eeee``, ``(gggg,eeee)`` or
    ``gggg_eeee`` (any case); None if ``text`` is not a tag number."""
    found = _NUMBER.match(text)
    if found is None:
        return None
    return f"({found.group(1).lower()},{found.group(2).lower()})"


def parse_additional_tag(name: str) -> tuple[BaseTag, str]:
    """The tag an ``additional_tags`` key names, and the key mercure writes it under.

    Raises ``ValueError`` saying why for a name that is neither a keyword nor a tag number.
    """
    number = tag_number_key(name)
    if number is not None:
        tag = Tag(int(number[1:5], 16), int(number[6:10], 16))
        keyword = "" if tag.is_private else keyword_for_tag(tag)
        return tag, keyword or number
    found = tag_for_keyword(name.strip())
    if found is None:
        raise ValueError(
            f"{name!r} is neither a DICOM keyword nor a tag number like 0019,100C or (0019,100C)"
        )
    return Tag(found), name.strip()


def with_standard_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """``tags`` with ``''`` for each of mercure's standard tags it lacks (mercure's receiver
    writes them so: ``tags.BodyPartExamined == ''`` is true for a series without one)."""
    filled = dict(tags)
    for keyword in MERCURE_STANDARD_TAGS:
        filled.setdefault(keyword, "")
    return filled


def additional_tag_values(dataset: Dataset, names: Iterable[str]) -> dict[str, str]:
    """The tags named in ``additional_tags`` (keys as mercure writes them), ``''`` if absent.

    Names that do not parse are skipped here: the configuration refuses them when it loads.
    """
    values: dict[str, str] = {}
    for name in names:
        try:
            tag, key = parse_additional_tag(name)
        except ValueError:
            continue
        values[key] = _element_text(dataset, tag)
    return values


def mercure_tags(
    dataset: Dataset,
    additional_tags: Iterable[str] = (),
    *,
    sender_address: str = "",
    sender_aet: str = "",
    receiver_aet: str = "",
) -> dict[str, str]:
    """mercure's tag dict for one instance, as in its ``<series>#<sop>.tags`` files.

    The standard list (``''`` for absent tags), the sender, then ``additional_tags`` (the
    keys of ``router.additional_tags``). ``dataset`` as read by ``pydicom.dcmread`` (its
    ``file_meta`` gives ``MediaStorageSOPClassUID``). mercure also writes ``Filename`` (the
    name the file arrived with): callers that know it add it.
    """
    tags: dict[str, str] = {}
    for keyword in MERCURE_STANDARD_TAGS[:3]:
        tags[keyword] = _element_text(dataset, Tag(keyword))
    tags["SenderAddress"] = sender_address
    tags["SenderAET"] = sender_aet
    tags["ReceiverAET"] = receiver_aet
    meta = getattr(dataset, "file_meta", None)
    for keyword in MERCURE_STANDARD_TAGS[3:]:
        source = meta if keyword == "MediaStorageSOPClassUID" else dataset
        found = tag_for_keyword(keyword)
        tags[keyword] = "" if source is None or found is None else _element_text(source, Tag(found))
    tags.update(additional_tag_values(dataset, additional_tags))
    return tags


def _element_text(dataset: Dataset, tag: BaseTag) -> str:
    if tag not in dataset:
        return ""
    try:
        value = dataset[tag].value
    except (ValueError, TypeError, LookupError, UnicodeError):
        raw = getattr(dataset.get_item(tag), "value", b"")
        value = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else ""
    text = _as_text(value).strip("\0 ")
    return text.replace("\r", ";").replace("\n", " ").replace('"', "'")[:MAX_VALUE_LENGTH]


def _as_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace").strip("\0 ")
    if isinstance(value, Sequence | Dataset):
        return ""  # a sequence has no text of its own
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(_as_text(item) for item in value)
    return str(value)
