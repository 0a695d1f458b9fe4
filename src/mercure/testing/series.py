"""Deterministic DICOM series for tests and benchmarks.

Same arguments, same bytes: every UID is derived from the seed (``generate_uid`` with entropy
sources), dates come from the seed, and the pixels are a seeded phantom computed once per image
size and reused for every instance, so a 1000-instance CT series costs little more than writing
its 0.5 GB. Files are proper DICOM Part 10 files (preamble, File Meta) written under a temporary
dot-name and renamed into place, so a scanner never sees half a file.

Kinds: ``ct`` (512x512, 16-bit, ~0.5 MB), ``mr`` (256x256, ~130 KB), ``tiny`` (64x64, ~9 KB).

Command line (for bench/)::

    python -m mercure.testing.series OUT --kind ct --count 1000 [--seed 1] [--syntax implicit]
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import math
import os
import random
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filewriter import dcmwrite
from pydicom.pixels.encoders import RLELosslessEncoder
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
    generate_uid,
)

CT_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2")
MR_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.4")
SECONDARY_CAPTURE_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.7")

#: Transfer syntaxes the generator writes, by UID; short names are accepted too (see ``SYNTAXES``).
SUPPORTED_SYNTAXES = (
    ImplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    RLELossless,
)
SYNTAXES: Mapping[str, UID] = {
    "implicit": ImplicitVRLittleEndian,
    "explicit": ExplicitVRLittleEndian,
    "deflated": DeflatedExplicitVRLittleEndian,
    "big": ExplicitVRBigEndian,
    "rle": RLELossless,
}

_IMPLEMENTATION_CLASS_UID = generate_uid(entropy_srcs=["mercure-router testing series generator"])
_PIXEL_SPACING = 0.5
_SOP_CLASS_BY_MODALITY = {"CT": CT_IMAGE_STORAGE, "MR": MR_IMAGE_STORAGE}


@dataclass(frozen=True)
class _Kind:
    """What distinguishes one kind of series: image size and modality-specific tags."""

    modality: str
    rows: int
    columns: int
    slice_thickness: float
    description: str
    tags: Mapping[str, Any]


KINDS: Mapping[str, _Kind] = {
    "ct": _Kind(
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
    "mr": _Kind(
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
    "tiny": _Kind(
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


@dataclass(frozen=True)
class GeneratedInstance:
    """One written file: where it is and what it holds."""

    path: Path
    sop_instance_uid: str
    instance_number: int
    size: int


@dataclass(frozen=True)
class GeneratedSeries:
    """The description of a generated series: its identifiers and its files, in order."""

    folder: Path
    kind: str
    modality: str
    sop_class_uid: str
    transfer_syntax: str
    study_uid: str
    series_uid: str
    series_number: int
    patient_id: str
    accession_number: str
    instances: tuple[GeneratedInstance, ...]

    def __len__(self) -> int:
        return len(self.instances)

    @property
    def paths(self) -> list[Path]:
        """The files, in instance-number order."""
        return [instance.path for instance in self.instances]

    @property
    def sop_instance_uids(self) -> set[str]:
        """The SOP Instance UIDs of all instances."""
        return {instance.sop_instance_uid for instance in self.instances}

    @property
    def total_bytes(self) -> int:
        """The size of all files together."""
        return sum(instance.size for instance in self.instances)

    def summary(self) -> dict[str, Any]:
        """A JSON-able description without the per-instance list."""
        return {
            "folder": str(self.folder),
            "kind": self.kind,
            "modality": self.modality,
            "transfer_syntax": self.transfer_syntax,
            "study_uid": self.study_uid,
            "series_uid": self.series_uid,
            "series_number": self.series_number,
            "count": len(self.instances),
            "total_bytes": self.total_bytes,
        }


@dataclass(frozen=True)
class SeriesSpec:
    """One series of a study for :func:`generate_study`; fields as in :func:`generate_series`."""

    kind: str = "tiny"
    count: int = 10
    series_description: str | None = None
    modality: str | None = None
    transfer_syntax: str = ExplicitVRLittleEndian
    size: tuple[int, int] | None = None
    tags: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GeneratedStudy:
    """The description of a generated study: its identifiers and its series."""

    folder: Path
    study_uid: str
    patient_id: str
    accession_number: str
    series: tuple[GeneratedSeries, ...]

    @property
    def paths(self) -> list[Path]:
        """All files of all series."""
        return [path for series in self.series for path in series.paths]

    @property
    def sop_instance_uids(self) -> set[str]:
        """The SOP Instance UIDs of all instances of all series."""
        return {uid for series in self.series for uid in series.sop_instance_uids}


def derived_uid(*parts: object) -> str:
    """A UID that depends only on ``parts``: the way every generated UID is made."""
    return str(generate_uid(entropy_srcs=["mercure-router-testing", *map(str, parts)]))


def generate_series(
    folder: Path | str,
    kind: str = "ct",
    count: int = 10,
    *,
    seed: int = 0,
    study_uid: str | None = None,
    series_uid: str | None = None,
    series_number: int = 1,
    first_instance_number: int = 1,
    patient_id: str | None = None,
    patient_name: str | None = None,
    accession_number: str | None = None,
    study_description: str = "mercure-router test study",
    series_description: str | None = None,
    modality: str | None = None,
    transfer_syntax: str = ExplicitVRLittleEndian,
    size: tuple[int, int] | None = None,
    tags: Mapping[str, Any] | None = None,
) -> GeneratedSeries:
    """Write ``count`` instances of one series into ``folder`` (created if missing).

    Files are named ``IM00001.dcm`` ... by instance number. UIDs not given are derived from
    ``seed`` (study), ``series_number`` (series) and the instance number (SOP instance), so
    calling again with a higher ``first_instance_number`` adds late instances to the same
    series. ``modality`` overrides the kind's (CT and MR keep their SOP class, others become
    Secondary Capture); ``size`` is ``(rows, columns)``; ``tags`` maps DICOM keywords to values
    set on every instance last (``None`` removes the element). ``transfer_syntax`` is a UID or
    one of ``SYNTAXES``' short names.
    """
    profile = _kind(kind)
    syntax = _syntax(transfer_syntax)
    rows, columns = size or (profile.rows, profile.columns)
    modality = modality or profile.modality
    study_uid = study_uid or derived_uid("study", seed)
    series_uid = series_uid or derived_uid("series", study_uid, series_number)
    patient_id = patient_id or f"MRT{seed:06d}"
    accession_number = accession_number or f"ACC{seed:08d}"
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    ds = _series_dataset(
        profile,
        seed=seed,
        modality=modality,
        rows=rows,
        columns=columns,
        study_uid=study_uid,
        series_uid=series_uid,
        series_number=series_number,
        patient_id=patient_id,
        patient_name=patient_name or f"Test^Patient{seed}",
        accession_number=accession_number,
        study_description=study_description,
        series_description=series_description or profile.description,
    )
    ds.PixelData = _pixel_data(rows, columns, seed, syntax)
    for keyword, value in (tags or {}).items():
        if value is None:
            if keyword in ds:
                delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)

    instances = []
    for number in range(first_instance_number, first_instance_number + count):
        sop_uid = UID(derived_uid("instance", series_uid, number))
        ds.SOPInstanceUID = sop_uid
        ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
        ds.InstanceNumber = number
        position = round((number - 1) * profile.slice_thickness, 3)
        ds.ImagePositionPatient = [
            -_PIXEL_SPACING * columns / 2,
            -_PIXEL_SPACING * rows / 2,
            position,
        ]
        ds.SliceLocation = position
        path = folder / f"IM{number:05d}.dcm"
        instances.append(GeneratedInstance(path, sop_uid, number, _write(path, ds, syntax)))
    return GeneratedSeries(
        folder=folder,
        kind=kind,
        modality=modality,
        sop_class_uid=str(ds.SOPClassUID),
        transfer_syntax=str(syntax),
        study_uid=study_uid,
        series_uid=series_uid,
        series_number=series_number,
        patient_id=patient_id,
        accession_number=accession_number,
        instances=tuple(instances),
    )


def generate_study(
    folder: Path | str,
    series: Iterable[SeriesSpec | Mapping[str, Any]] = (
        SeriesSpec("tiny", 5),
        SeriesSpec("tiny", 5),
    ),
    *,
    seed: int = 0,
    study_uid: str | None = None,
    patient_id: str | None = None,
    patient_name: str | None = None,
    accession_number: str | None = None,
    study_description: str = "mercure-router test study",
) -> GeneratedStudy:
    """Write several series of one study, each into ``folder/seriesNN/`` (NN = series number).

    ``series`` items are :class:`SeriesSpec` values or mappings of its fields.
    """
    folder = Path(folder)
    study_uid = study_uid or derived_uid("study", seed)
    patient_id = patient_id or f"MRT{seed:06d}"
    accession_number = accession_number or f"ACC{seed:08d}"
    written = []
    for number, item in enumerate(series, start=1):
        spec = item if isinstance(item, SeriesSpec) else SeriesSpec(**item)
        written.append(
            generate_series(
                folder / f"series{number:02d}",
                spec.kind,
                spec.count,
                seed=seed,
                study_uid=study_uid,
                series_number=number,
                patient_id=patient_id,
                patient_name=patient_name,
                accession_number=accession_number,
                study_description=study_description,
                series_description=spec.series_description,
                modality=spec.modality,
                transfer_syntax=spec.transfer_syntax,
                size=spec.size,
                tags=spec.tags,
            )
        )
    return GeneratedStudy(folder, study_uid, patient_id, accession_number, tuple(written))


def _kind(kind: str) -> _Kind:
    try:
        return KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown series kind {kind!r}; choose one of {sorted(KINDS)}") from None


def _syntax(name: str) -> UID:
    syntax = SYNTAXES[name] if name in SYNTAXES else UID(name)
    if syntax not in SUPPORTED_SYNTAXES:
        known = ", ".join([*SYNTAXES, *(s.name for s in SUPPORTED_SYNTAXES)])
        raise ValueError(f"transfer syntax {name!r} is not supported by the generator: {known}")
    return syntax


def _series_dataset(
    profile: _Kind,
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
    sop_class = _SOP_CLASS_BY_MODALITY.get(modality, SECONDARY_CAPTURE_IMAGE_STORAGE)

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.ImplementationClassUID = _IMPLEMENTATION_CLASS_UID
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
    ds.PixelSpacing = [_PIXEL_SPACING, _PIXEL_SPACING]
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
def _phantom(rows: int, columns: int, seed: int) -> bytes:
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
def _pixel_data(rows: int, columns: int, seed: int, syntax: UID) -> bytes:
    pixels = _phantom(rows, columns, seed)
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


def _write(path: Path, ds: Dataset, syntax: UID) -> int:
    """Write ``ds`` as a Part 10 file under a dot-name, rename into place, return its size."""
    ds.file_meta.TransferSyntaxUID = syntax
    tmp = path.with_name(f".tmp-{path.name}.{os.getpid()}")
    with open(tmp, "wb") as handle:
        dcmwrite(
            handle,
            ds,
            implicit_vr=syntax.is_implicit_VR,
            little_endian=syntax.is_little_endian,
            enforce_file_format=True,
        )
        size = handle.tell()
    os.replace(tmp, path)
    return size


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: generate one series (or a study of several) and print its summary as JSON."""
    parser = argparse.ArgumentParser(prog="python -m mercure.testing.series", description=__doc__)
    parser.add_argument("out", type=Path, help="output folder (created if missing)")
    parser.add_argument("--kind", choices=sorted(KINDS), default="ct")
    parser.add_argument("--count", type=int, default=100, help="instances per series")
    parser.add_argument("--series", type=int, default=1, help="number of series in one study")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--syntax", default="explicit", help=f"one of {sorted(SYNTAXES)} or a UID")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    if args.series == 1:
        written = [
            generate_series(
                args.out, args.kind, args.count, seed=args.seed, transfer_syntax=args.syntax
            )
        ]
    else:
        spec = SeriesSpec(args.kind, args.count, transfer_syntax=args.syntax)
        written = list(generate_study(args.out, [spec] * args.series, seed=args.seed).series)
    elapsed = time.perf_counter() - started
    report = {"seconds": round(elapsed, 3), "series": [series.summary() for series in written]}
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
