"""The ``folder`` target: each task into ``<folder>/<task_id>/``, then a ``.complete`` marker.

Files matching ``file_filter`` (comma-separated glob patterns, mercure's meaning) are left out:
they count as done for this target and the marker holds the number of files delivered.
Instances are hard-linked when the folder is on the data folder's filesystem (no data copied)
and copied otherwise. Either way a file appears under its final name only when complete: it is
linked or copied to a dot-name first and renamed into place.
"""

from __future__ import annotations

import asyncio
import errno
import os
import secrets
import shutil
from pathlib import Path

from mercure.core.atomic import atomic_write_text, fsync_dir
from mercure.core.config.models import FolderTarget
from mercure.dispatcher.errors import DeliveryError
from mercure.dispatcher.targets.base import (
    Confirm,
    SendJob,
    SendResult,
    TargetPlugin,
    TestSteps,
    left_out,
)

COMPLETE_MARKER = ".complete"


class FolderPlugin(TargetPlugin):
    """Delivers into a local (or mounted) folder."""

    def __init__(self, name: str, config: FolderTarget) -> None:
        super().__init__(name)
        self.config = config

    async def send(self, job: SendJob, confirm: Confirm) -> SendResult:
        """Link or copy every pending file, then write the marker."""
        return await asyncio.to_thread(self._send, job, confirm)

    def _send(self, job: SendJob, confirm: Confirm) -> SendResult:
        destination = Path(self.config.folder) / job.task_id
        try:
            destination.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DeliveryError(f"cannot create {destination}: {exc}") from exc
        can_link = True
        files, skipped = left_out(job.files, self.config.file_filter)
        for source in skipped:
            confirm(source, 0)
        for source in files:
            temp = destination / f".{source.name}.{secrets.token_hex(4)}.part"
            try:
                linked = False
                if can_link:
                    try:
                        os.link(source, temp)
                        linked = True
                    except OSError as exc:
                        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                            raise
                        can_link = False
                if not linked:
                    _copy_durably(source, temp)
                os.replace(temp, destination / source.name)
            except OSError as exc:
                temp.unlink(missing_ok=True)
                raise DeliveryError(
                    f"cannot write {destination / source.name}: {exc.strerror or exc}"
                ) from exc
            confirm(source, source.stat().st_size)
        try:
            fsync_dir(destination)
            delivered = sum(1 for p in destination.iterdir() if not p.name.startswith("."))
            atomic_write_text(destination / COMPLETE_MARKER, f"{delivered}\n")
        except OSError as exc:
            raise DeliveryError(f"cannot mark {destination} complete: {exc}") from exc
        return SendResult()

    async def test(self, steps: TestSteps) -> str:
        """The folder exists and a file can be written into it."""
        return await asyncio.to_thread(self._test, steps)

    def _test(self, steps: TestSteps) -> str:
        folder = Path(self.config.folder)
        if not folder.is_dir():
            what = "is not a folder" if folder.exists() else "does not exist"
            steps.fail("exists", DeliveryError(f"folder {folder} {what}"))
        steps.ok("exists", str(folder))
        probe = folder / f".mercure-test-{secrets.token_hex(4)}"
        try:
            probe.write_bytes(b"mercure test-target\n")
            probe.unlink()
        except OSError as exc:
            steps.fail("writable", DeliveryError(f"folder {folder} is not writable: {exc}"))
        steps.ok("writable", "a probe file was written and removed")
        return f"folder {folder} is writable"


def _copy_durably(source: Path, target: Path) -> None:
    with open(source, "rb") as src, open(target, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
        dst.flush()
        os.fsync(dst.fileno())
