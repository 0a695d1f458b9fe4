"""`mercure retrieve`: creating jobs from CSV files, status, pause/resume/cancel (no service)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import yaml

from mercure.cli.main import main
from mercure.core.datafolder import DataFolder
from mercure.retriever.jobs import (
    JobProgress,
    find_job,
    read_control,
    read_progress,
    read_request,
    write_progress,
)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A configuration with one DICOMweb source and one rule (nothing needs to answer)."""
    path = tmp_path / "mercure.yaml"
    document = {
        "data_dir": str(tmp_path / "data"),
        "sources": {"pacs": {"type": "dicomweb", "url": "http://127.0.0.1:9/dicom-web"}},
        "targets": {"out": {"type": "folder", "folder": str(tmp_path / "out")}},
        "rules": {"lab42": {"rule": "True", "action": "route", "targets": ["out"]}},
    }
    path.write_text(yaml.safe_dump(document))
    return path


def retrieve(config: Path, *args: str) -> int:
    """``mercure retrieve ARGS --config CONFIG``."""
    return main(["retrieve", *args, "--config", str(config)])


def write_csv(tmp_path: Path, text: str, name: str = "list.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def data_of(config: Path) -> DataFolder:
    return DataFolder(yaml.safe_load(config.read_text())["data_dir"])


def test_create_job_from_csv_with_header(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A CSV with an AccessionNumber column makes a job with those accessions, in order, once."""
    csv = write_csv(tmp_path, "PatientID;AccessionNumber\nP1;A1\nP2;A2\n\nP1;A1\n")
    code = retrieve(
        config,
        "pacs",
        "--accessions",
        str(csv),
        "--name",
        "lab42",
        "--series-filter",
        "tags.Modality == 'CT'",
        "--rule",
        "lab42",
        "--offpeak",
    )
    assert code == 0
    assert capsys.readouterr().out.strip() == "lab42"
    folder = find_job(data_of(config), "lab42")
    request = read_request(folder)
    assert request.accessions == ["A1", "A2"]
    assert (request.source, request.rule, request.offpeak) == ("pacs", "lab42", True)
    assert request.series_filter == "tags.Modality == 'CT'"
    progress = read_progress(folder)
    assert progress.state == "queued"
    assert [s.accession for s in progress.studies] == ["A1", "A2"]
    # Accession numbers are patient data: only the owner may read the job.
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "job.json").stat().st_mode) == 0o600


def test_single_column_csv_and_generated_id(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A one-column file without a header is a list of accessions; the id is generated."""
    csv = write_csv(tmp_path, "X1\nX2\nX3\n")
    assert retrieve(config, "pacs", "--accessions", str(csv)) == 0
    job_id = capsys.readouterr().out.strip()
    assert job_id.startswith("job-")
    assert read_request(find_job(data_of(config), job_id)).accessions == ["X1", "X2", "X3"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("AccessionNumber\nA1\n\nA*\n", "line 4: the accession number holds a wildcard"),
        ("accession,name\nA1,x\n,y\n", "line 3: the accession number is empty"),
        ("a,b\n1,2\n", "line 1: no column named AccessionNumber or accession"),
        ("A12345678901234567\n", "line 1: the accession number is longer than 16"),
        ("\n\n", "holds no accession numbers"),
    ],
)
def test_bad_csv_is_refused_naming_the_line(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    """A bad row is refused with the file and line; no job is made."""
    csv = write_csv(tmp_path, text)
    assert retrieve(config, "pacs", "--accessions", str(csv), "--name", "bad") == 1
    error = capsys.readouterr().err
    assert str(csv) in error and expected in error
    assert not (data_of(config).retrieve_dir / "jobs" / "bad").exists()


def test_refusals_name_what_is_wrong(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Unknown source, unknown rule, a bad series filter and an existing id are refused."""
    csv = write_csv(tmp_path, "A1\n")
    assert retrieve(config, "nowhere", "--accessions", str(csv)) == 1
    assert "no source 'nowhere'" in capsys.readouterr().err
    assert retrieve(config, "pacs", "--accessions", str(csv), "--rule", "nope") == 1
    assert "no rule 'nope'" in capsys.readouterr().err
    assert retrieve(config, "pacs", "--accessions", str(csv), "--series-filter", "tags.(") == 1
    assert "--series-filter" in capsys.readouterr().err
    assert retrieve(config, "pacs", "--accessions", str(csv), "--name", "../x") == 1
    assert "not usable" in capsys.readouterr().err
    assert retrieve(config, "pacs", "--accessions", str(csv), "--name", "j1") == 0
    capsys.readouterr()
    assert retrieve(config, "pacs", "--accessions", str(csv), "--name", "j1") == 1
    assert "exists already" in capsys.readouterr().err


def test_status_pause_resume_cancel(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Status lists the job; pause/resume/cancel write the control file; an ended job refuses."""
    csv = write_csv(tmp_path, "A1\nA2\n")
    assert retrieve(config, "pacs", "--accessions", str(csv), "--name", "j1") == 0
    capsys.readouterr()
    folder = find_job(data_of(config), "j1")

    assert retrieve(config, "status") == 0
    table = capsys.readouterr().out
    assert "j1" in table and "queued" in table and "A1" not in table

    assert retrieve(config, "pause", "j1") == 0
    assert read_control(folder).action == "pause"
    assert retrieve(config, "resume", "j1") == 0
    assert read_control(folder).action == "run"
    assert retrieve(config, "cancel", "j1") == 0
    assert read_control(folder).action == "cancel"
    capsys.readouterr()

    assert retrieve(config, "status", "j1", "--json") == 0
    [summary] = json.loads(capsys.readouterr().out)
    assert summary["job"] == "j1" and summary["requested"] == "cancel"
    assert summary["studies_total"] == 2 and summary["studies_remaining"] == 2
    assert "A1" not in json.dumps(summary)

    studies = read_progress(folder).studies
    studies[0].state, studies[1].state = "done", "failed"
    write_progress(folder, JobProgress(state="cancelled", studies=studies))
    assert retrieve(config, "status", "j1", "--watch") == 0
    bar = capsys.readouterr().out
    assert "j1 [" in bar and "2/2 studies (1 failed)" in bar and "cancelled" in bar
    assert retrieve(config, "resume", "j1") == 1
    assert "has ended (cancelled)" in capsys.readouterr().err
    assert retrieve(config, "pause", "nojob") == 1
    assert "no retrieve job 'nojob'" in capsys.readouterr().err
