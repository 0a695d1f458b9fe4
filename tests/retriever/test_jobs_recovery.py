"""Retrieve jobs survive a PACS that goes away mid-job and a retriever killed with SIGKILL."""

from __future__ import annotations

import collections
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from jobs_harness import (
    Library,
    dicom_source,
    instance_files,
    journal_lines,
    make_library,
    marks,
    progress_of,
    wait_for_state,
    write_config,
)

from mercure.cli.main import main
from mercure.core.datafolder import DataFolder, Stage
from mercure.testing.installation import MercureProcess
from mercure.testing.peers import Orthanc
from mercure.testing.ports import free_port
from mercure.testing.wait import wait_until

pytestmark = pytest.mark.slow

PER_SERIES = 5


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Library:
    """20 studies of two series of five instances: long enough to interrupt."""
    return make_library(tmp_path_factory.mktemp("library"), per_series=PER_SERIES)


@pytest.fixture
def library_pacs(orthanc_factory: Callable[..., Orthanc], library: Library) -> Orthanc:
    """A dedicated Orthanc (its own storage, so it can be stopped and started again)."""
    server = orthanc_factory(modalities={"mercure": ("MERCURE", "127.0.0.1", free_port())})
    library.load(server)
    return server


def start_job(tmp_path: Path, library_pacs: Orthanc, library: Library) -> tuple[Path, DataFolder]:
    config = write_config(
        tmp_path, {"pacs": dicom_source(library_pacs, "c-get")}, retrieve={"studies_in_parallel": 1}
    )
    csv = tmp_path / "accessions.csv"
    csv.write_text("\n".join(library.accessions) + "\n")
    argv = ["retrieve", "pacs", "--accessions", str(csv), "--name", "job1"]
    assert main([*argv, "--config", str(config)]) == 0
    return config, DataFolder(tmp_path / "data")


def studies_done(data: DataFolder) -> int:
    return progress_of(data, "job1").counts()[0]


def test_pacs_down_mid_job_then_back(
    tmp_path: Path, library_pacs: Orthanc, library: Library
) -> None:
    """Orthanc stopped mid-job: tries fail and are retried; once it is back the job finishes
    with every instance stored once, and only the series the outage cut was fetched again."""
    config, data = start_job(tmp_path, library_pacs, library)
    with MercureProcess("retriever", config):
        wait_until(lambda: studies_done(data) >= 2, timeout=60, interval=0.02)
        library_pacs.stop()
        assert studies_done(data) < 20, "the job ended before the PACS went down"
        wait_until(
            lambda: any(
                s.reason and "cannot connect" in s.reason for s in progress_of(data, "job1").studies
            ),
            timeout=60,
            interval=0.05,
            message="a try failing on the stopped PACS",
        )
        library_pacs.start()
        progress = wait_for_state(data, "job1", ("done", "failed"))
    assert progress.state == "done", progress
    assert any(s.attempts > 1 for s in progress.studies)
    assert instance_files(data) == library.sop_instance_uids
    # A series cut short by the outage is fetched again as a whole (its instances already
    # there come again and are journaled twice, as a sender's resend is); nothing else is.
    twice = {sop for sop, count in journal_lines(data).items() if count > 1}
    assert len(series_holding(data, twice)) <= 1, twice
    assert max(journal_lines(data).values()) <= 2
    assert all(mark.complete for mark in marks(data, "job1").values())


def series_holding(data: DataFolder, sops: set[str]) -> set[str]:
    """The series folders in incoming/ whose journal names any of ``sops``."""
    found = set()
    for journal in data.stage(Stage.INCOMING).glob("*/journal.jsonl"):
        if any(json.loads(line).get("sop") in sops for line in journal.read_text().splitlines()):
            found.add(journal.parent.name)
    return found


def test_killed_retriever_resumes_without_fetching_a_study_twice(
    tmp_path: Path, library_pacs: Orthanc, library: Library
) -> None:
    """SIGKILL mid-job, then a new retriever: the job completes, and no study is fetched
    twice in full (at most part of one series comes twice)."""
    config, data = start_job(tmp_path, library_pacs, library)
    first = MercureProcess("retriever", config, log_name="retriever-1").start()
    try:
        wait_until(lambda: studies_done(data) >= 3, timeout=60, interval=0.01)
    finally:
        first.stop(graceful=False)
    assert studies_done(data) < 20, "the job ended before the kill"
    with MercureProcess("retriever", config, log_name="retriever-2"):
        progress = wait_for_state(data, "job1", ("done", "failed"))
    assert progress.state == "done", progress
    assert instance_files(data) == library.sop_instance_uids

    lines = journal_lines(data)
    study_of = {uid: s.study_uid for s in library.studies for uid in s.sop_instance_uids}
    per_study: collections.Counter[str] = collections.Counter()
    for sop, count in lines.items():
        per_study[study_of[sop]] += count
    size = 2 * PER_SERIES
    assert all(count < 2 * size for count in per_study.values()), per_study
    assert sum(lines.values()) - len(lines) < PER_SERIES
    # The killed process's half-written file was cleared by the next one.
    staging = data.stage(Stage.INCOMING) / ".receiving"
    assert [p for p in staging.rglob("*.part")] == []


def test_two_retrievers_never_run_one_job_twice(
    tmp_path: Path, library_pacs: Orthanc, library: Library
) -> None:
    """Two retriever processes on one data folder and two jobs: each job is run by one of them
    (the job folder's lock), so no instance comes twice."""
    config = write_config(tmp_path, {"pacs": dicom_source(library_pacs, "c-get")})
    data = DataFolder(tmp_path / "data")
    halves = {"first": library.accessions[:10], "second": library.accessions[10:]}
    for job_id, accessions in halves.items():
        csv = tmp_path / f"{job_id}.csv"
        csv.write_text("\n".join(accessions) + "\n")
        argv = ["retrieve", "pacs", "--accessions", str(csv), "--name", job_id]
        assert main([*argv, "--config", str(config)]) == 0
    with (
        MercureProcess("retriever", config, log_name="retriever-a"),
        MercureProcess("retriever", config, log_name="retriever-b"),
    ):
        for job_id in halves:
            assert wait_for_state(data, job_id, ("done", "failed")).state == "done"
    assert instance_files(data) == library.sop_instance_uids
    assert max(journal_lines(data).values()) == 1
