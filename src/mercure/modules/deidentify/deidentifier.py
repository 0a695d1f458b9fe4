"""De-identification of one dataset by the Basic Profile, with pseudonyms from a site secret.

Everything derived is keyed by an HMAC of the site secret, so it is the same on every run and
every host that shares the secret, and cannot be reversed without it:

- patient: ``PatientID`` and ``PatientName`` become ``ANON<12 hex>`` from the original patient
  ID (consistent pseudonyms per patient: later studies of the patient match);
- UIDs: ``2.25.<decimal of 128 bits>`` from the original UID (references stay consistent);
- dates (option ``keep_dates_shifted``): moved back by 1 to 3650 days, an offset fixed per
  patient, so intervals between a patient's studies are kept; times are then kept too.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import date, timedelta

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag

from mercure.modules.deidentify.profile import BASIC_PROFILE

PATIENT_NAME = 0x00100010
PATIENT_ID = 0x00100020
PATIENT_BIRTH_DATE = 0x00100030
SERIES_DESCRIPTION = 0x0008103E
METHOD = ["DICOM PS3.15 Basic Profile", "mercure-router deidentify"]

_DUMMY_TEXT = "ANONYMIZED"
_DUMMY = {
    "PN": "ANONYMOUS",
    "DA": "19000101",
    "DT": "19000101000000",
    "TM": "000000",
    "IS": "0",
    "DS": "0",
}
_TEXT_VRS = {"AE", "AS", "CS", "LO", "LT", "SH", "ST", "UC", "UR", "UT"}


@dataclass(frozen=True)
class Options:
    """The module's settings (``process.settings`` of the task)."""

    keep_dates_shifted: bool = False
    keep_series_descriptions: bool = False


class Deidentifier:
    """Applies the profile to datasets; one instance serves any number of patients."""

    def __init__(self, secret: bytes, options: Options | None = None) -> None:
        if not secret:
            raise ValueError("a site secret is needed for consistent pseudonyms")
        self.secret = secret
        self.options = options or Options()

    def _digest(self, purpose: str, value: str) -> bytes:
        return hmac.new(self.secret, f"{purpose}\0{value}".encode(), hashlib.sha256).digest()

    def pseudonym(self, patient_key: str) -> str:
        """The pseudonym of a patient (same key, same secret: same pseudonym)."""
        return "ANON" + self._digest("patient", patient_key).hex()[:12].upper()

    def new_uid(self, uid: str) -> str:
        """The replacement of a UID (consistent across files, series and runs)."""
        return "2.25." + str(int.from_bytes(self._digest("uid", uid)[:16], "big"))

    def date_offset(self, patient_key: str) -> timedelta:
        """How far back this patient's dates move (keep_dates_shifted)."""
        days = int.from_bytes(self._digest("dates", patient_key)[:4], "big") % 3650 + 1
        return timedelta(days=days)

    def deidentify(self, dataset: Dataset) -> None:
        """De-identify ``dataset`` in place (its file meta too, if it has one)."""
        patient_key = str(dataset.get("PatientID", "") or "") or "|".join(
            str(dataset.get(keyword, "") or "") for keyword in ("PatientName", "PatientBirthDate")
        )
        pass_ = _Pass(self, patient_key)
        pass_.clean(dataset)
        meta = getattr(dataset, "file_meta", None)
        if meta is not None and "MediaStorageSOPInstanceUID" in meta:
            meta.MediaStorageSOPInstanceUID = self.new_uid(meta.MediaStorageSOPInstanceUID)
        dataset.PatientIdentityRemoved = "YES"
        method = list(METHOD)
        if self.options.keep_dates_shifted:
            method.append("dates shifted per patient")
        if self.options.keep_series_descriptions:
            method.append("series descriptions kept")
        dataset.DeidentificationMethod = method
        code = Dataset()
        code.CodeValue = "113100"
        code.CodingSchemeDesignator = "DCM"
        code.CodeMeaning = "Basic Application Confidentiality Profile"
        codes = [code]
        if self.options.keep_dates_shifted:
            modified = Dataset()
            modified.CodeValue = "113107"
            modified.CodingSchemeDesignator = "DCM"
            modified.CodeMeaning = "Retain Longitudinal Temporal Information Modified Dates Option"
            codes.append(modified)
        dataset.DeidentificationMethodCodeSequence = Sequence(codes)


class _Pass:
    """One dataset's de-identification: knows the patient, walks the nested datasets."""

    def __init__(self, owner: Deidentifier, patient_key: str) -> None:
        self.owner = owner
        self.options = owner.options
        self.pseudonym = owner.pseudonym(patient_key)
        self.offset = owner.date_offset(patient_key)

    def clean(self, dataset: Dataset) -> None:
        for tag in list(dataset.keys()):
            self._element(dataset, BaseTag(tag))

    def _element(self, dataset: Dataset, tag: BaseTag) -> None:
        if tag.is_private or _is_curve_or_overlay_text(tag):
            del dataset[tag]
            return
        element = dataset[tag]
        action = BASIC_PROFILE.get(int(tag))
        vr = element.VR
        if action is None or action == "K":
            if vr == "SQ":
                for item in element.value:
                    self.clean(item)
            return
        if int(tag) in (PATIENT_ID, PATIENT_NAME):
            element.value = self.pseudonym if int(tag) == PATIENT_ID else f"{self.pseudonym}^"
        elif self.options.keep_series_descriptions and int(tag) == SERIES_DESCRIPTION:
            return
        elif self.options.keep_dates_shifted and vr in ("DA", "DT", "TM"):
            if int(tag) == PATIENT_BIRTH_DATE:
                element.value = None
            elif vr != "TM":
                element.value = self._shift(element.value, vr)
        elif action == "U":
            element.value = self._uids(element.value)
        elif action == "X":
            del dataset[tag]
        elif action == "Z" or vr == "SQ" or (vr not in _DUMMY and vr not in _TEXT_VRS):
            element.value = [] if vr == "SQ" else None
        else:
            element.value = _DUMMY.get(vr, _DUMMY_TEXT)

    def _uids(self, value: object) -> object:
        if isinstance(value, str):
            return self.owner.new_uid(value) if value else value
        return [self.owner.new_uid(str(uid)) for uid in value]  # type: ignore[attr-defined]

    def _shift(self, value: object, vr: str) -> object:
        if isinstance(value, str) or value is None:
            return self._shift_one(str(value or ""), vr)
        return [self._shift_one(str(v), vr) for v in value]  # type: ignore[attr-defined]

    def _shift_one(self, text: str, vr: str) -> str:
        if not text:
            return text
        try:
            original = date(int(text[0:4]), int(text[4:6]), int(text[6:8]))
        except ValueError:
            return _DUMMY[vr]  # not a full date: nothing to shift safely
        shifted = (original - self.offset).strftime("%Y%m%d")
        return shifted + text[8:] if vr == "DT" else shifted


def _is_curve_or_overlay_text(tag: BaseTag) -> bool:
    group = tag.group
    if 0x5000 <= group <= 0x50FF and group % 2 == 0:
        return True
    return 0x6000 <= group <= 0x60FF and group % 2 == 0 and tag.element in (0x3000, 0x4000)
