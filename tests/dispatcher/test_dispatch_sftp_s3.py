"""The sftp target against a real OpenSSH sshd, the s3 target against moto's S3 server."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from dispatch_site import Site

from mercure.cli.main import main
from mercure.core.datafolder import Stage
from mercure.testing.peers.process import PeerProcess, is_listening, require_program
from mercure.testing.ports import free_port
from mercure.testing.series import generate_series

pytestmark = pytest.mark.peers


class Sshd(PeerProcess):
    """OpenSSH's sshd on a free loopback port, keys and config in ``workdir``; root logs in
    with ``client_key``."""

    name = "sshd"

    def __init__(self, workdir: Path) -> None:
        program = require_program("/usr/sbin/sshd", "OpenSSH server", "openssh-server")
        keygen = require_program("ssh-keygen", "ssh-keygen", "openssh-client")
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.host_key = workdir / "host_key"
        self.client_key = workdir / "client_key"
        for key in (self.host_key, self.client_key):
            subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        authorized = workdir / "authorized_keys"
        shutil.copy(f"{self.client_key}.pub", authorized)
        self.known_hosts = workdir / "known_hosts"
        host_public = Path(f"{self.host_key}.pub").read_text().split()
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {host_public[0]} {host_public[1]}\n")
        config = workdir / "sshd_config"
        config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {self.host_key}\n"
            f"AuthorizedKeysFile {authorized}\nPidFile {workdir / 'sshd.pid'}\n"
            "StrictModes no\nUsePAM no\nPermitRootLogin yes\nPasswordAuthentication yes\n"
            "Subsystem sftp internal-sftp\n"
        )
        Path("/run/sshd").mkdir(exist_ok=True)
        super().__init__([program, "-D", "-e", "-f", str(config)], workdir / "sshd.log")

    def is_ready(self) -> bool:
        """sshd listens on its port."""
        return self.running and is_listening(self.port, self.pid)


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    """A running sshd."""
    with Sshd(tmp_path / "sshd") as server:
        yield server


def test_sftp_upload_with_key_lands_in_task_folder_with_marker(
    site: Site, sshd: Sshd, tmp_path: Path
) -> None:
    """Key login, verified host key: every instance in <folder>/<task_id>/, then .complete."""
    series = generate_series(tmp_path / "series", "tiny", 4)
    remote = tmp_path / "remote"
    target = {
        "type": "sftp",
        "host": "127.0.0.1",
        "port": sshd.port,
        "user": "root",
        "key_file": str(sshd.client_key),
        "known_hosts": str(sshd.known_hosts),
        "folder": str(remote / "inbox"),
    }
    site.configure({"sftp": target})
    task_id = site.add_task(series.paths, ["sftp"])
    site.run_until_finished(task_id)
    assert site.where(task_id) == Stage.SUCCESS
    delivered = remote / "inbox" / task_id
    assert sorted(p.name for p in delivered.iterdir()) == sorted(
        [".complete", *(p.name for p in series.paths)]
    )
    for path in series.paths:
        assert (delivered / path.name).read_bytes() == path.read_bytes()


def test_sftp_wrong_password_ends_in_error_with_clear_reason(
    site: Site, sshd: Sshd, tmp_path: Path
) -> None:
    """A wrong password is retried, then the task is in error/ saying the login failed."""
    series = generate_series(tmp_path / "series", "tiny", 1)
    target = {
        "type": "sftp",
        "host": "127.0.0.1",
        "port": sshd.port,
        "user": "root",
        "password": "certainly-wrong",
        "known_hosts": str(sshd.known_hosts),
        "folder": str(tmp_path / "remote"),
    }
    site.configure({"sftp": target}, retry_attempts=2)
    task_id = site.add_task(series.paths, ["sftp"])
    site.run_until_finished(task_id)
    assert site.where(task_id) == Stage.ERROR
    reason = site.task_json(task_id)["info"]["reason"]
    assert reason.startswith(f"sftp: SFTP login as root@127.0.0.1:{sshd.port} failed")


class MotoServer(PeerProcess):
    """moto's S3 server: the stand-in for Amazon S3 (no real S3 service can run here)."""

    name = "moto_server"

    def __init__(self, workdir: Path) -> None:
        beside_python = Path(sys.executable).with_name("moto_server")
        program = (
            str(beside_python)
            if beside_python.exists()
            else require_program("moto_server", "moto server", "pip package moto[server]")
        )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        super().__init__([program, "-H", "127.0.0.1", "-p", str(self.port)], workdir / "moto.log")

    def is_ready(self) -> bool:
        """The server listens on its port."""
        return self.running and is_listening(self.port, self.pid)


@pytest.fixture
def moto(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoServer]:
    """A running moto S3 server (stand-in for S3), with dummy credentials in the environment."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with MotoServer(tmp_path / "moto") as server:
        yield server


def test_s3_objects_are_uploaded_under_prefix_and_task_id(
    site: Site, moto: MotoServer, tmp_path: Path
) -> None:
    """Against moto's S3 server (the stand-in): one object per instance, same bytes."""
    client = boto3.client("s3", region_name="us-east-1", endpoint_url=moto.url)
    client.create_bucket(Bucket="archive")
    series = generate_series(tmp_path / "series", "tiny", 3)
    target = {"type": "s3", "bucket": "archive", "prefix": "mercure/", "endpoint_url": moto.url}
    site.configure({"s3": target})
    task_id = site.add_task(series.paths, ["s3"])
    site.run_until_finished(task_id)
    assert site.where(task_id) == Stage.SUCCESS
    for path in series.paths:
        body = client.get_object(Bucket="archive", Key=f"mercure/{task_id}/{path.name}")["Body"]
        assert body.read() == path.read_bytes()


def test_s3_missing_bucket_is_a_clear_error(site: Site, moto: MotoServer, tmp_path: Path) -> None:
    """A bucket that does not exist: the reason names the bucket and S3's error code."""
    series = generate_series(tmp_path / "series", "tiny", 1)
    target = {"type": "s3", "bucket": "nothere", "endpoint_url": moto.url}
    site.configure({"s3": target}, retry_attempts=1)
    task_id = site.add_task(series.paths, ["s3"])
    site.run_until_finished(task_id)
    assert site.where(task_id) == Stage.ERROR
    reason = site.task_json(task_id)["info"]["reason"]
    assert reason.startswith(f"s3: S3 bucket nothere at {moto.url}:")
    assert "NoSuchBucket" in reason


def test_test_target_checks_sftp_write_and_s3_bucket(
    site: Site, sshd: Sshd, moto: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """test-target logs in and writes over SFTP, and finds (or misses) the S3 bucket."""
    boto3.client("s3", region_name="us-east-1", endpoint_url=moto.url).create_bucket(
        Bucket="images"
    )
    (tmp_path / "drop").mkdir()
    sftp = {
        "type": "sftp",
        "host": "127.0.0.1",
        "port": sshd.port,
        "user": "root",
        "key_file": str(sshd.client_key),
        "known_hosts": str(sshd.known_hosts),
        "folder": str(tmp_path / "drop"),
    }
    site.configure(
        {
            "sftp": sftp,
            "s3": {"type": "s3", "bucket": "images", "endpoint_url": moto.url},
            "s3-missing": {"type": "s3", "bucket": "missing", "endpoint_url": moto.url},
        }
    )
    config = ["--config", str(site.config_path)]
    assert main(["test-target", "sftp", *config]) == 0
    assert main(["test-target", "s3", *config]) == 0
    out = capsys.readouterr().out
    assert f"sftp: OK: SFTP login as root@127.0.0.1:{sshd.port} and a write into" in out
    assert "s3: OK: S3 bucket images is reachable" in out
    for step in ("connect", "host key verified", "login", "write probe", "remove probe"):
        assert f"  ok       {step}: " in out
    assert "  ok       bucket reachable (HEAD): bucket images at" in out
    assert main(["test-target", "s3-missing", *config]) == 1
    assert capsys.readouterr().err.startswith("s3-missing: FAILED: S3 bucket missing at")
    assert list((tmp_path / "drop").iterdir()) == []
