"""`mercure query`: table, JSON and CSV output parsed back, and its errors, against Orthanc."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import yaml
from retrieve_pacs import TestPacs

from mercure.cli import main
from mercure.testing.ports import free_port

pytestmark = pytest.mark.peers


@pytest.fixture
def config(tmp_path: Path, pacs: TestPacs) -> Path:
    """A configuration with the test PACS as `pacs` (C-FIND) and `web` (QIDO-RS)."""
    document = {
        "data_dir": str(tmp_path / "data"),
        "sources": {
            "pacs": {
                "type": "dicom",
                "host": "127.0.0.1",
                "port": pacs.orthanc.dicom_port,
                "aet_target": pacs.orthanc.aet,
                "timeout": 20,
            },
            "web": {"type": "dicomweb", "url": pacs.orthanc.dicomweb_url, "timeout": 20},
            "down": {
                "type": "dicom",
                "host": "127.0.0.1",
                "port": free_port(),
                "aet_target": "DOWN",
                "timeout": 5,
            },
        },
    }
    path = tmp_path / "mercure.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def query(config: Path, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["query", "--config", str(config), *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("source", ["pacs", "web"])
def test_json_output_lists_the_matching_studies(
    config: Path, pacs: TestPacs, capsys: pytest.CaptureFixture[str], source: str
) -> None:
    """--format json with a date range and a modality gives the matching studies and counts."""
    code, out, _ = query(
        config,
        capsys,
        source,
        "--date",
        "20250101-20250131",
        "--modality",
        "CT",
        "--format",
        "json",
    )
    assert code == 0
    documents = json.loads(out)
    assert {d["accession"] for d in documents} == {"ACC-A1", "ACC-B1"}
    head = next(d for d in documents if d["accession"] == "ACC-A1")
    assert head["patient_name"] == "Alpha^Anna"
    assert (head["series_count"], head["instance_count"]) == (2, 5)
    assert head["modalities"] == ["CT"]


def test_csv_output_with_series_has_a_row_per_series(
    config: Path, pacs: TestPacs, capsys: pytest.CaptureFixture[str]
) -> None:
    """--series --format csv repeats the study's columns on each of its series' rows."""
    code, out, _ = query(
        config, capsys, "pacs", "--patient-id", "PAT3", "--series", "--format", "csv"
    )
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert {(r["accession"], r["series_description"], r["series_instances"]) for r in rows} == {
        ("ACC-C1", "pd", "2"),
        ("ACC-C1", "t2", "1"),
        ("ACC-C2", "venous", "2"),
    }
    assert {r["study_uid"] for r in rows} == {pacs.study_uids["ACC-C1"], pacs.study_uids["ACC-C2"]}


def test_table_output_shows_each_study_on_a_line(
    config: Path, pacs: TestPacs, capsys: pytest.CaptureFixture[str]
) -> None:
    """The table has a header, a line per study with its identifiers, and a count."""
    code, out, _ = query(config, capsys, "web", "--description", "MR*", "--series")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["Date", "Patient", "ID", "Patient"]
    brain = next(line for line in lines if "ACC-A2" in line)
    assert brain.split()[:4] == ["20250210", "PAT1", "Alpha^Anna", "ACC-A2"]
    assert any(line.strip().startswith("#") and " t1 " in f"{line} " for line in lines)
    assert lines[-1] == "2 studies"


def test_table_fits_a_narrow_terminal(
    config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Long columns are cut so that no line is wider than the terminal."""
    monkeypatch.setenv("COLUMNS", "100")
    code, out, _ = query(config, capsys, "pacs", "--series")
    assert code == 0
    assert max(len(line) for line in out.splitlines()) <= 100
    assert "…" in out  # the UIDs did not fit
    assert out.splitlines()[-1] == "6 studies"


def test_limit_is_reported(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--limit 2 prints two studies and says that it stopped."""
    code, out, err = query(config, capsys, "pacs", "--limit", "2", "--format", "json")
    assert code == 0
    assert len(json.loads(out)) == 2
    assert "stopped at --limit 2" in err


def test_unknown_source_lists_the_configured_ones(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unknown source name is a usage error (2) naming the configured sources."""
    code, out, err = query(config, capsys, "nowhere")
    assert code == 2
    assert "'nowhere'" in err and "down, pacs, web" in err
    assert out == ""


def test_unreachable_source_fails_with_its_name(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A source that does not answer: exit 1 and a message naming it."""
    code, out, err = query(config, capsys, "down", "--accession", "ACC-A1")
    assert code == 1
    assert "source 'down'" in err and "cannot connect" in err
    assert out == ""


def test_bad_date_range_is_a_usage_error(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--date with a text that is no range exits 2 and says what is wrong."""
    with pytest.raises(SystemExit) as raised:
        main(["query", "--config", str(config), "pacs", "--date", "2025-13-01"])
    assert raised.value.code == 2
    assert "expected YYYYMMDD" in capsys.readouterr().err


@pytest.mark.parametrize(("source", "query"), [("pacs", "C-FIND"), ("web", "QIDO-RS")])
def test_test_source_walks_its_steps(
    config: Path, capsys: pytest.CaptureFixture[str], source: str, query: str
) -> None:
    """test-source connects, echoes (DICOM) and queries for one study."""
    assert main(["test-source", "--config", str(config), source, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True
    names = [step["name"] for step in report["steps"]]
    assert names == (["connect", "C-ECHO", query] if source == "pacs" else ["connect", query])
    assert report["steps"][-1]["detail"] == "answered with 1 study (limit 1)"


def test_test_source_of_a_definition_on_standard_input(
    config: Path,
    pacs: TestPacs,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A definition on standard input with an AE title Orthanc does not know: C-ECHO works
    (Orthanc answers anyone), the C-FIND step fails and says why."""
    definition = {
        "type": "dicom",
        "host": "127.0.0.1",
        "port": pacs.orthanc.dicom_port,
        "aet_target": pacs.orthanc.aet,
        "aet_source": "STRANGER",
    }
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(definition)))
    assert main(["test-source", "--config", str(config), "new", "--definition", "-"]) == 1
    out, err = capsys.readouterr()
    assert "ok       C-ECHO" in out
    assert "FAILED   C-FIND" in out and "STRANGER" in out
    assert "new: FAILED" in err
