"""What the retrieve job tests share: a PACS library of small studies, a configuration, and
ways to watch a job and count what arrived."""

from __future__ import annotations

import collections
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mercure.core.datafolder import DataFolder, Stage
from mercure.core.events import Event, read_segment
from mercure.core.retrievemarks import RetrieveMark, marks_of_job
from mercure.retriever.jobs import JobProgress, find_job, read_progress
from mercure.testing.peers import Orthanc
from mercure.testing.series import GeneratedStudy, SeriesSpec, generate_study
from mercure.testing.wait import wait_until

PATIENTS = 7


@dataclass(frozen=True)
class Library:
    """Generated studies (several patients, two series each) to load into a PACS."""

    studies: tuple[GeneratedStudy, ...]

    @property
    def accessions(self) -> list[str]:
        return [study.accession_number for study in self.studies]

    @property
    def sop_instance_uids(self) -> set[str]:
        return {uid for study in self.studies for uid in study.sop_instance_uids}

    def by_study(self) -> dict[str, GeneratedStudy]:
        return {study.study_uid: study for study in self.studies}

    def load(self, orthanc: Orthanc) -> None:
        for study in self.studies:
            orthanc.upload(study.paths)


def make_library(folder: Path, count: int = 20, per_series: int = 2) -> Library:
    """``count`` studies of :data:`PATIENTS` patients: a CT and an MR series of ``per_series``
    tiny instances each."""
    studies = []
    for number in range(1, count + 1):
        studies.append(
            generate_study(
                folder / f"study{number:03d}",
                [
                    SeriesSpec("tiny", per_series, modality="CT", series_description="ct"),
                    SeriesSpec("tiny", per_series, modality="MR", series_description="mr"),
                ],
                seed=1000 + number,
                patient_id=f"RJ{number % PATIENTS:03d}",
                patient_name=f"Retrieve^Patient{number % PATIENTS}",
                accession_number=f"RJ{number:05d}",
            )
        )
    return Library(tuple(studies))


def write_config(
    folder: Path,
    sources: Mapping[str, Any],
    *,
    receiver_port: int | None = None,
    retrieve: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """``folder/mercure.yaml`` for a retriever (and receiver) without a bookkeeper."""
    config: dict[str, Any] = {
        "data_dir": str(folder / "data"),
        "logging": {"level": "INFO"},
        "receiver": {
            "listeners": [
                {
                    "name": "default",
                    "host": "127.0.0.1",
                    "port": receiver_port or 11112,
                    "aet": "MERCURE",
                }
            ],
            "fsync": False,
            "min_free_disk_mb": 10,
        },
        "sources": dict(sources),
        "retrieve": {"max_attempts": 20, "retry_delay": 0.2, **(retrieve or {})},
        "supervisor": {"heartbeat_interval": 0.5},
        **(extra or {}),
    }
    path = folder / "mercure.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def dicom_source(orthanc: Orthanc, method: str, **more: Any) -> dict[str, Any]:
    """A dicom source for ``orthanc`` retrieving by ``method`` (c-get or c-move)."""
    return {
        "type": "dicom",
        "host": "127.0.0.1",
        "port": orthanc.dicom_port,
        "aet_target": orthanc.aet,
        "aet_source": "MERCURE",
        "retrieve_method": method,
        "timeout": 10,
        **more,
    }


def dicomweb_source(orthanc: Orthanc, **more: Any) -> dict[str, Any]:
    """A dicomweb source for ``orthanc``'s DICOMweb plugin."""
    return {"type": "dicomweb", "url": orthanc.dicomweb_url, "timeout": 10, **more}


def progress_of(data: DataFolder, job_id: str) -> JobProgress:
    return read_progress(find_job(data, job_id))


def wait_for_state(
    data: DataFolder, job_id: str, states: tuple[str, ...], timeout: float = 120.0
) -> JobProgress:
    """Wait until the job is in one of ``states``; its progress then."""
    wait_until(
        lambda: progress_of(data, job_id).state in states,
        timeout=timeout,
        interval=0.05,
        message=f"job {job_id} in {states}",
    )
    return progress_of(data, job_id)


def journal_lines(data: DataFolder) -> collections.Counter[str]:
    """How many journal lines each SOP instance has in ``incoming/`` (all series)."""
    lines: collections.Counter[str] = collections.Counter()
    incoming = data.stage(Stage.INCOMING)
    for series in incoming.iterdir():
        journal = series / "journal.jsonl"
        if series.name.startswith(".") or not journal.exists():
            continue
        for line in journal.read_text().splitlines():
            record = json.loads(line)
            if "sop" in record:
                lines[record["sop"]] += 1
    return lines


def instance_files(data: DataFolder) -> set[str]:
    """SOP instance UIDs of the ``.dcm`` files in ``incoming/``."""
    incoming = data.stage(Stage.INCOMING)
    return {
        path.stem
        for series in incoming.iterdir()
        if not series.name.startswith(".")
        for path in series.glob("*.dcm")
    }


def marks(data: DataFolder, job_id: str) -> dict[str, RetrieveMark]:
    return dict(marks_of_job(data, job_id))


def events(data: DataFolder, kind_prefix: str = "retrieve.") -> list[Event]:
    """Events still in the outboxes (no bookkeeper runs in these tests)."""
    found = []
    for root, _, files in os.walk(data.outbox_dir):
        for name in sorted(files):
            if name.startswith("."):
                continue
            try:
                found.extend(e for e in read_segment(Path(root) / name))
            except (OSError, ValueError):
                continue
    return [e for e in found if e.kind.startswith(kind_prefix)]
