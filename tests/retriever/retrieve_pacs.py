"""A small PACS for the query tests: Orthanc (with DICOMweb) holding six studies of three
patients, with distinct accession numbers, dates, modalities and descriptions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mercure.testing.peers import Orthanc
from mercure.testing.series import SeriesSpec, generate_study


@dataclass(frozen=True)
class StudyPlan:
    """One study of the test PACS; ``series`` are (modality, description, instances)."""

    seed: int
    patient_id: str
    patient_name: str
    accession: str
    date: str
    description: str
    series: tuple[tuple[str, str, int], ...]

    @property
    def instances(self) -> int:
        return sum(count for _, _, count in self.series)


PLANS = (
    StudyPlan(1, "PAT1", "Alpha^Anna", "ACC-A1", "20250105", "CT HEAD",
              (("CT", "axial", 3), ("CT", "sagittal", 2))),
    StudyPlan(2, "PAT1", "Alpha^Anna", "ACC-A2", "20250210", "MR BRAIN", (("MR", "t1", 2),)),
    StudyPlan(3, "PAT2", "Beta^Bert", "ACC-B1", "20250115", "CT CHEST", (("CT", "lung", 2),)),
    StudyPlan(4, "PAT2", "Beta^Bert", "ACC-B2", "20240620", "US ABDOMEN", (("US", "liver", 1),)),
    StudyPlan(5, "PAT3", "Gamma^Gina", "ACC-C1", "20250120", "MR KNEE",
              (("MR", "pd", 2), ("MR", "t2", 1))),
    StudyPlan(6, "PAT3", "Gamma^Gina", "ACC-C2", "20250301", "CT ABDOMEN", (("CT", "venous", 2),)),
)  # fmt: skip


@dataclass(frozen=True)
class TestPacs:
    """The running Orthanc and the study UID of each accession number."""

    __test__ = False

    orthanc: Orthanc
    study_uids: dict[str, str]

    def accessions(self, study_uids: list[str]) -> set[str]:
        """The accession numbers of the given study UIDs."""
        by_uid = {uid: accession for accession, uid in self.study_uids.items()}
        return {by_uid[uid] for uid in study_uids}


def fill(orthanc: Orthanc, folder: Path) -> TestPacs:
    """Generate the studies of :data:`PLANS` into ``folder`` and upload them to ``orthanc``."""
    study_uids = {}
    for plan in PLANS:
        study = generate_study(
            folder / plan.accession,
            [
                SeriesSpec(
                    "tiny",
                    count,
                    series_description=description,
                    modality=modality,
                    tags={"StudyDate": plan.date, "StudyTime": "101010"},
                )
                for modality, description, count in plan.series
            ],
            seed=plan.seed,
            patient_id=plan.patient_id,
            patient_name=plan.patient_name,
            accession_number=plan.accession,
            study_description=plan.description,
        )
        orthanc.upload(study.paths)
        study_uids[plan.accession] = study.study_uid
    return TestPacs(orthanc, study_uids)
