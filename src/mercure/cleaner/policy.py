"""The cleaner's decisions: which retained tasks are due, and in which order they go.

Two reasons remove a task:

- **retention**: it has been in its stage longer than that stage's retention
  (``cleaner.success_retention``, ``discard_retention``, ``error_retention``); applied only
  inside the cleaning window (``cleaner.window``, or the ``offpeak`` window when that is empty),
  oldest first;
- **disk pressure**: the data filesystem's usage reached ``cleaner.disk_threshold_percent``; at
  any time of day, retained tasks go regardless of their age, all of ``success/`` oldest first,
  then ``discard/``, then ``error/`` only with ``disk_pressure_deletes_errors``, until usage is
  below the threshold minus ``disk_margin_percent``.

The functions here are pure: they see tasks and times, never the disk.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from datetime import datetime

from mercure.cleaner.retained import Retained
from mercure.core.config import MercureConfig
from mercure.core.config.models import CleanerConfig
from mercure.core.config.types import TimeWindow
from mercure.core.datafolder import Stage


class Reason(enum.StrEnum):
    """Why a task is removed (the ``reason`` of a ``task.cleaned`` event)."""

    RETENTION = "retention"
    DISK_PRESSURE = "disk_pressure"


_PRESSURE_RANK = {Stage.SUCCESS: 0, Stage.DISCARD: 1, Stage.ERROR: 2}


def retention_of(config: CleanerConfig, stage: Stage) -> float:
    """Seconds a task stays in ``stage`` before retention removes it."""
    if stage is Stage.SUCCESS:
        return config.success_retention
    if stage is Stage.DISCARD:
        return config.discard_retention
    if stage is Stage.ERROR:
        return config.error_retention
    raise ValueError(f"the cleaner never removes tasks from {stage}")


def cleaning_window(config: MercureConfig) -> TimeWindow:
    """The window in which retention applies: ``cleaner.window``, else ``offpeak``."""
    return config.cleaner.window or config.offpeak


def in_window(config: MercureConfig, now: datetime) -> bool:
    """Whether local wall-clock time at ``now`` is inside the cleaning window."""
    return cleaning_window(config).contains(now.astimezone())


def due_for_retention(
    tasks: Iterable[Retained], config: CleanerConfig, now: datetime
) -> list[Retained]:
    """Tasks older than their stage's retention at ``now``, oldest first (window not checked)."""
    moment = now.timestamp()
    due = [task for task in tasks if task.age(moment) >= retention_of(config, task.stage)]
    return sorted(due, key=lambda task: (task.entered_at, task.stage.value, task.name))


def pressure_order(tasks: Iterable[Retained], config: CleanerConfig) -> list[Retained]:
    """Tasks disk pressure may remove, in order: success, discard, then error if allowed;
    oldest first within a stage."""
    allowed = [
        task
        for task in tasks
        if task.stage in _PRESSURE_RANK
        and (task.stage is not Stage.ERROR or config.disk_pressure_deletes_errors)
    ]
    return sorted(
        allowed, key=lambda task: (_PRESSURE_RANK[task.stage], task.entered_at, task.name)
    )


def pressure_target(config: CleanerConfig) -> float:
    """Usage (percent) that disk-pressure relief deletes down to: threshold minus margin."""
    return config.disk_threshold_percent - config.disk_margin_percent


def under_pressure(config: CleanerConfig, percent: float) -> bool:
    """Whether usage ``percent`` has reached the disk-pressure threshold."""
    return percent >= config.disk_threshold_percent
