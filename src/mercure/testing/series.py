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
import json
import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
)

from mercure.testing.imaging import (
    CT_IMAGE_STORAGE,
    KINDS,
    MR_IMAGE_STORAGE,
    PIXEL_SPACING,
    SECONDARY_CAPTURE_IMAGE_STORAGE,
    Kind,
    derived_uid,
    pixel_data,
    series_dataset,
)

__all__ = [
    "CT_IMAGE_STORAGE",
    "KINDS",
    "MR_IMAGE_STORAGE",
    "SECONDARY_CAPTURE_IMAGE_STORAGE",
    "SUPPORTED_SYNTAXES",
    "SYNTAXES",
    "GeneratedInstance",
    "GeneratedSeries",
    "GeneratedStudy",
    "SeriesSpec",
    "derived_uid",
    "generate_series",
    "generate_study",
    "main",
]

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
    set on every instance last (``None`` removes the element; a ``SOPClassUID`` given here
    goes into the File Meta too). ``transfer_syntax`` is a UID or one of ``SYNTAXES``' short
    names.
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

    ds = series_dataset(
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
    ds.PixelData = pixel_data(rows, columns, seed, syntax)
    for keyword, value in (tags or {}).items():
        if value is None:
            if keyword in ds:
                delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    if "SOPClassUID" in ds:
        # A SOP class set by tags (a private one, say) must be the File Meta's too.
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID

    instances = []
    for number in range(first_instance_number, first_instance_number + count):
        sop_uid = UID(derived_uid("instance", series_uid, number))
        ds.SOPInstanceUID = sop_uid
        ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
        ds.InstanceNumber = number
        position = round((number - 1) * profile.slice_thickness, 3)
        ds.ImagePositionPatient = [
            -PIXEL_SPACING * columns / 2,
            -PIXEL_SPACING * rows / 2,
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


def _kind(kind: str) -> Kind:
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
