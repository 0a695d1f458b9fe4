"""The data folder: stage folders whose names are the states of a task.

::

    data_dir/
      incoming/<SeriesInstanceUID>/      receiver writes, router claims
      studies/<StudyInstanceUID>#<rule>/ router collects series of a study
      processing/<task_id>/              processor
      outgoing/<task_id>/                dispatcher
      success/ discard/ error/           finished; the cleaner applies retention
      control/                           queue pause switches
      run/                               heartbeat files of running services
      outbox/<service>@<instance>/       events not yet delivered to the bookkeeper
      notifications/<id>.json            notifications not yet sent (mercure notifier)
      retrieve/jobs/<job>/               retrieve jobs (mercure retriever, docs/retrieve.md)
      retrieve/series/<series>.json      series a retrieve job is fetching (router reads)

Every hand-over between stages is one ``rename``, so all stage folders must be on one
filesystem; :meth:`DataFolder.ensure` checks that at start-up. Names starting with a dot are
temporary and ignored by every scanner.
"""

from __future__ import annotations

import enum
import os
from pathlib import Path

from mercure.core.atomic import atomic_write_text, fsync_dir
from mercure.core.errors import DataFolderError


class Stage(enum.StrEnum):
    """A stage folder; a task's folder is in exactly one of them."""

    INCOMING = "incoming"
    STUDIES = "studies"
    PROCESSING = "processing"
    OUTGOING = "outgoing"
    SUCCESS = "success"
    DISCARD = "discard"
    ERROR = "error"


PAUSABLE_STAGES = (Stage.PROCESSING, Stage.OUTGOING)
"""Queues an administrator can pause: nothing new is taken from them while paused."""


DELETING_PREFIX = ".deleting-"
"""Prefix of an entry that is being deleted (hidden, so no scanner sees it; the cleaner
finishes removing what an interrupted deletion left)."""


def is_visible(name: str) -> bool:
    """Whether a folder entry is real content (temporary and hidden names start with a dot)."""
    return not name.startswith(".")


class DataFolder:
    """Paths of the data folder and the operations on the folder as a whole."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).absolute()

    def stage(self, stage: Stage | str) -> Path:
        """The folder of a stage."""
        return self.root / Stage(stage).value

    @property
    def control_dir(self) -> Path:
        """Pause switches and other administrator controls."""
        return self.root / "control"

    @property
    def run_dir(self) -> Path:
        """Heartbeat files of running services."""
        return self.root / "run"

    @property
    def outbox_dir(self) -> Path:
        """Per-service event outboxes."""
        return self.root / "outbox"

    @property
    def notifications_dir(self) -> Path:
        """Notifications queued for ``mercure notifier`` (one JSON file each)."""
        return self.root / "notifications"

    @property
    def retrieve_dir(self) -> Path:
        """Retrieve jobs (``jobs/``) and the marks of series they fetch (``series/``)."""
        return self.root / "retrieve"

    def ensure(self) -> None:
        """Create missing folders and check that all stages share one filesystem.

        Raises :class:`DataFolderError` with the offending folder when they do not.
        """
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            for folder in self._all_folders():
                folder.mkdir(exist_ok=True)
        except OSError as exc:
            raise DataFolderError(f"cannot create the data folder {self.root}: {exc}") from exc
        root_device = os.stat(self.root).st_dev
        for folder in self._all_folders():
            if os.stat(folder).st_dev != root_device:
                raise DataFolderError(
                    f"{folder} is on another filesystem than {self.root}: every stage folder "
                    "must be on one filesystem so that hand-overs are atomic renames"
                )

    def _all_folders(self) -> list[Path]:
        return [self.stage(s) for s in Stage] + [
            self.control_dir,
            self.run_dir,
            self.outbox_dir,
            self.notifications_dir,
            self.retrieve_dir,
            self.retrieve_dir / "jobs",
            self.retrieve_dir / "series",
        ]

    def entries(self, stage: Stage | str) -> list[Path]:
        """Visible entries (tasks or series folders) of a stage, in name order."""
        folder = self.stage(stage)
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            return []
        return [folder / name for name in sorted(names) if is_visible(name)]

    def queue_depths(self) -> dict[Stage, int]:
        """Number of visible entries in each stage."""
        depths = {}
        for stage in Stage:
            try:
                with os.scandir(self.stage(stage)) as it:
                    depths[stage] = sum(1 for entry in it if is_visible(entry.name))
            except FileNotFoundError:
                depths[stage] = 0
        return depths

    # Pause switches are files on purpose: a pause must survive restarts of every service.
    def _pause_file(self, stage: Stage | str) -> Path:
        stage = Stage(stage)
        if stage not in PAUSABLE_STAGES:
            raise ValueError(f"the {stage} queue cannot be paused")
        return self.control_dir / f"pause-{stage.value}"

    def pause(self, stage: Stage | str, reason: str = "") -> None:
        """Stop services from taking new work out of ``stage``."""
        atomic_write_text(self._pause_file(stage), reason + "\n")

    def resume(self, stage: Stage | str) -> None:
        """Let services take work from ``stage`` again."""
        try:
            os.unlink(self._pause_file(stage))
        except FileNotFoundError:
            return
        fsync_dir(self.control_dir)

    def is_paused(self, stage: Stage | str) -> bool:
        """Whether ``stage`` is paused."""
        return self._pause_file(stage).exists()
