"""What a generated instance contains: the kinds of series, their tags and their pixels.

The series generator (:mod:`mercure.testing.series`) writes what this module describes. All
content is a function of the arguments: UIDs via :func:`derived_uid`, dates from the seed,
pixels a seeded phantom computed once per size and seed.
"""

from __future__ import annotations

import datetime
import functools
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels.encoders import RLELosslessEncoder
from pydicom.uid import UID, ExplicitVRBigEndian, RLELossless, generate_uid

CT_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2")
MR_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.4")
SECONDARY_CAPTURE_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.7")

IMPLEMENTATION_CLASS_UID = generate_uid(entropy_srcs=["mercure-router testing series generator"])
PIXEL_SPACING = 0.5
SOP_CLASS_BY_MODALITY = {"CT": CT_IMAGE_STORAGE, "MR": MR_IMAGE_STORAGE}


@dataclass(frozen=True)
class Kind:
    """What distinguishes one kind of series: image size and modality-specific tags."""

    modality: str
    rows: int
    columns: int
    slice_thickness: float
    description: str
    tags: Mapping[str, Any]


KINDS: Mapping[str, Kind] = {
    "ct": Kind(
        "CT",
        512,
        512,
        1.0,
        "CT HEAD 1.0 H30s",
        {
            "KVP": "120",
            "ConvolutionKernel": "H30s",
            "RescaleIntercept": "-1024",
            "RescaleSlope": "1",
            "RescaleType": "HU",
            "WindowCenter": "40",
            "WindowWidth": "80",
            "BodyPartExamined": "HEAD",
            "ProtocolName": "Head routine",
        },
    ),
    "mr": Kind(
        "MR",
        256,
        256,
        4.0,
        "t2_tse_tra",
        {
            "ScanningSequence": "SE",
            "SequenceVariant": "SK",
            "ScanOptions": "",
            "MRAcquisitionType": "2D",
            "RepetitionTime": "4000",
            "EchoTime": "90",
            "MagneticFieldStrength": "3",
            "WindowCenter": "600",
            "WindowWidth": "1200",
            "BodyPartExamined": "BRAIN",
            "ProtocolName": "t2_tse_tra",
        },
    ),
    "tiny": Kind(
        "CT",
        64,
        64,
        5.0,
        "TINY 64x64",
        {
            "RescaleIntercept": "-1024",
            "RescaleSlope": "1",
            "RescaleType": "HU",
            "BodyPartExamined": "HEAD",
        },
    ),
}


def derived_uid(*parts: object) -> str:
    """A UID that depends only on ``parts``: the way every generated UID is made."""
    return str(generate_uid(entropy_srcs=["mercure-router-testing", *map(str, parts)]))


def series_dataset(
    profile: Kind,
    *,
    seed: int,
    modality: str,
    rows: int,
    columns: int,
    study_uid: str,
    series_uid: str,
    series_number: int,
    patient_id: str,
    patient_name: str,
    accession_number: str,
    study_description: str,
    series_description: str,
) -> Dataset:
    """Everything that is the same for all instances of the series."""
    day = datetime.date(2024, 1, 1) + datetime.timedelta(days=seed % 366)
    study_date = day.strftime("%Y%m%d")
    study_time = f"{8 + seed % 10:02d}{seed % 60:02d}00"
    series_time = f"{8 + seed % 10:02d}{seed % 60:02d}{min(series_number, 59):02d}"
    sop_class = SOP_CLASS_BY_MODALITY.get(modality, SECONDARY_CAPTURE_IMAGE_STORAGE)

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    ds.file_meta.ImplementationVersionName = "MERCURE_TEST"
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = sop_class
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = study_date
    ds.StudyTime = study_time
    ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = series_time
    ds.AccessionNumber = accession_number
    ds.Modality = modality
    ds.Manufacturer = "mercure-router"
    ds.InstitutionName = "Test Hospital"
    ds.ReferringPhysicianName = "Referrer^Rita"
    ds.StationName = "TESTSTATION"
    ds.StudyDescription = study_description
    ds.SeriesDescription = series_description
    ds.ManufacturerModelName = "series generator"
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = f"{1940 + seed % 60}0101"
    ds.PatientSex = "OF"[seed % 2]
    ds.PatientAge = f"{84 - seed % 60:03d}Y"
    ds.SliceThickness = str(profile.slice_thickness)
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = str(1 + seed % 10000)
    ds.SeriesNumber = series_number
    ds.AcquisitionNumber = 1
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.FrameOfReferenceUID = derived_uid("frame", series_uid)
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.PixelSpacing = [PIXEL_SPACING, PIXEL_SPACING]
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    if sop_class == SECONDARY_CAPTURE_IMAGE_STORAGE:
        ds.ConversionType = "WSD"
    for keyword, value in profile.tags.items():
        setattr(ds, keyword, value)
    return ds


@functools.lru_cache(maxsize=16)
def phantom(rows: int, columns: int, seed: int) -> bytes:
    """A seeded disc of "tissue" in "air", 12-bit values as little-endian 16-bit words.

    Computed once per size and seed; some structure plus noise so that lossless compression has
    realistic work to do.
    """
    rng = random.Random(seed)
    noise = rng.randbytes(rows * columns)
    radius_sq = (0.45 * min(rows, columns)) ** 2
    cy, cx = rows / 2, columns / 2
    words = bytearray(rows * columns * 2)
    i = 0
    for y in range(rows):
        dy_sq = (y - cy) ** 2
        half = math.sqrt(radius_sq - dy_sq) if dy_sq < radius_sq else -1.0
        for x in range(columns):
            n = noise[i >> 1]
            value = 1024 + 40 + (y >> 3) + (n & 0x3F) if abs(x - cx) <= half else n & 0x0F
            words[i] = value & 0xFF
            words[i + 1] = value >> 8
            i += 2
    return bytes(words)


@functools.lru_cache(maxsize=16)
def pixel_data(rows: int, columns: int, seed: int, syntax: UID) -> bytes:
    """The PixelData value for ``syntax``: the phantom, byte-swapped or RLE-encapsulated."""
    pixels = phantom(rows, columns, seed)
    if syntax == ExplicitVRBigEndian:
        swapped = bytearray(len(pixels))
        swapped[0::2] = pixels[1::2]
        swapped[1::2] = pixels[0::2]
        return bytes(swapped)
    if syntax == RLELossless:
        frame = RLELosslessEncoder.encode(
            pixels,
            rows=rows,
            columns=columns,
            samples_per_pixel=1,
            bits_allocated=16,
            bits_stored=12,
            pixel_representation=0,
            photometric_interpretation="MONOCHROME2",
            number_of_frames=1,
        )
        return encapsulate([frame])
    return pixels
