"""Retrieve jobs against a real PACS (Orthanc): C-GET, C-MOVE and WADO-RS of 20 studies, run
by the retriever service as a real process."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from jobs_harness import (
    Library,
    dicom_source,
    dicomweb_source,
    events,
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


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Library:
    """20 studies of 7 patients, a CT and an MR series of two instances each."""
    return make_library(tmp_path_factory.mktemp("library"))


@pytest.fixture
def library_pacs(orthanc: Orthanc, library: Library) -> Orthanc:
    """The session's Orthanc holding the library; it knows our AE title (C-FIND, C-GET)."""
    library.load(orthanc)
    orthanc.set_modality("mercure", ("MERCURE", "127.0.0.1", free_port()))
    return orthanc


def create_job(config: Path, tmp_path: Path, accessions: list[str], *args: str) -> str:
    """``mercure retrieve pacs --accessions FILE --name job1 ARGS``; the job id."""
    csv = tmp_path / "accessions.csv"
    csv.write_text("AccessionNumber\n" + "\n".join(accessions) + "\n")
    argv = ["retrieve", "pacs", "--accessions", str(csv), "--name", "job1"]
    code = main([*argv, *args, "--config", str(config)])
    assert code == 0
    return "job1"


@contextlib.contextmanager
def retriever(config: Path) -> Iterator[MercureProcess]:
    """``mercure retriever`` as a real process."""
    with MercureProcess("retriever", config) as process:
        yield process


def check_every_instance_once(data: DataFolder, library: Library, job_id: str) -> None:
    """Every instance of the library is in incoming/ once, and every mark says complete."""
    assert instance_files(data) == library.sop_instance_uids
    lines = journal_lines(data)
    assert set(lines) == library.sop_instance_uids
    assert max(lines.values()) == 1
    job_marks = marks(data, job_id)
    series = {s.series_uid for study in library.studies for s in study.series}
    assert set(job_marks) == series
    assert all(mark.complete and mark.expected == 2 for mark in job_marks.values())


def test_cget_retrieves_20_studies(tmp_path: Path, library_pacs: Orthanc, library: Library) -> None:
    """C-GET of 20 studies: every instance lands once through the receiver's write path, the
    marks are complete, the series tags name the PACS as sender, events tell the progress."""
    # Four studies at once per job, two associations at most: the source's limit holds.
    config = write_config(
        tmp_path,
        {"pacs": dicom_source(library_pacs, "c-get", max_associations=2)},
        retrieve={"studies_in_parallel": 4},
    )
    data = DataFolder(tmp_path / "data")
    job_id = create_job(config, tmp_path, library.accessions)
    with retriever(config):
        progress = wait_for_state(data, job_id, ("done", "failed"))
    assert progress.state == "done", progress
    assert progress.counts() == (20, 0, 0)
    assert progress.instances == 80
    check_every_instance_once(data, library, job_id)
    tags = data.stage(Stage.INCOMING) / library.studies[0].series[0].series_uid / "tags.json"
    assert '"SenderAET": "ORTHANC"' in tags.read_text()
    assert '"ReceiverAET": "MERCURE"' in tags.read_text()

    seen = events(data)
    studies = [e for e in seen if e.kind == "retrieve.study"]
    assert len(studies) == 20 and {e.data["state"] for e in studies} == {"done"}
    assert {e.study_uid for e in studies} == set(library.by_study())
    jobs = [e for e in seen if e.kind == "retrieve.job"]
    assert [e.data["state"] for e in jobs][:2] == ["queued", "running"]
    assert jobs[-1].data["state"] == "done" and jobs[-1].data["studies_done"] == 20
    assert set(jobs[-1].data) >= {"job", "source", "studies_remaining", "instances", "rate"}
    text = "".join(e.model_dump_json() for e in seen)
    assert not any(accession in text for accession in library.accessions)
    assert "Retrieve^Patient" not in text


def test_cmove_retrieves_20_studies(
    tmp_path: Path, library_pacs: Orthanc, library: Library
) -> None:
    """C-MOVE of 20 studies to our receiver: every instance in incoming/ once, marks complete."""
    port = free_port()
    library_pacs.set_modality("mercure", ("MERCURE", "127.0.0.1", port))
    config = write_config(
        tmp_path, {"pacs": dicom_source(library_pacs, "c-move")}, receiver_port=port
    )
    data = DataFolder(tmp_path / "data")
    job_id = create_job(config, tmp_path, library.accessions)
    with MercureProcess("receiver", config, listen_port=port), retriever(config):
        progress = wait_for_state(data, job_id, ("done", "failed"))
    assert progress.state == "done", progress
    check_every_instance_once(data, library, job_id)


def test_wado_rs_retrieves_20_studies(
    tmp_path: Path, library_pacs: Orthanc, library: Library
) -> None:
    """WADO-RS through Orthanc's DICOMweb plugin: every instance in incoming/ once."""
    config = write_config(
        tmp_path, {"pacs": dicomweb_source(library_pacs)}, retrieve={"studies_in_parallel": 3}
    )
    data = DataFolder(tmp_path / "data")
    job_id = create_job(config, tmp_path, library.accessions)
    with retriever(config):
        progress = wait_for_state(data, job_id, ("done", "failed"))
    assert progress.state == "done", progress
    check_every_instance_once(data, library, job_id)
    assert all(e.data["state"] != "failed" for e in events(data, "retrieve.study"))


def test_series_filter_and_unknown_accession(
    tmp_path: Path, library_pacs: Orthanc, library: Library
) -> None:
    """Only the series the filter selects are fetched; an unknown accession fails its study
    ("not found at pacs") and the job ends failed with the others done."""
    config = write_config(tmp_path, {"pacs": dicomweb_source(library_pacs)})
    data = DataFolder(tmp_path / "data")
    chosen = library.studies[:3]
    job_id = create_job(
        config,
        tmp_path,
        [s.accession_number for s in chosen] + ["NOSUCH"],
        "--series-filter",
        "tags.Modality == 'CT'",
    )
    with retriever(config):
        progress = wait_for_state(data, job_id, ("done", "failed"))
    assert progress.state == "failed"
    assert progress.counts() == (3, 1, 0)
    [missing] = [s for s in progress.studies if s.state == "failed"]
    assert missing.reason == "not found at pacs"
    ct = {uid for study in chosen for uid in study.series[0].sop_instance_uids}
    assert instance_files(data) == ct
    assert set(marks(data, job_id)) == {study.series[0].series_uid for study in chosen}


def test_pause_and_resume(tmp_path: Path, library_pacs: Orthanc, library: Library) -> None:
    """A paused job fetches nothing until it is resumed, then finishes."""
    config = write_config(tmp_path, {"pacs": dicom_source(library_pacs, "c-get")})
    data = DataFolder(tmp_path / "data")
    job_id = create_job(config, tmp_path, library.accessions[:4])
    assert main(["retrieve", "pause", job_id, "--config", str(config)]) == 0
    with retriever(config):
        progress = wait_for_state(data, job_id, ("paused",))
        assert progress.counts() == (0, 0, 4)
        assert all(s.attempts == 0 for s in progress.studies)
        assert main(["retrieve", "resume", job_id, "--config", str(config)]) == 0
        progress = wait_for_state(data, job_id, ("done", "failed"))
    assert progress.state == "done"
    assert len(instance_files(data)) == 16


def test_offpeak_job_waits_outside_the_window(
    tmp_path: Path, library_pacs: Orthanc, library: Library
) -> None:
    """An --offpeak job outside the window waits (fetching nothing); cancel ends it."""
    from datetime import datetime, timedelta

    now = datetime.now()
    window = {
        "start": (now + timedelta(hours=2)).strftime("%H:%M"),
        "end": (now + timedelta(hours=3)).strftime("%H:%M"),
    }
    config = write_config(
        tmp_path, {"pacs": dicom_source(library_pacs, "c-get")}, extra={"offpeak": window}
    )
    data = DataFolder(tmp_path / "data")
    job_id = create_job(config, tmp_path, library.accessions[:2], "--offpeak")
    with retriever(config):
        progress = wait_for_state(data, job_id, ("waiting-offpeak",))
        assert "off-peak" in (progress.reason or "")
        assert all(s.attempts == 0 for s in progress.studies)
        assert main(["retrieve", "cancel", job_id, "--config", str(config)]) == 0
        progress = wait_for_state(data, job_id, ("cancelled",))
    assert instance_files(data) == set()
    assert marks(data, job_id) == {}
    assert progress_of(data, job_id).ended is not None


def test_end_to_end_retrieved_series_routed_by_job_rule(
    tmp_path: Path, library_pacs: Orthanc, library: Library
) -> None:
    """Receiver + router + dispatcher + retriever: C-MOVE'd series of job lab42 are selected by
    `tags.RetrieveJob == 'lab42'` and every instance arrives in the folder target. The quiet
    time is an hour: the retrieve's end, through the marks, completes the series."""
    port = free_port()
    library_pacs.set_modality("mercure", ("MERCURE", "127.0.0.1", port))
    out = tmp_path / "out"
    out.mkdir()
    chosen = library.studies[:5]
    config = write_config(
        tmp_path,
        {"pacs": dicom_source(library_pacs, "c-move")},
        receiver_port=port,
        extra={
            "router": {"series_complete_trigger": 3600, "rescan_interval": 5},
            "targets": {"lab": {"type": "folder", "folder": str(out)}},
            "rules": {
                "lab42": {
                    "rule": "tags.RetrieveJob == 'lab42' and tags.RetrieveSource == 'pacs'",
                    "action": "route",
                    "targets": ["lab"],
                }
            },
        },
    )
    data = DataFolder(tmp_path / "data")
    csv = tmp_path / "accessions.csv"
    csv.write_text("\n".join(s.accession_number for s in chosen) + "\n")
    argv = ["retrieve", "pacs", "--accessions", str(csv), "--name", "lab42"]
    assert main([*argv, "--config", str(config)]) == 0
    expected = {uid for study in chosen for uid in study.sop_instance_uids}

    def delivered() -> set[str]:
        return {path.stem for path in out.rglob("*.dcm") if not path.name.startswith(".")}

    with contextlib.ExitStack() as stack:
        stack.enter_context(MercureProcess("receiver", config, listen_port=port))
        for service in ("router", "dispatcher", "retriever"):
            stack.enter_context(MercureProcess(service, config))
        progress = wait_for_state(data, "lab42", ("done", "failed"))
        assert progress.state == "done", progress
        wait_until(lambda: delivered() == expected, timeout=60, message="all instances delivered")
        wait_until(lambda: not marks(data, "lab42"), timeout=30, message="marks taken")
    assert len(list(out.glob("*/.complete"))) == 10
