"""The STOW-RS endpoint of a real receiver process, over real HTTP (httpx, raw sockets)."""

from __future__ import annotations

import json
import signal
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from mercure.core.datafolder import Stage
from mercure.testing.receiver import RunningReceiver, dataset_bytes
from mercure.testing.series import GeneratedSeries, generate_series
from mercure.testing.stow import (
    TOKEN,
    multipart_body,
    start_stow_receiver,
    stow_receiver_config,
)
from mercure.testing.wait import wait_until

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def stow_factory(tmp_path: Path) -> Iterator[Callable[..., RunningReceiver]]:
    """Start receivers with their STOW-RS endpoint on; all are stopped afterwards."""
    started: list[RunningReceiver] = []

    def make(**kwargs: Any) -> RunningReceiver:
        config = stow_receiver_config(tmp_path / "data", **kwargs)
        running = start_stow_receiver(config, tmp_path / f"mercure-{len(started)}.yaml")
        started.append(running)
        return running

    yield make
    for running in started:
        if running.process is not None:
            running.stop()


@pytest.fixture
def stow(stow_factory: Callable[..., RunningReceiver]) -> RunningReceiver:
    """A receiver with STOW-RS on and the default sender."""
    return stow_factory()


@pytest.fixture
def series(tmp_path: Path) -> GeneratedSeries:
    """Ten small CT instances of one series."""
    return generate_series(tmp_path / "series", count=10, size=(32, 32))


def _post(url: str, body: bytes, content_type: str, **headers: str) -> httpx.Response:
    return httpx.post(
        url, content=body, headers={"Content-Type": content_type, **headers}, timeout=30
    )


def _sequence(answer: httpx.Response, tag: str) -> list[dict[str, Any]]:
    return list(answer.json().get(tag, {}).get("Value", []))


def test_ten_instances_in_one_request_land_as_c_store_would(
    stow: RunningReceiver, series: GeneratedSeries
) -> None:
    """All ten: 200, byte-identical datasets, journal lines and tags naming the sender."""
    content_type, body = multipart_body(i.path for i in series.instances)
    answer = _post(f"{stow.extra['stow_url']}/studies", body, content_type, **AUTH)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/dicom+json"
    stored = [i["00081155"]["Value"][0] for i in _sequence(answer, "00081199")]
    assert stored == [i.sop_instance_uid for i in series.instances]
    folder = stow.data.stage(Stage.INCOMING) / series.series_uid
    for instance in series.instances:
        placed = folder / f"{instance.sop_instance_uid}.dcm"
        assert dataset_bytes(placed) == dataset_bytes(instance.path)
    lines = [json.loads(line) for line in (folder / "journal.jsonl").read_text().splitlines()]
    journalled = [line for line in lines if "sop" in line]
    assert len(journalled) == 10
    assert {line["calling_aet"] for line in journalled} == {"STOW:lab"}
    assert {line["listener"] for line in journalled} == {"stow"}
    tags = json.loads((folder / "tags.json").read_text())
    assert tags["SenderAET"] == "STOW:lab"
    assert tags["ReceiverAET"] == "STOW"
    assert tags["SeriesInstanceUID"] == series.series_uid
    assert stow.staging_files() == []
    assert TOKEN not in stow.log_text()


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token-0123456789", f"Basic {TOKEN}"])
def test_without_the_right_token_401_comes_before_the_body(
    stow: RunningReceiver, authorization: str | None
) -> None:
    """A huge body announced without a valid token: 401 at once, nothing read or written."""
    host, port = stow.extra["stow_url"].removeprefix("http://").split(":")
    head = (
        "POST /studies HTTP/1.1\r\n"
        f"Host: {host}\r\n"
        'Content-Type: multipart/related; type="application/dicom"; boundary=x\r\n'
        f"Content-Length: {50 << 30}\r\n"
        + (f"Authorization: {authorization}\r\n" if authorization else "")
        + "\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.encode() + b"--x\r\n" + bytes(1 << 20))
        answer = b""
        while b"\r\n\r\n" not in answer:
            data = sock.recv(65536)
            assert data, "connection closed without an answer"
            answer += data
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 401")
    assert b"www-authenticate: bearer" in rest.lower()
    assert stow.instances() == []
    assert stow.staging_files() == []


def test_broken_part_is_failed_and_the_others_stored(
    stow: RunningReceiver, series: GeneratedSeries
) -> None:
    """One part is not DICOM: 202, it is in FailedSOPSequence, the other nine are stored."""
    parts: list[Path | bytes] = [i.path for i in series.instances[:9]]
    parts.insert(4, b"this is not DICOM at all" * 20)
    content_type, body = multipart_body(parts)
    answer = _post(f"{stow.extra['stow_url']}/studies", body, content_type, **AUTH)
    assert answer.status_code == 202, answer.text
    failed = _sequence(answer, "00081198")
    assert len(failed) == 1
    assert failed[0]["00081197"]["Value"] == [0xC000]
    assert "DICM" in failed[0]["00000902"]["Value"][0]
    assert len(_sequence(answer, "00081199")) == 9
    assert len(stow.instances()) == 9


def test_instance_of_another_study_than_the_url_is_refused(
    stow: RunningReceiver, series: GeneratedSeries
) -> None:
    """POST /studies/{uid} with instances of another study: 409, 0xA900 each, nothing kept."""
    content_type, body = multipart_body(i.path for i in series.instances[:2])
    answer = _post(f"{stow.extra['stow_url']}/studies/1.2.3.999", body, content_type, **AUTH)
    assert answer.status_code == 409, answer.text
    assert [f["00081197"]["Value"][0] for f in _sequence(answer, "00081198")] == [0xA900] * 2
    assert stow.instances() == []
    same = _post(f"{stow.extra['stow_url']}/studies/{series.study_uid}", body, content_type, **AUTH)
    assert same.status_code == 200, same.text
    assert len(stow.instances()) == 2


def test_limits_answer_413_and_keep_nothing_partial(
    stow_factory: Callable[..., RunningReceiver], tmp_path: Path
) -> None:
    """Past max_instance_mb or max_request_mb: 413 with a message, no partial file left."""
    stow = stow_factory(stow={"max_instance_mb": 1, "max_request_mb": 3})
    big = generate_series(tmp_path / "big", count=1, size=(800, 800))  # ~1.3 MB
    content_type, body = multipart_body([big.instances[0].path])
    answer = _post(f"{stow.extra['stow_url']}/studies", body, content_type, **AUTH)
    assert answer.status_code == 413
    assert "max_instance_mb" in answer.text
    small = generate_series(tmp_path / "small", count=8, size=(400, 400))  # ~0.3 MB each
    content_type, body = multipart_body([i.path for i in small.instances] * 2)
    announced = _post(f"{stow.extra['stow_url']}/studies", body, content_type, **AUTH)
    assert announced.status_code == 413
    assert "max_request_mb" in announced.text

    def chunked() -> Iterator[bytes]:
        for at in range(0, len(body), 65536):
            yield body[at : at + 65536]

    streamed = httpx.post(
        f"{stow.extra['stow_url']}/studies",
        content=chunked(),
        headers={"Content-Type": content_type, **AUTH},
        timeout=30,
    )
    assert streamed.status_code == 413
    assert stow.staging_files() == []


@pytest.mark.parametrize(
    "content_type",
    [
        "application/dicom",
        'multipart/related; type="application/dicom+json"; boundary=x',
        "multipart/form-data; boundary=x",
    ],
)
def test_other_content_types_answer_415(stow: RunningReceiver, content_type: str) -> None:
    """Only multipart/related of application/dicom is taken."""
    answer = _post(f"{stow.extra['stow_url']}/studies", b"--x--\r\n", content_type, **AUTH)
    assert answer.status_code == 415
    assert "multipart/related" in answer.text


def test_truncated_body_answers_400_and_keeps_nothing_partial(
    stow: RunningReceiver, series: GeneratedSeries
) -> None:
    """A body that ends before its closing boundary is a broken request."""
    content_type, body = multipart_body([series.instances[0].path])
    cut = body[: len(body) // 2]
    answer = _post(f"{stow.extra['stow_url']}/studies", cut, content_type, **AUTH)
    assert answer.status_code == 400
    assert "closing multipart boundary" in answer.text
    assert stow.instances() == []
    assert stow.staging_files() == []


def _raw_request(url: str, body_start: bytes, length: int, content_type: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    head = (
        f"POST /studies HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {length}\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    )
    sock.sendall(head.encode() + body_start)
    return sock


def _read_answer(sock: socket.socket) -> bytes:
    answer = b""
    while data := sock.recv(65536):
        answer += data
    return answer


def test_body_that_stops_arriving_answers_408(
    stow_factory: Callable[..., RunningReceiver], series: GeneratedSeries
) -> None:
    """A sender that goes quiet mid-instance gets 408; its partial instance is dropped."""
    stow = stow_factory(stow={"read_timeout": 1})
    content_type, body = multipart_body([series.instances[0].path])
    with _raw_request(stow.extra["stow_url"], body[:600], len(body), content_type) as sock:
        answer = _read_answer(sock)
    assert answer.startswith(b"HTTP/1.1 408")
    assert b"no data for 1 s" in answer
    assert stow.instances() == []
    assert stow.staging_files() == []


def test_killed_mid_request_leaves_only_acknowledged_instances(
    stow: RunningReceiver, series: GeneratedSeries
) -> None:
    """kill -9 during a request: nothing half written is visible; a restart clears staging."""
    content_type, whole = multipart_body([series.instances[0].path])
    answer = _post(f"{stow.extra['stow_url']}/studies", whole, content_type, **AUTH)
    assert answer.status_code == 200
    content_type, body = multipart_body(i.path for i in series.instances[1:])
    sock = _raw_request(stow.extra["stow_url"], body[: len(body) // 2], len(body), content_type)
    try:
        wait_until(lambda: stow.staging_files(), message="a partial instance in staging")
        stow.stop(signal.SIGKILL)
    finally:
        sock.close()
    placed = stow.instances()
    for path in placed:  # every visible instance is whole
        source = next(i.path for i in series.instances if i.sop_instance_uid == path.stem)
        assert dataset_bytes(path) == dataset_bytes(source)
    assert series.instances[0].sop_instance_uid in {p.stem for p in placed}
    stow.start()
    wait_until(lambda: stow.staging_files() == [], message="staging cleared after restart")


def test_disk_floor_answers_507_and_acknowledges_nothing_unkept(
    stow_factory: Callable[..., RunningReceiver], series: GeneratedSeries
) -> None:
    """Below receiver.min_free_disk_mb: 507 naming the refused instance; nothing placed."""
    stow = stow_factory(extra={})
    config = yaml.safe_load(stow.config_path.read_text())
    stow.stop()
    config["receiver"]["min_free_disk_mb"] = 1 << 30
    stow.config_path.write_text(yaml.safe_dump(config))
    stow.start()
    wait_until(lambda: "STOW-RS listening" in stow.log_text()[-2000:], timeout=20)
    content_type, body = multipart_body(i.path for i in series.instances[:3])
    answer = _post(f"{stow.extra['stow_url']}/studies", body, content_type, **AUTH)
    assert answer.status_code == 507
    failed = _sequence(answer, "00081198")
    assert [f["00081197"]["Value"][0] for f in failed] == [0xA700]
    assert _sequence(answer, "00081199") == []
    again = _post(f"{stow.extra['stow_url']}/studies", body, content_type, **AUTH)
    assert again.status_code == 507
    assert "floor" in again.text
    assert stow.instances() == []
    assert stow.staging_files() == []


def test_new_sender_is_taken_without_a_restart(
    stow: RunningReceiver, series: GeneratedSeries
) -> None:
    """A sender added to the file is accepted once the receiver reloads; DICOM stays up."""
    new_token = "second-sender-token-0123456789"
    content_type, body = multipart_body([series.instances[0].path])
    url = f"{stow.extra['stow_url']}/studies"
    headers = {"Authorization": f"Bearer {new_token}"}
    assert _post(url, body, content_type, **headers).status_code == 401
    config = yaml.safe_load(stow.config_path.read_text())
    config["receiver"]["stow"]["senders"]["second"] = {"token": new_token}
    stow.config_path.write_text(yaml.safe_dump(config))
    wait_until(
        lambda: _post(url, body, content_type, **headers).status_code == 200,
        timeout=30,
        interval=0.5,
        message="the new sender accepted after the reload",
    )
    assert "listener default changed" not in stow.log_text()
    folder = stow.data.stage(Stage.INCOMING) / series.series_uid
    assert "STOW:second" in (folder / "journal.jsonl").read_text()
