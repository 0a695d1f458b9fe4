"""Small value types the configuration models share: durations, time windows, names."""

from __future__ import annotations

import re
from datetime import datetime, time
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from mercure.core.uids import uid_problem

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(value: object) -> object:
    """Accept seconds as a number, or a string such as ``"90s"``, ``"15m"``, ``"12h"``, ``"3d"``."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(
                f"invalid duration {value!r}: use seconds or a number with ms, s, m, h, d or w"
            )
        return float(match.group(1)) * _UNIT_SECONDS[match.group(2) or "s"]
    return value


Seconds = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]
"""A duration in seconds; the file may say ``300``, ``"5m"`` or ``"3d"``."""

PositiveSeconds = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]
"""A duration in seconds that must be more than zero (a limit; ``null`` where it may be off)."""

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 _.\-]{0,63}$"
Name = Annotated[str, Field(pattern=NAME_PATTERN)]
"""A name of a rule, target, module or listener: it becomes part of folder names."""

AE_TITLE_PATTERN = r"^[\x20-\x5b\x5d-\x7e]{1,16}$"
AETitle = Annotated[str, Field(pattern=AE_TITLE_PATTERN)]
"""A DICOM application entity title: 1-16 printable characters, no backslash."""


def check_uid(value: str) -> str:
    """A DICOM UID as written (PS3.5 9.1), or a ValueError saying what is wrong with it."""
    problem = uid_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def _uid_not_number(value: object) -> object:
    # YAML reads an unquoted `1.2` as a number, which would then fail with a vague message.
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError("a UID must be a string: put it in quotes")
    return value


DicomUID = Annotated[str, BeforeValidator(_uid_not_number), AfterValidator(check_uid)]
"""A DICOM UID: digits and dots, at most 64 characters, no component with a leading zero."""


class StrictModel(BaseModel):
    """Base of every configuration model: unknown keys are errors, so typos are caught."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


class TimeWindow(StrictModel):
    """A daily window of wall-clock time, such as the off-peak hours; may wrap past midnight."""

    start: time = Field(time(22, 0), description="Start of the window, local time (HH:MM).")
    end: time = Field(time(6, 0), description="End of the window, local time (HH:MM).")

    @model_validator(mode="after")
    def _not_empty(self) -> TimeWindow:
        if self.start == self.end:
            raise ValueError("start and end are equal: the window would be empty")
        return self

    def contains(self, moment: datetime) -> bool:
        """Whether the local wall-clock time of ``moment`` falls in the window."""
        now = moment.time().replace(tzinfo=None)
        if self.start < self.end:
            return self.start <= now < self.end
        return now >= self.start or now < self.end
