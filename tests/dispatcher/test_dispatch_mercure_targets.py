"""The target types and options mercure has: dummy, xnat (against a recording stand-in),
rsync (against a real sshd), file_filter, DICOMweb URL prefixes, pass_receiver_aet."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import pydicom
import pytest
from dispatch_site import Site
from test_dispatch_sftp_s3 import Sshd
from test_dispatch_sftp_s3 import sshd as sshd  # the fixture, shared

from mercure.core.config import validate_document
from mercure.core.datafolder import Stage
from mercure.core.dicomwebclient import studies_path
from mercure.core.errors import ConfigError
from mercure.dispatcher.targets import build_target, run_test
from mercure.dispatcher.targets.rsync import RsyncPlugin
from mercure.testing.peers import Orthanc
from mercure.testing.series import generate_series
from mercure.testing.wait import wait_until
from mercure.testing.xnat_standin import XnatStandIn


# --- dummy ------------------------------------------------------------------------------------
def test_dummy_target_completes_the_task_and_keeps_nothing(site: Site, tmp_path: Path) -> None:
    """A task routed to a dummy target ends in success/ with every instance counted."""
    series = generate_series(tmp_path / "series", "tiny", 3)
    site.configure({"nowhere": {"type": "dummy"}})
    task_id = site.add_task(series.paths, ["nowhere"])
    site.run_until_finished(task_id)
    assert site.where(task_id) == Stage.SUCCESS
    status = site.task_json(task_id)["dispatch"]["status"]["nowhere"]
    assert status["state"] == "complete"
    assert status["instances_sent"] == 3 and status["bytes_sent"] == 0


# --- file_filter ------------------------------------------------------------------------------
def test_folder_file_filter_leaves_matching_files_out(site: Site, tmp_path: Path) -> None:
    """Files matching one of the comma-separated patterns are not delivered; the task is
    complete and the marker counts what was delivered."""
    series = generate_series(tmp_path / "series", "tiny", 4)
    names = sorted(p.name for p in series.paths)
    pattern = f"{names[0]}, {names[1][:-4]}*"
    site.configure(
        {"out": {"type": "folder", "folder": str(tmp_path / "out"), "file_filter": pattern}}
    )
    task_id = site.add_task(series.paths, ["out"])
    site.run_until_finished(task_id)
    assert site.where(task_id) == Stage.SUCCESS
    delivered = tmp_path / "out" / task_id
    assert sorted(p.name for p in delivered.glob("*.dcm")) == names[2:]
    assert (delivered / ".complete").read_text() == "2\n"


def test_file_filter_with_an_empty_pattern_is_a_config_error(tmp_path: Path) -> None:
    """`*.json,,*.txt` says where and what is wrong."""
    target = {"type": "folder", "folder": str(tmp_path), "file_filter": "*.json,,*.txt"}
    with pytest.raises(ConfigError, match=r"targets\.out\.file_filter: an empty pattern"):
        validate_document({"targets": {"out": target}})


# --- xnat -------------------------------------------------------------------------------------
def xnat_target(standin: XnatStandIn, **extra: object) -> dict[str, object]:
    """An xnat target for the stand-in."""
    return {
        "type": "xnat",
        "host": standin.url,
        "project_id": "STUDY1",
        "user": standin.user,
        "password": standin.password,
        **extra,
    }


def test_xnat_upload_is_one_zip_import_in_a_session(site: Site, tmp_path: Path) -> None:
    """Log in, import a zip of every instance into the project with mercure's subject and
    session labels, log out (against the XNAT stand-in, which records the calls)."""
    series = generate_series(tmp_path / "series", "tiny", 3, patient_id="PAT 01")
    study_date = pydicom.dcmread(series.paths[0], stop_before_pixels=True).StudyDate
    with XnatStandIn() as standin:
        site.configure({"xnat": xnat_target(standin)})
        task_id = site.add_task(series.paths, ["xnat"])
        site.run_until_finished(task_id)
    assert site.where(task_id) == Stage.SUCCESS
    assert [(c.method, c.path) for c in standin.calls] == [
        ("POST", "/data/JSESSION"),
        ("POST", "/data/services/import"),
        ("DELETE", "/data/JSESSION"),
    ]
    login, upload, logout = standin.calls
    assert login.authorization is not None and upload.authorization is None  # the cookie only
    assert upload.session is not None and upload.session == logout.session
    day = f"{study_date[:4]}-{study_date[4:6]}-{study_date[6:]}"
    assert upload.query == {
        "PROJECT_ID": "STUDY1",
        "SUBJECT_ID": "PAT_01",
        "EXPT_LABEL": f"PAT_01_{day}",
        "rename": "true",
        "overwrite": "append",
        "inbody": "true",
    }
    assert upload.content_type == "application/zip"
    assert sorted(upload.zip_names()) == sorted(p.name for p in series.paths)
    assert upload.zip_member(series.paths[0].name) == series.paths[0].read_bytes()


def test_xnat_refused_import_is_retried_then_an_error_without_the_patient_id(
    site: Site, tmp_path: Path
) -> None:
    """XNAT answering 500: retried, then error/ naming the project and status, not the PID."""
    series = generate_series(tmp_path / "series", "tiny", 1, patient_id="SECRETPID")
    with XnatStandIn(import_status=500) as standin:
        site.configure({"xnat": xnat_target(standin)}, retry_attempts=2)
        task_id = site.add_task(series.paths, ["xnat"])
        site.run_until_finished(task_id)
    assert site.where(task_id) == Stage.ERROR
    reason = site.task_json(task_id)["info"]["reason"]
    assert reason.startswith("xnat: XNAT import into project STUDY1 answered HTTP 500")
    assert "SECRETPID" not in reason
    assert len(standin.imports()) == 2


def test_xnat_test_logs_in_and_finds_the_project(tmp_path: Path) -> None:
    """Test: login and project steps; a wrong password fails at login, an unknown project at
    project."""
    with XnatStandIn() as standin:
        loaded = validate_document(
            {
                "targets": {
                    "good": xnat_target(standin),
                    "badpw": xnat_target(standin, password="wrong"),
                    "noproj": xnat_target(standin, project_id="NOPE"),
                }
            }
        )
        targets = loaded.config.targets
        good = asyncio.run(run_test("good", targets["good"]))
        badpw = asyncio.run(run_test("badpw", targets["badpw"]))
        noproj = asyncio.run(run_test("noproj", targets["noproj"]))
    assert good.ok and [(s.name, s.state) for s in good.steps] == [
        ("login", "ok"),
        ("project", "ok"),
    ]
    assert not badpw.ok and badpw.steps[-1].name == "login"
    assert "refused the login" in badpw.summary and "wrong" not in badpw.summary
    assert not noproj.ok and noproj.steps[-1].name == "project"
    assert "no such project" in noproj.summary


# --- rsync ------------------------------------------------------------------------------------
def rsync_target(server: Sshd, folder: Path, **extra: object) -> dict[str, object]:
    """An rsync target logging in with the sshd's client key, host key verified."""
    return {
        "type": "rsync",
        "host": "127.0.0.1",
        "port": server.port,
        "user": "root",
        "key_file": str(server.client_key),
        "known_hosts": str(server.known_hosts),
        "folder": str(folder),
        **extra,
    }


@pytest.mark.peers
def test_rsync_copies_the_task_then_marks_it_and_runs_the_script(
    site: Site, sshd: Sshd, tmp_path: Path
) -> None:
    """Every instance in <folder>/<task_id>/, .complete, then mercure_complete.sh ran with
    the task folder and "rsync"; file_filter leaves one file out."""
    series = generate_series(tmp_path / "series", "tiny", 3)
    remote = tmp_path / "remote"
    remote.mkdir()
    script = remote / "mercure_complete.sh"
    script.write_text(f'#!/bin/sh\necho "$1 $2" >> {remote / "ran.txt"}\n')
    script.chmod(stat.S_IRWXU)
    left = sorted(p.name for p in series.paths)[0]
    site.configure({"rs": rsync_target(sshd, remote, run_on_complete=True, file_filter=left)})
    task_id = site.add_task(series.paths, ["rs"])
    site.run_until_finished(task_id)
    assert site.where(task_id) == Stage.SUCCESS, site.task_json(task_id)["info"]["reason"]
    delivered = remote / task_id
    assert sorted(p.name for p in delivered.iterdir()) == sorted(
        [".complete", *(p.name for p in series.paths if p.name != left)]
    )
    for path in series.paths:
        if path.name != left:
            assert (delivered / path.name).read_bytes() == path.read_bytes()
            assert not stat.S_IMODE((delivered / path.name).stat().st_mode) & 0o117
    assert (remote / "ran.txt").read_text() == f"{delivered} rsync\n"


@pytest.mark.peers
def test_rsync_missing_script_and_wrong_password_are_clear_errors(
    site: Site, sshd: Sshd, tmp_path: Path
) -> None:
    """run_on_complete without the script fails naming it; a wrong password is refused by
    the server (and offered through the askpass, never on a command line)."""
    series = generate_series(tmp_path / "series", "tiny", 1)
    remote = tmp_path / "remote"
    remote.mkdir()
    wrong = rsync_target(sshd, remote, password="certainly-wrong")
    del wrong["key_file"]
    site.configure(
        {"noscript": rsync_target(sshd, remote, run_on_complete=True), "pw": wrong},
        retry_attempts=1,
    )
    first = site.add_task(series.paths, ["noscript"])
    second = site.add_task(series.paths, ["pw"])
    site.run_until_finished(first, second)
    reason = site.task_json(first)["info"]["reason"]
    assert reason == (
        f"noscript: run_on_complete: {remote}/mercure_complete.sh on root@127.0.0.1:"
        f"{sshd.port} is missing or not executable"
    )
    reason = site.task_json(second)["info"]["reason"]
    assert reason.startswith(f"pw: rsync to root@127.0.0.1:{sshd.port} failed (exit ")
    assert "Permission denied" in reason
    wait_until(lambda: "Failed password for root" in sshd.log_path.read_text(), timeout=10)
    plugin = build_target("pw", validate_document({"targets": {"pw": wrong}}).config.targets["pw"])
    assert isinstance(plugin, RsyncPlugin)
    assert not any("certainly-wrong" in part for part in plugin.rsync_command("t"))


@pytest.mark.peers
def test_rsync_test_checks_login_rsync_folder_and_script(sshd: Sshd, tmp_path: Path) -> None:
    """The Test's steps against the real sshd; a missing folder fails at its step."""
    remote = tmp_path / "remote"
    remote.mkdir()
    targets = validate_document(
        {
            "targets": {
                "ok": rsync_target(sshd, remote),
                "nofolder": rsync_target(sshd, tmp_path / "missing"),
            }
        }
    ).config.targets
    good = asyncio.run(run_test("ok", targets["ok"]))
    assert good.ok, good.summary
    assert [(s.name, s.state) for s in good.steps] == [
        ("programs", "ok"),
        ("login", "ok"),
        ("rsync on the server", "ok"),
        ("folder", "ok"),
        ("run_on_complete script", "skipped"),
    ]
    bad = asyncio.run(run_test("nofolder", targets["nofolder"]))
    assert not bad.ok and bad.steps[-1].name == "folder"


# --- dicomweb prefixes, pass_receiver_aet -----------------------------------------------------
def test_url_prefixes_are_appended_as_mercure_appends_them() -> None:
    """`rs`, `/rs/` and none: the studies resource under the base URL."""
    assert studies_path(None) == "/studies"
    assert studies_path("rs") == "/rs/studies"
    assert studies_path("/dicom-web/") == "/dicom-web/studies"


@pytest.mark.peers
def test_dicomweb_stow_and_qido_prefixes_reach_orthanc(
    site: Site, orthanc: Orthanc, tmp_path: Path
) -> None:
    """The base URL is Orthanc's root; the prefixes add its DICOMweb path for STOW and QIDO."""
    series = generate_series(tmp_path / "series", "tiny", 2)
    target = {
        "type": "dicomweb",
        "url": orthanc.base_url,
        "stow_url_prefix": "dicom-web",
        "qido_url_prefix": "/dicom-web/",
    }
    site.configure({"web": target})
    task_id = site.add_task(series.paths, ["web"])
    site.run_until_finished(task_id)
    assert site.where(task_id) == Stage.SUCCESS
    assert len(orthanc.instances()) == 2
    config = validate_document({"targets": {"web": target}}).config.targets["web"]
    report = asyncio.run(run_test("web", config))
    assert report.ok, report.summary


@pytest.mark.peers
def test_pass_receiver_aet_calls_the_target_by_the_title_we_were_called(
    site: Site, orthanc: Orthanc, tmp_path: Path
) -> None:
    """With pass_receiver_aet the called AE title is the one the series was sent to here."""
    series = generate_series(tmp_path / "series", "tiny", 1)
    target = {
        "type": "dicom",
        "host": "127.0.0.1",
        "port": orthanc.dicom_port,
        "aet_target": "NOT_THIS",
        "pass_receiver_aet": True,
    }
    site.configure({"pacs": target})
    task_id = site.add_task(series.paths, ["pacs"], receiver_aet="ROUTED_AS")
    site.run_until_finished(task_id)
    assert site.where(task_id) == Stage.SUCCESS
    [instance] = orthanc.instances()
    called = orthanc.request("GET", f"/instances/{instance}/metadata/CalledAET")
    assert called.text == "ROUTED_AS"
