"""The command line: init, check-config, status, pause/resume, run."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mercure.cli import main
from mercure.core.config import load_config
from mercure.core.config.reference import render_reference
from mercure.core.datafolder import DataFolder, Stage
from mercure.testing.ports import free_port
from mercure.testing.wait import wait_until

ROOT = Path(__file__).resolve().parents[2]


def test_init_writes_a_valid_starter_and_the_data_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`mercure init DIR` gives a configuration that check-config accepts."""
    assert main(["init", str(tmp_path)]) == 0
    config = tmp_path / "mercure.yaml"
    assert "#" in config.read_text()
    assert (tmp_path / "data" / "incoming").is_dir()
    assert main(["check-config", "--config", str(config)]) == 0
    assert ": ok (" in capsys.readouterr().out


def test_init_keeps_an_existing_configuration(tmp_path: Path) -> None:
    """A second init does not overwrite what the administrator wrote."""
    config = tmp_path / "mercure.yaml"
    config.write_text("appliance_name: mine\n")
    assert main(["init", str(tmp_path)]) == 0
    assert config.read_text() == "appliance_name: mine\n"


def test_init_makes_the_bookkeeper_key_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`mercure init` writes a random API key to a 0600 file in the data folder and says where
    (never the key itself); a second init keeps it."""
    assert main(["init", str(tmp_path)]) == 0
    path = tmp_path / "data" / ".secrets" / "bookkeeper.key"
    key = path.read_text().strip()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert main(["init", str(tmp_path)]) == 0
    assert path.read_text().strip() == key
    out = capsys.readouterr().out
    assert str(path) in out
    assert key not in out


def test_bad_config_prints_key_paths_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """check-config lists each error with its key path and fails."""
    config = tmp_path / "mercure.yaml"
    config.write_text("router: {series_complete_trigger: soon}\ncleaner: {colour: red}\n")
    assert main(["check-config", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "router.series_complete_trigger: invalid duration 'soon'" in err
    assert "cleaner.colour: unknown key" in err


def test_config_defaults_to_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --config, $MERCURE_CONFIG names the file."""
    config = tmp_path / "elsewhere.yaml"
    config.write_text("{}\n")
    monkeypatch.setenv("MERCURE_CONFIG", str(config))
    assert main(["check-config"]) == 0
    assert str(config) in capsys.readouterr().out


def test_pause_and_resume_a_queue(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """pause/resume switch a queue and status shows it."""
    main(["init", str(tmp_path)])
    config = str(tmp_path / "mercure.yaml")
    assert main(["pause", "outgoing", "--config", config]) == 0
    assert main(["status", "--config", config]) == 0
    assert "outgoing     0 (paused)" in capsys.readouterr().out
    assert main(["resume", "outgoing", "--config", config]) == 0
    assert not DataFolder(tmp_path / "data").is_paused(Stage.OUTGOING)


def test_configuration_reference_in_docs_is_current() -> None:
    """docs/configuration.md is exactly what `mercure config-reference` prints."""
    assert (ROOT / "docs" / "configuration.md").read_text() == render_reference()


@pytest.mark.slow
def test_run_brings_up_supervisor_and_status_answers(tmp_path: Path) -> None:
    """`mercure run` starts the supervisor (and every installed service); status sees it."""
    main(["init", str(tmp_path)])
    config = tmp_path / "mercure.yaml"
    text = config.read_text()
    for port in ("11112", "8080", "8000"):
        text = text.replace(f"port: {port}", f"port: {free_port()}")
    config.write_text(text + "supervisor: {heartbeat_interval: 0.5}\n")
    load_config(config)
    env = {**os.environ, "MERCURE_CONFIG": str(config)}
    command = [sys.executable, "-m", "mercure", "run"]
    with subprocess.Popen(command, env=env, cwd=tmp_path) as process:
        try:

            def supervisor_up() -> bool:
                out = subprocess.run(
                    [sys.executable, "-m", "mercure", "status"],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                return "supervisor   up" in out

            wait_until(supervisor_up, timeout=30)
            process.send_signal(signal.SIGINT)
            assert process.wait(60) == 0
        finally:
            if process.poll() is None:
                process.kill()


def test_check_config_validates_required_series(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A broken required-series condition of a study rule is reported with its key path."""
    config = tmp_path / "mercure.yaml"
    config.write_text(
        "targets: {pacs: {type: folder, folder: /tmp}}\n"
        "rules:\n"
        "  mr: {rule: 'True', targets: [pacs], action_trigger: study,\n"
        "       study_trigger_condition: received_series, study_trigger_series: \"'T1' and (\"}\n"
    )
    assert main(["check-config", "--config", str(config)]) == 1
    assert "rules.mr.study_trigger_series: required series" in capsys.readouterr().err


def test_check_config_says_where_folder_targets_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """check-config names the absolute folder of each folder target, resolved from the file."""
    config = tmp_path / "site" / "mercure.yaml"
    config.parent.mkdir()
    config.write_text("targets:\n  archive: {type: folder, folder: archive}\n")
    monkeypatch.chdir(tmp_path)
    assert main(["check-config", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert f"targets.archive.folder: {tmp_path / 'site' / 'archive'} (does not exist yet)" in out
    (tmp_path / "site" / "archive").mkdir()
    assert main(["check-config", "--config", str(config)]) == 0
    assert f"targets.archive.folder: {tmp_path / 'site' / 'archive'}\n" in capsys.readouterr().out
