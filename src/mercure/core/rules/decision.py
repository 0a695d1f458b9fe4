"""Which rules fire for a complete series, and what that means: the routing decision.

Rules are evaluated once per complete series, in configuration order, with the rules compiled
when the configuration was loaded. The outcome, in the words of docs/router.md:

- disabled rules are skipped; a rule that fails while running is false (and reported);
- fallback rules are evaluated only if no other rule fired;
- a firing ``discard`` rule wins: the series goes to ``discard/`` and nothing else happens;
- series-level ``route`` rules are merged into one task: every target receives the series once;
- each series-level ``process`` or ``both`` rule makes its own processing task;
- each study-level rule collects the series in ``studies/<StudyInstanceUID>#<rule>/``;
- series-level ``notification`` rules emit an event; if nothing else happens to the series,
  it goes to ``success/``;
- a series no rule selects goes to ``discard/``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from mercure.core.config import MercureConfig, Rule
from mercure.core.errors import PermanentError
from mercure.core.rules import CompiledRule, SeriesTags

PRIORITY_ORDER = {"urgent": 0, "normal": 1, "offpeak": 2}


@dataclass
class Decision:
    """The outcome of the rules for one series."""

    fired: list[str] = field(default_factory=list)
    """Rules that fired, in configuration order."""
    errors: dict[str, str] = field(default_factory=dict)
    """Rules that failed while running -> why (they count as false)."""
    used_tags: dict[str, tuple[str, ...]] = field(default_factory=dict)
    discard_rule: str | None = None
    route_rules: list[str] = field(default_factory=list)
    route_targets: list[str] = field(default_factory=list)
    processing_rules: list[str] = field(default_factory=list)
    study_rules: list[str] = field(default_factory=list)
    notification_rules: list[str] = field(default_factory=list)

    @property
    def discarded(self) -> bool:
        """Whether the series goes to ``discard/`` (a discard rule fired, or none fired)."""
        return self.discard_rule is not None or not self.fired

    @property
    def reason(self) -> str:
        """Why the series is discarded (empty if it is not)."""
        if self.discard_rule is not None:
            return f"discarded by rule '{self.discard_rule}'"
        if not self.fired:
            return "no rule selected the series"
        return ""


def route_priority(rules: Mapping[str, Rule], names: list[str]) -> str:
    """The most urgent priority among ``names``."""
    priorities = [rules[name].priority for name in names if name in rules]
    return min(priorities, key=PRIORITY_ORDER.__getitem__) if priorities else "normal"


def decide(
    config: MercureConfig,
    compiled: Mapping[str, CompiledRule],
    tags: Mapping[str, str],
    *,
    has_study_uid: bool = True,
) -> Decision:
    """Evaluate the rules against one series' tags and sort the fired ones by what they do.

    A study-level rule fires at series level when the series has no StudyInstanceUID (there is
    no study to collect it in); that is reported in ``errors`` too.
    """
    prepared = tags if isinstance(tags, SeriesTags) else SeriesTags(tags)
    decision = Decision()
    regular = [(n, r) for n, r in config.rules.items() if not r.disabled and not r.fallback]
    fallback = [(n, r) for n, r in config.rules.items() if not r.disabled and r.fallback]
    for group in (regular, fallback):
        for name, _rule in group:
            rule = compiled.get(name)
            if rule is None:
                continue
            result = rule.evaluate(prepared)
            decision.used_tags[name] = result.used_tags
            if result.error is not None:
                decision.errors[name] = result.error
            elif result.value:
                decision.fired.append(name)
        if decision.fired:
            break
    _sort_fired(config, decision, has_study_uid=has_study_uid)
    return decision


def forced_decision(
    config: MercureConfig, rule: str, *, has_study_uid: bool = True, why: str = "forced"
) -> Decision:
    """The decision when one rule is forced on a series (a retrieve job's rule): that rule
    fires alone, whatever its expression says.

    Raises :class:`PermanentError` naming ``why`` if the rule is not in the configuration or
    is disabled: the series must not be routed by other rules nor silently dropped.
    """
    rule_config = config.rules.get(rule)
    if rule_config is None:
        raise PermanentError(f"{why} forces rule '{rule}', which is not in the configuration")
    if rule_config.disabled:
        raise PermanentError(f"{why} forces rule '{rule}', which is disabled")
    decision = Decision(fired=[rule])
    _sort_fired(config, decision, has_study_uid=has_study_uid)
    return decision


def _sort_fired(config: MercureConfig, decision: Decision, *, has_study_uid: bool) -> None:
    """Sort the rules that fired by what they do (see the module docstring)."""
    for name in decision.fired:
        rule_config = config.rules[name]
        if rule_config.action == "discard":
            decision.discard_rule = decision.discard_rule or name
            continue
        if rule_config.action_trigger == "study":
            if has_study_uid:
                decision.study_rules.append(name)
                continue
            decision.errors[name] = (
                "the series has no StudyInstanceUID: the rule acts on the series alone"
            )
        if rule_config.action == "route":
            decision.route_rules.append(name)
            for target in rule_config.targets:
                if target not in decision.route_targets:
                    decision.route_targets.append(target)
        elif rule_config.action in ("process", "both"):
            decision.processing_rules.append(name)
        elif rule_config.action == "notification":
            decision.notification_rules.append(name)
    if decision.discard_rule is not None:  # discard wins: nothing else happens to the series
        decision.route_rules.clear()
        decision.route_targets.clear()
        decision.processing_rules.clear()
        decision.study_rules.clear()
        decision.notification_rules.clear()
