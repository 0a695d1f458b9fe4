"""When is a series complete: its quiet time, from the configuration and what the journal says.

A series is complete when no instance arrived for its quiet time. The quiet time is, from the
most specific setting down:

1. a rule's ``series_complete_trigger``, if that rule selects the series (judged on the tags of
   its first instance); several such rules: the longest, so that no rule sees a split series;
2. ``router.series_complete_trigger_by_calling_aet`` for the sender's calling AE title;
3. the listener's ``series_complete_trigger``;
4. ``router.series_complete_trigger``.

If the listener says ``complete_on_release`` and the newest journal line is the release of the
association that delivered the series, ``release_grace`` (if shorter) is enough.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mercure.core.config import LoadedConfig
from mercure.core.config.models import ListenerConfig
from mercure.core.rules import CompiledRule, SeriesTags
from mercure.router.journal import JournalState


@dataclass(frozen=True, slots=True)
class QuietTime:
    """How long a series must be quiet, and which setting said so (for events and logs)."""

    seconds: float
    source: str


class CompletionPolicy:
    """The completion settings of one configuration, ready to answer per series."""

    def __init__(self, loaded: LoadedConfig) -> None:
        config = loaded.config
        self.default = config.router.series_complete_trigger
        self.by_calling_aet = dict(config.router.series_complete_trigger_by_calling_aet)
        self.listeners: dict[str, ListenerConfig] = {
            listener.name: listener for listener in config.receiver.listeners
        }
        compiled: Mapping[str, CompiledRule] = loaded.compiled_rules
        self.rule_overrides: list[tuple[CompiledRule, float]] = [
            (compiled[name], rule.series_complete_trigger)
            for name, rule in config.rules.items()
            if rule.series_complete_trigger is not None and not rule.disabled and name in compiled
        ]

    @property
    def uses_tags(self) -> bool:
        """Whether a rule overrides the quiet time (so the tags must be read early)."""
        return bool(self.rule_overrides)

    def rule_trigger(self, tags: Mapping[str, str]) -> float | None:
        """The longest override of the rules that select a series with these tags."""
        prepared = tags if isinstance(tags, SeriesTags) else SeriesTags(tags)
        chosen = [seconds for rule, seconds in self.rule_overrides if rule.evaluate(prepared).value]
        return max(chosen) if chosen else None

    def quiet_time(self, journal: JournalState, rule_trigger: float | None) -> QuietTime:
        """The quiet time of a series with this journal (and this rule override, if any)."""
        quiet = QuietTime(self.default, "router.series_complete_trigger")
        listener = self.listeners.get(journal.listener or "")
        if listener is not None and listener.series_complete_trigger is not None:
            quiet = QuietTime(listener.series_complete_trigger, f"listener {listener.name}")
        if journal.calling_aet in self.by_calling_aet:
            quiet = QuietTime(
                self.by_calling_aet[journal.calling_aet], f"calling AE {journal.calling_aet}"
            )
        if rule_trigger is not None:
            quiet = QuietTime(rule_trigger, "rule")
        if journal.released:
            released_by = self.listeners.get(journal.release_listener or "") or listener
            if released_by is not None and released_by.complete_on_release:
                grace = released_by.release_grace
                if grace < quiet.seconds:
                    quiet = QuietTime(grace, f"release ({released_by.name})")
        return quiet

    def claim_retry(self, quiet: QuietTime) -> float:
        """How soon to try again when a series could not be claimed (a sender still delivers)."""
        return min(1.0, max(0.05, quiet.seconds / 4))
