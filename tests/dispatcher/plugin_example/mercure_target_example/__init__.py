"""A site's target type ``example``: the configuration model, light to import.

Its plug-in class lives in :mod:`mercure_target_example.plugin`, imported only when a task is
sent to (or a test made of) an ``example`` target.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from mercure.core.config.models import TargetBase


class ExampleTarget(TargetBase):
    """Drops each instance into a folder, named with a label."""

    plugin: ClassVar[str] = "mercure_target_example.plugin:ExamplePlugin"
    type: Literal["example"]
    folder: Path = Field(description="Where the instances go.")
    label: str = Field("site", min_length=1, description="Put before each file name.")
