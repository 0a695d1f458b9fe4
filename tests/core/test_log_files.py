"""Services' log files: written beside standard error, rotated, private, scrubbed, read back."""

from __future__ import annotations

import io
import logging
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mercure.core.logs import (
    LogFile,
    LogPosition,
    configure_logging,
    log_file_for,
    log_files,
    read_new,
    tail,
)
from mercure.core.masking import register_secret

log = logging.getLogger("mercure.test.logfiles")


@pytest.fixture(autouse=True)
def _restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)


def test_a_service_writes_its_log_to_a_private_file_in_the_data_folder(tmp_path: Path) -> None:
    path = log_file_for(tmp_path, "router")
    configure_logging("INFO", stream=io.StringIO(), file=LogFile(path))
    log.info("routed %d series", 3)
    log.debug("not at INFO")

    assert path == tmp_path / "logs" / "router.log"
    text = path.read_text()
    assert "routed 3 series" in text and "not at INFO" not in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert log_files(tmp_path) == {"router": path}


def test_instance_names_are_part_of_the_file_name_and_cannot_leave_the_folder(
    tmp_path: Path,
) -> None:
    assert log_file_for(tmp_path, "dispatcher", "host2").name == "dispatcher@host2.log"
    odd = log_file_for(tmp_path, "dispatcher", "../../etc/x")
    assert odd.parent == tmp_path / "logs" and "/" not in odd.name


def test_files_rotate_at_their_size_and_keep_the_configured_number(tmp_path: Path) -> None:
    path = log_file_for(tmp_path, "receiver")
    configure_logging("INFO", stream=io.StringIO(), file=LogFile(path, max_bytes=2000, backups=2))
    for number in range(200):
        log.info("line %03d %s", number, "x" * 40)

    rotated = sorted(p.name for p in path.parent.iterdir())
    assert rotated == ["receiver.log", "receiver.log.1", "receiver.log.2"]
    assert path.stat().st_size <= 2000
    assert "line 199" in path.read_text()


def test_secrets_are_masked_in_the_file_too(tmp_path: Path) -> None:
    secret = "s3cr3t-log-file-value"
    register_secret(secret)
    path = log_file_for(tmp_path, "dispatcher")
    configure_logging("INFO", stream=io.StringIO(), file=LogFile(path))
    log.warning("peer said: Authorization: Basic %s", secret)
    assert secret not in path.read_text()


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(text)


def _record(level: str, message: str, second: int = 0) -> str:
    return f"2026-12-04 01:00:{second:02d}.000 {level:<7} router mercure.x: {message}\n"


def test_tail_keeps_tracebacks_with_their_record_and_filters_by_level(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "router.log"
    _write(path, _record("INFO", "one"))
    _write(path, _record("ERROR", "two") + "Traceback (most recent call last):\n  boom\n")
    _write(path, _record("DEBUG", "three"))
    _write(path, '{"time": "t", "level": "WARNING", "logger": "x", "message": "four"}\n')

    everything = tail(path, 10)
    assert [r.level for r in everything] == ["INFO", "ERROR", "DEBUG", "WARNING"]
    assert everything[1].text.endswith("Traceback (most recent call last):\n  boom")
    warnings = tail(path, 10, "WARNING")
    assert [r.level for r in warnings] == ["ERROR", "WARNING"]
    assert warnings[0].text.endswith("two\nTraceback (most recent call last):\n  boom")
    assert len(tail(path, 10, "WARNING")) == 2
    assert [r.level for r in tail(path, 2)] == ["DEBUG", "WARNING"]
    assert tail(tmp_path / "missing.log", 5) == []
    with pytest.raises(ValueError, match="unknown level"):
        tail(path, 5, "LOUD")


def test_tail_of_a_large_file_reads_only_its_end(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "router.log"
    _write(path, "".join(_record("INFO", f"filler {n} " + "y" * 100) for n in range(60000)))
    _write(path, _record("ERROR", "the one that matters"))

    found = tail(path, 1, "ERROR", max_read=1 << 20)
    assert [r.text.rsplit(": ", 1)[-1] for r in found] == ["the one that matters"]
    last = tail(path, 3)
    assert last[-1].level == "ERROR" and "filler 59999" in last[-2].text


def test_read_new_follows_a_file_across_rotation(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "router.log"
    _write(path, _record("INFO", "before"))
    position = LogPosition.end_of(path)
    _write(path, _record("INFO", "first new") + "2026-12-04 01:00:01.000 INFO    half a li")

    records, position = read_new(path, position)
    assert [r.text.rsplit(": ", 1)[-1] for r in records] == ["first new"]
    _write(path, "ne\n")
    records, position = read_new(path, position)
    assert [r.text for r in records] == ["2026-12-04 01:00:01.000 INFO    half a line"]

    path.rename(path.with_name("router.log.1"))
    _write(path, _record("WARNING", "after rotation"))
    records, position = read_new(path, position, "WARNING")
    assert [r.text.rsplit(": ", 1)[-1] for r in records] == ["after rotation"]


def test_read_new_reads_the_rest_of_a_rotated_file_first(tmp_path: Path) -> None:
    """Lines written after the last read but before the rotation are not lost."""
    path = tmp_path / "logs" / "router.log"
    _write(path, _record("INFO", "seen"))
    position = LogPosition.end_of(path)
    _write(path, _record("INFO", "late in the old file"))
    path.rename(path.with_name("router.log.1"))

    records, position = read_new(path, position)  # the new file is not there yet
    assert [r.text.rsplit(": ", 1)[-1] for r in records] == ["late in the old file"]
    records, position = read_new(path, position)
    assert records == []
    _write(path, _record("INFO", "first in the new file"))
    records, position = read_new(path, position)
    assert [r.text.rsplit(": ", 1)[-1] for r in records] == ["first in the new file"]
    records, position = read_new(path, position)
    assert records == []


def test_tail_up_to_a_position_leaves_the_rest_to_read_new(tmp_path: Path) -> None:
    """tail(end=) and read_new from the same position show every record exactly once."""
    path = tmp_path / "logs" / "router.log"
    _write(path, _record("INFO", "one") + _record("INFO", "two"))
    position = LogPosition.end_of(path)
    _write(path, _record("INFO", "three"))

    shown = [r.text.rsplit(": ", 1)[-1] for r in tail(path, 10, end=position.offset)]
    records, _ = read_new(path, position)
    shown += [r.text.rsplit(": ", 1)[-1] for r in records]
    assert shown == ["one", "two", "three"]


def test_mercure_logs_lists_and_shows_the_files(tmp_path: Path) -> None:
    (tmp_path / "mercure.yaml").write_text("data_dir: data\n")
    path = tmp_path / "data" / "logs" / "router.log"
    _write(path, _record("INFO", "quiet") + _record("ERROR", "loud"))

    def mercure(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mercure", "--config", str(tmp_path / "mercure.yaml"), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )

    listing = mercure("logs")
    assert listing.returncode == 0 and listing.stdout.startswith("router ")
    shown = mercure("logs", "router", "--level", "ERROR")
    assert shown.returncode == 0 and shown.stdout.strip().endswith("loud")
    assert "quiet" not in shown.stdout
    unknown = mercure("logs", "nothing")
    assert unknown.returncode == 1 and "no log file for 'nothing'" in unknown.stderr
