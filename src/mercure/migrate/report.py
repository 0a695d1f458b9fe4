"""What ``mercure import-config`` did with each key of mercure's configuration.

Every key the importer walks ends in exactly one entry: ``mapped`` (same meaning, maybe another
name), ``changed`` (carried, but a default or a meaning differs; the value written keeps
mercure's behaviour and the entry says how), or ``dropped`` (not carried, always with why).
Secrets are never values here: an entry names the environment variable that must hold one.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Outcome(enum.StrEnum):
    """What became of one key of the input."""

    MAPPED = "mapped"
    CHANGED = "changed"
    DROPPED = "dropped"


@dataclass(frozen=True)
class Entry:
    """One key of the input: where it went (``to``) and what the administrator should know."""

    key: str
    outcome: Outcome
    to: str
    note: str = ""


@dataclass(frozen=True)
class Secret:
    """An environment variable the imported file refers to, and the key its value came from."""

    variable: str
    origin: str
    target: str


@dataclass
class ImportReport:
    """Every key of the input, accounted for; the variables to set; the users made."""

    entries: list[Entry] = field(default_factory=list)
    secrets: list[Secret] = field(default_factory=list)

    def mapped(self, key: str, to: str, note: str = "") -> None:
        """``key`` carried with the same meaning to ``to``."""
        self.entries.append(Entry(key, Outcome.MAPPED, to, note))

    def changed(self, key: str, to: str, note: str) -> None:
        """``key`` carried to ``to``, but ``note`` says what differs and what was written."""
        self.entries.append(Entry(key, Outcome.CHANGED, to, note))

    def dropped(self, key: str, why: str) -> None:
        """``key`` not carried over, because of ``why``."""
        self.entries.append(Entry(key, Outcome.DROPPED, "", why))

    def secret(self, variable: str, origin: str, target: str) -> str:
        """Record that ``target`` refers to ``variable`` (value from ``origin``); the reference."""
        self.secrets.append(Secret(variable, origin, target))
        return f"${{{variable}}}"

    def keys(self) -> set[str]:
        """The input keys accounted for."""
        return {entry.key for entry in self.entries}

    def by_outcome(self, outcome: Outcome) -> list[Entry]:
        """The entries of one outcome, in input order."""
        return [entry for entry in self.entries if entry.outcome is outcome]

    def notes_for(self, target: str) -> list[str]:
        """Notes of the changed entries written to ``target`` (comments in the YAML)."""
        return [
            entry.note
            for entry in self.entries
            if entry.to == target and entry.outcome is Outcome.CHANGED and entry.note
        ]

    def render(self) -> str:
        """The report as text for the administrator."""
        lines: list[str] = []
        counts = ", ".join(f"{len(self.by_outcome(o))} {o.value}" for o in Outcome)
        lines.append(f"mercure import-config: {len(self.entries)} keys ({counts})")
        titles = {
            Outcome.CHANGED: "Changed in meaning (the value written keeps mercure's behaviour):",
            Outcome.DROPPED: "Not carried over:",
            Outcome.MAPPED: "Mapped one to one:",
        }
        for outcome in (Outcome.CHANGED, Outcome.DROPPED, Outcome.MAPPED):
            entries = self.by_outcome(outcome)
            if not entries:
                continue
            lines += ["", titles[outcome]]
            for entry in entries:
                where = f" -> {entry.to}" if entry.to else ""
                note = f": {entry.note}" if entry.note else ""
                lines.append(f"  {entry.key}{where}{note}")
        if self.secrets:
            lines += ["", "Environment variables to set before starting (values not written):"]
            for secret in self.secrets:
                lines.append(f"  {secret.variable}  (from {secret.origin}, for {secret.target})")
        return "\n".join(lines) + "\n"
