"""The rules page's model: a rule as a form, and the form back as a rule for mercure.yaml.

The editor has one control per field of :class:`mercure.core.config.models.Rule`, named by
its key in mercure.yaml (``rule``, ``action``, ``targets``, ``processing_module`` ...), plus
``name`` (the rule's key) and ``config_version``. :func:`parse_form` turns what the browser
sent into the mapping that is saved, and collects what is wrong with each field that the
form alone can tell (a name, JSON, a duration, the expression); everything else is judged by
the configuration's own validation when the edit is saved (``save_edit``), and its issues come
back to the fields by :func:`issues_by_field`.

What is written keeps the file tidy: a key is written if its value differs from the default
or the rule already had it, so saving an untouched rule changes nothing, and a rule written
by hand keeps its explicit defaults and its spelling (``target:`` for one target, a module
name that is not a list).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from mercure.core.config.models import MercureConfig, Rule
from mercure.core.config.types import NAME_PATTERN
from mercure.core.rules import CompiledRule, RuleSyntaxError, compile_rule

ACTIONS = ("route", "process", "both", "notification", "discard")
ACTION_HELP = {
    "route": "send the series to the targets",
    "process": "run the module chain, then send the result to the targets (if any)",
    "both": "send the series to the targets and run the module chain",
    "notification": "only notify; the series goes to success/",
    "discard": "send the series to discard/ (wins over every other rule)",
}
TRIGGERS = ("series", "study")
STUDY_CONDITIONS = ("timeout", "received_series")
FORCE_ACTIONS = ("proceed", "discard", "ignore")
PRIORITIES = ("urgent", "normal", "offpeak")
NOTIFICATION_TRIGGERS = ("reception", "completion", "error")
"""The triggers that may notify only for urgent tasks (``notification_urgent_only``)."""
MAX_EXPRESSION = 20_000
MAX_TEXT = 4_000
MAX_SETTINGS = 64_000
MODULE_SLOTS = 2
"""Empty module choices offered after the chain (more after each save)."""

FIELDS = tuple(Rule.model_fields)
"""The rule's fields, in the model's order: every one has a control on the editor."""

_NAME = re.compile(NAME_PATTERN)
_DEFAULTS: dict[str, Any] = {
    key: ([] if info.default_factory is list else {} if info.default_factory is dict else None)
    if info.default_factory is not None
    else info.default
    for key, info in Rule.model_fields.items()
    if key != "rule"
}


@dataclass
class RuleForm:
    """A rule as the editor shows it (text as typed) and what is wrong with each field."""

    name: str = ""
    rule: str = ""
    action: str = "route"
    targets: list[str] = field(default_factory=list)
    processing_module: list[str] = field(default_factory=list)
    processing_settings: str = "{}"
    processing_retain_images: bool = False
    dynamic_routing: bool = False
    dynamic_routing_allowed_targets: list[str] = field(default_factory=list)
    action_trigger: str = "series"
    study_trigger_condition: str = "timeout"
    study_trigger_series: str = ""
    study_force_action: str = "proceed"
    priority: str = "normal"
    fallback: bool = False
    disabled: bool = False
    series_complete_trigger: str = ""
    comment: str = ""
    notification_channels: list[str] = field(default_factory=list)
    notification_trigger_reception: bool = True
    notification_trigger_completion: bool = True
    notification_trigger_completion_on_request: bool = False
    notification_trigger_error: bool = True
    notification_urgent_only: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    """Field -> what is wrong with it (``form`` for what belongs to no one field)."""
    syntax: RuleSyntaxError | None = None
    """The expression's syntax error, for the caret under its column."""
    settings_value: dict[str, Any] | list[dict[str, Any]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether the form alone found nothing wrong."""
        return not self.errors


def form_from_rule(name: str, raw: Mapping[str, Any]) -> RuleForm:
    """The editor's form of a rule as written in mercure.yaml (``raw``: its plain mapping)."""
    targets = raw.get("targets", raw.get("target", []))
    modules = raw.get("processing_module", [])
    settings = raw.get("processing_settings") or {}
    trigger = raw.get("series_complete_trigger")
    return RuleForm(
        name=name,
        rule=str(raw.get("rule", "")),
        action=str(raw.get("action", "route")),
        targets=_names(targets),
        processing_module=_names(modules),
        processing_settings=json.dumps(settings, indent=2, default=str) if settings else "{}",
        processing_retain_images=bool(raw.get("processing_retain_images", False)),
        dynamic_routing=bool(raw.get("dynamic_routing", False)),
        dynamic_routing_allowed_targets=_names(raw.get("dynamic_routing_allowed_targets", [])),
        action_trigger=str(raw.get("action_trigger", "series")),
        study_trigger_condition=str(raw.get("study_trigger_condition", "timeout")),
        study_trigger_series=str(raw.get("study_trigger_series", "") or ""),
        study_force_action=str(raw.get("study_force_action", "proceed")),
        priority=str(raw.get("priority", "normal")),
        fallback=bool(raw.get("fallback", False)),
        disabled=bool(raw.get("disabled", False)),
        series_complete_trigger="" if trigger is None else str(trigger),
        comment=str(raw.get("comment", "") or ""),
        notification_channels=_names(raw.get("notification_channels", [])),
        notification_trigger_reception=bool(raw.get("notification_trigger_reception", True)),
        notification_trigger_completion=bool(raw.get("notification_trigger_completion", True)),
        notification_trigger_completion_on_request=bool(
            raw.get("notification_trigger_completion_on_request", False)
        ),
        notification_trigger_error=bool(raw.get("notification_trigger_error", True)),
        notification_urgent_only=_names(raw.get("notification_urgent_only", [])),
    )


def _names(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list):
        return [str(item) for item in value]
    return []


def parse_form(form: Mapping[str, Any], getlist: Any) -> RuleForm:
    """The editor's fields as sent (``getlist(key)`` gives every value of a repeated key),
    checked as far as the form alone can tell."""

    def text(key: str, limit: int = MAX_TEXT) -> str:
        value = form.get(key)
        return value[: limit + 1] if isinstance(value, str) else ""

    parsed = RuleForm(
        name=text("name", 200).strip(),
        rule=text("rule", MAX_EXPRESSION),
        action=text("action"),
        targets=_unique(v for v in getlist("targets") if isinstance(v, str) and v),
        processing_module=[v for v in getlist("processing_module") if isinstance(v, str) and v],
        processing_settings=text("processing_settings", MAX_SETTINGS),
        processing_retain_images=bool(form.get("processing_retain_images")),
        dynamic_routing=bool(form.get("dynamic_routing")),
        dynamic_routing_allowed_targets=_unique(
            v for v in getlist("dynamic_routing_allowed_targets") if isinstance(v, str) and v
        ),
        action_trigger=text("action_trigger") or "series",
        study_trigger_condition=text("study_trigger_condition") or "timeout",
        study_trigger_series=text("study_trigger_series").strip(),
        study_force_action=text("study_force_action") or "proceed",
        priority=text("priority") or "normal",
        fallback=bool(form.get("fallback")),
        disabled=bool(form.get("disabled")),
        series_complete_trigger=text("series_complete_trigger", 40).strip(),
        comment=text("comment").strip(),
        notification_channels=_unique(
            v for v in getlist("notification_channels") if isinstance(v, str) and v
        ),
        notification_trigger_reception=bool(form.get("notification_trigger_reception")),
        notification_trigger_completion=bool(form.get("notification_trigger_completion")),
        notification_trigger_completion_on_request=bool(
            form.get("notification_trigger_completion_on_request")
        ),
        notification_trigger_error=bool(form.get("notification_trigger_error")),
        notification_urgent_only=[
            t
            for t in NOTIFICATION_TRIGGERS
            if t in {v for v in getlist("notification_urgent_only") if isinstance(v, str)}
        ],
    )
    errors = parsed.errors
    if not parsed.name:
        errors["name"] = "Give the rule a name."
    elif not _NAME.match(parsed.name):
        errors["name"] = (
            "A name is 1 to 64 letters, digits, spaces, '_', '.' or '-', starting with a "
            "letter or digit (it becomes part of folder names)."
        )
    for key, choices in (
        ("action", ACTIONS),
        ("action_trigger", TRIGGERS),
        ("study_trigger_condition", STUDY_CONDITIONS),
        ("study_force_action", FORCE_ACTIONS),
        ("priority", PRIORITIES),
    ):
        if getattr(parsed, key) not in choices:
            errors[key] = f"Choose one of: {', '.join(choices)}."
    if len(parsed.rule) > MAX_EXPRESSION:
        errors["rule"] = f"The expression is longer than {MAX_EXPRESSION} characters."
    else:
        try:
            compile_rule(parsed.rule, name=parsed.name or None)
        except RuleSyntaxError as exc:
            parsed.syntax = exc
            errors["rule"] = exc.message
    settings_text = parsed.processing_settings.strip() or "{}"
    try:
        settings = json.loads(settings_text)
    except ValueError as exc:
        errors["processing_settings"] = f"Not valid JSON: {exc}."
    else:
        if isinstance(settings, dict) or (
            isinstance(settings, list) and all(isinstance(item, dict) for item in settings)
        ):
            parsed.settings_value = settings
        else:
            errors["processing_settings"] = (
                'The settings are a JSON object: {"key": value, ...}, or a list of them, '
                "one per module of the chain: [{...}, {...}]."
            )
    return parsed


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def rule_value(parsed: RuleForm, existing: Mapping[str, Any] | None) -> dict[str, Any]:
    """The rule's mapping for mercure.yaml: non-default values, and every key the rule
    already had (``existing``, as written), in the spelling it had."""
    had = dict(existing or {})
    trigger: Any = parsed.series_complete_trigger or None
    if trigger is not None:
        try:
            number = float(trigger)
        except ValueError:
            pass  # "5m" and the like: the configuration reads durations with units
        else:
            trigger = int(number) if number.is_integer() else number
    values: dict[str, Any] = {
        "rule": parsed.rule,
        "action": parsed.action,
        "targets": list(parsed.targets),
        "processing_module": list(parsed.processing_module),
        "processing_settings": parsed.settings_value,
        "processing_retain_images": parsed.processing_retain_images,
        "dynamic_routing": parsed.dynamic_routing,
        "dynamic_routing_allowed_targets": list(parsed.dynamic_routing_allowed_targets),
        "action_trigger": parsed.action_trigger,
        "study_trigger_condition": parsed.study_trigger_condition,
        "study_trigger_series": parsed.study_trigger_series,
        "study_force_action": parsed.study_force_action,
        "priority": parsed.priority,
        "fallback": parsed.fallback,
        "disabled": parsed.disabled,
        "series_complete_trigger": trigger,
        "comment": parsed.comment,
        "notification_channels": list(parsed.notification_channels),
        "notification_trigger_reception": parsed.notification_trigger_reception,
        "notification_trigger_completion": parsed.notification_trigger_completion,
        "notification_trigger_completion_on_request": (
            parsed.notification_trigger_completion_on_request
        ),
        "notification_trigger_error": parsed.notification_trigger_error,
        "notification_urgent_only": list(parsed.notification_urgent_only),
    }
    result: dict[str, Any] = {}
    for key, value in values.items():
        spelled = "target" if key == "targets" and "target" in had and "targets" not in had else key
        if key != "rule" and spelled not in had and value == _DEFAULTS.get(key):
            continue
        one_name = key in ("targets", "processing_module") and isinstance(had.get(spelled), str)
        if one_name and len(value) == 1:
            value = value[0]  # it was written as one name: keep it so
        result[spelled] = value
    return result


def issues_by_field(issues: Iterable[tuple[str, str]], name: str) -> dict[str, str]:
    """Validation issues (key path, message) as field -> message for the rule ``name``;
    issues elsewhere in the configuration go to ``form``."""
    prefix = f"rules.{name}"
    found: dict[str, list[str]] = {}
    for path, message in issues:
        where = "form"
        if path == prefix:
            where = "action" if message.startswith("action ") else "form"
        elif path.startswith(prefix + "."):
            key = re.split(r"[.\[]", path[len(prefix) + 1 :], maxsplit=1)[0]
            where = "targets" if key == "target" else key if key in FIELDS else "form"
        else:
            message = f"{path}: {message}" if path else message
        found.setdefault(where, []).append(message)
    return {key: "; ".join(messages) for key, messages in found.items()}


def edited_rule(parsed: RuleForm) -> tuple[Rule | None, CompiledRule | None, str]:
    """The edited rule as the router would hold it, for the tester; with why not, if it
    cannot be one (the expression or another field is wrong)."""
    if parsed.syntax is not None or "rule" in parsed.errors:
        return None, None, parsed.errors.get("rule", "the expression is not valid")
    try:
        rule = Rule.model_validate(rule_value(parsed, None))
    except ValidationError as exc:
        reasons = "; ".join(error["msg"].removeprefix("Value error, ") for error in exc.errors())
        return None, compile_rule(parsed.rule, name=parsed.name or "edited"), reasons
    return rule, compile_rule(parsed.rule, name=parsed.name or "edited"), ""


@dataclass(frozen=True)
class RuleRow:
    """One line of the rules list."""

    name: str
    rule: Rule
    missing_targets: tuple[str, ...]
    missing_modules: tuple[str, ...]
    missing_channels: tuple[str, ...]
    hits: int | None
    series: int | None


def rule_rows(config: MercureConfig, hits: Mapping[str, tuple[int, int]] | None) -> list[RuleRow]:
    """The configured rules in order, with what they reference that is missing, and their
    hits (None when the bookkeeper could not say)."""
    rows = []
    for name, rule in config.rules.items():
        counted = hits.get(name, (0, 0)) if hits is not None else None
        rows.append(
            RuleRow(
                name=name,
                rule=rule,
                missing_targets=tuple(t for t in rule.targets if t not in config.targets),
                missing_modules=tuple(m for m in rule.processing_module if m not in config.modules),
                missing_channels=tuple(
                    c for c in rule.notification_channels if c not in config.notifications
                ),
                hits=counted[0] if counted is not None else None,
                series=counted[1] if counted is not None else None,
            )
        )
    return rows


def copy_name(name: str, taken: Iterable[str]) -> str:
    """A free name for a duplicate of ``name``: ``name copy``, ``name copy 2`` ..."""
    used = set(taken)
    base = f"{name[:58]} copy"
    candidate, number = base, 2
    while candidate in used:
        candidate, number = f"{base} {number}", number + 1
    return candidate
