"""The rule test: what the rules say about one series' tags, and what the router would do.

One implementation for ``mercure rule-test`` (which prints it as text) and the web interface's
tester (which shows it as HTML). Both read the tags here (:func:`load_source_tags`,
:func:`tags_from_upload`), evaluate with the rules compiled from the configuration
(:func:`evaluate_rule`, :func:`evaluate_rules`) and decide with :func:`decision.decide`, the
router's own decision, so that what they show is what the router does.

::

    tags = SeriesTags(load_source_tags("1.2.840...", data_dir))
    report = evaluate_rules(config, compiled_rules, tags)
    report.rules       # per rule: value, tags used with their values, missing tags, error
    report.decision    # discard and why, route targets, processing chains, studies, notify
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.errors import InvalidDicomError

from mercure.core.config.models import MercureConfig, Rule
from mercure.core.datafolder import DataFolder, Stage
from mercure.core.dicomtags import TAGS_FILE, read_tags_file, tags_from_dicom
from mercure.core.errors import PermanentError
from mercure.core.mercuretags import parse_additional_tag
from mercure.core.rules.decision import Decision, decide
from mercure.core.rules.rule import CompiledRule
from mercure.core.rules.tags import SeriesTags


class SourceError(PermanentError):
    """What the rule test was asked to read has no tags (the message says what and why)."""


# --- where the tags come from --------------------------------------------------------------
def load_source_tags(
    source: str, data_dir: Path | None, additional: Iterable[str] = ()
) -> dict[str, str]:
    """The tags of a DICOM file, a tags.json, a series folder, or a series in incoming/.

    ``source`` that is not an existing path is taken as the SeriesInstanceUID of a series in
    ``<data_dir>/incoming/`` (when ``data_dir`` is given). ``additional``: the keys of
    ``router.additional_tags``, read from a DICOM file as the router reads them.
    """
    path = Path(source)
    if not path.exists() and data_dir is not None:
        path = incoming_series_folder(data_dir, source)
        if not path.exists():
            raise SourceError(f"{source}: no such file, folder, or series in {path.parent}")
    if path.is_dir():
        return series_folder_tags(path, additional)
    if path.suffix == ".json":
        tags = read_tags_file(path)
        if tags is None:
            raise SourceError(f"{path}: not a JSON object of tags")
        return tags
    return _dicom_tags(path, additional)


def incoming_series_tags(
    data_dir: Path, series_uid: str, additional: Iterable[str] = ()
) -> dict[str, str]:
    """The tags of the series ``series_uid`` waiting in incoming/, and nothing else: what a
    web browser may ask for (a UID is never taken as a path)."""
    folder = incoming_series_folder(data_dir, series_uid)
    if not folder.is_dir():
        raise SourceError(f"there is no series {series_uid[:200]!r} waiting in incoming/")
    return series_folder_tags(folder, additional)


def incoming_series_folder(data_dir: Path, series_uid: str) -> Path:
    """The folder of a series waiting in incoming/ (it may not exist).

    A UID that is not a plain folder name (``..``, a slash) names no series.
    """
    incoming = DataFolder(data_dir).stage(Stage.INCOMING)
    if not series_uid or series_uid in (".", "..") or "/" in series_uid or "\0" in series_uid:
        return incoming / "\N{REPLACEMENT CHARACTER}"  # never exists: a plain "not found"
    return incoming / series_uid


def series_folder_tags(folder: Path, additional: Iterable[str] = ()) -> dict[str, str]:
    """The tags of a series folder: its tags.json, else the first readable .dcm's; the
    ``additional`` tags that tags.json lacks from the first .dcm, as the router does."""
    wanted = tuple(additional)
    tags = read_tags_file(folder / TAGS_FILE)
    first = next(iter(sorted(folder.glob("*.dcm"))), None)
    if tags is None:
        if first is None:
            raise SourceError(f"{folder}: neither tags.json nor .dcm files in it")
        return _dicom_tags(first, wanted)
    keys = {parse_additional_tag(name)[1] for name in wanted}
    if first is not None and not keys <= tags.keys():
        try:
            extra = _dicom_tags(first, wanted)
        except SourceError:
            return tags  # tags.json is enough for the rest; the router says the same
        tags.update({key: extra[key] for key in keys - tags.keys() if key in extra})
    return tags


def tags_from_upload(
    data: bytes, name: str = "upload", additional: Iterable[str] = ()
) -> dict[str, str]:
    """The tags of a DICOM file given as bytes (an upload, never stored): the header only."""
    if not data:
        raise SourceError(f"{name}: the file is empty")
    try:
        return tags_from_dicom(io.BytesIO(data), name=name, additional=additional)
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise SourceError(f"{name}: not a readable DICOM file ({_short(exc)})") from None


def _dicom_tags(path: Path, additional: Iterable[str] = ()) -> dict[str, str]:
    try:
        return tags_from_dicom(path, additional=additional)
    except (InvalidDicomError, OSError, ValueError) as exc:
        raise SourceError(f"{path}: not a readable DICOM file ({exc})") from None


def _short(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "..."


# --- what the rules say ----------------------------------------------------------------------
@dataclass(frozen=True)
class RuleOutcome:
    """One rule against one series' tags.

    A disabled rule is not evaluated (``value`` False, nothing used). ``used`` holds each tag
    the rule read with its value, as keyed in the tags; ``missing`` the tag whose absence made
    the rule false; ``error`` why the rule failed while running (it then counts as false).
    """

    name: str
    source: str
    value: bool = False
    used: tuple[tuple[str, str], ...] = ()
    missing: tuple[str, ...] = ()
    error: str | None = None
    disabled: bool = False
    fallback: bool = False


@dataclass(frozen=True)
class ProcessingStep:
    """A processing task the decision makes: its rule, module chain and targets after it."""

    rule: str
    modules: tuple[str, ...]
    then_targets: tuple[str, ...]


@dataclass(frozen=True)
class DecisionReport:
    """What the router would do with the series (:class:`decision.Decision`, spelled out)."""

    discarded: bool
    reason: str
    fired: tuple[str, ...] = ()
    discard_rule: str | None = None
    route_rules: tuple[str, ...] = ()
    route_targets: tuple[str, ...] = ()
    processing: tuple[ProcessingStep, ...] = ()
    study_rules: tuple[str, ...] = ()
    notification_rules: tuple[str, ...] = ()
    errors: Mapping[str, str] = field(default_factory=dict)
    """Rules that failed while running, or acted differently than configured -> why."""


@dataclass(frozen=True)
class RuleTestReport:
    """Every configured rule against one series' tags, and the decision."""

    rules: tuple[RuleOutcome, ...]
    decision: DecisionReport


def evaluate_rule(
    rule: CompiledRule,
    tags: Mapping[str, str],
    *,
    name: str | None = None,
    fallback: bool = False,
) -> RuleOutcome:
    """Evaluate one compiled rule (or expression) against the tags."""
    result = rule.evaluate(tags)
    return RuleOutcome(
        name=name or rule.name or "rule",
        source=rule.source,
        value=result.value,
        used=tuple((keyword, tags.get(keyword, "")) for keyword in result.used_tags),
        missing=result.missing_tags,
        error=result.error,
        fallback=fallback,
    )


def evaluate_rules(
    config: MercureConfig, compiled: Mapping[str, CompiledRule], tags: Mapping[str, str]
) -> RuleTestReport:
    """Every configured rule in configuration order (disabled ones named, not evaluated),
    and what the router would do with a series with these tags."""
    prepared = tags if isinstance(tags, SeriesTags) else SeriesTags(tags)
    outcomes = []
    for name, rule in config.rules.items():
        if rule.disabled:
            outcomes.append(RuleOutcome(name, rule.rule, disabled=True, fallback=rule.fallback))
            continue
        compiled_rule = compiled.get(name)
        if compiled_rule is None:  # a valid configuration compiles every rule
            continue
        outcomes.append(evaluate_rule(compiled_rule, prepared, name=name, fallback=rule.fallback))
    decision = decide(config, compiled, prepared, has_study_uid="StudyInstanceUID" in prepared)
    return RuleTestReport(tuple(outcomes), describe_decision(decision, config.rules))


def describe_decision(decision: Decision, rules: Mapping[str, Rule]) -> DecisionReport:
    """The decision with what each fired rule does (modules, targets after processing)."""
    return DecisionReport(
        discarded=decision.discarded,
        reason=decision.reason,
        fired=tuple(decision.fired),
        discard_rule=decision.discard_rule,
        route_rules=tuple(decision.route_rules),
        route_targets=tuple(decision.route_targets),
        processing=tuple(
            ProcessingStep(name, tuple(rules[name].processing_module), tuple(rules[name].targets))
            for name in decision.processing_rules
        ),
        study_rules=tuple(decision.study_rules),
        notification_rules=tuple(decision.notification_rules),
        errors=dict(decision.errors),
    )


def replace_rule(
    config: MercureConfig,
    compiled: Mapping[str, CompiledRule],
    name: str,
    rule: Rule,
    compiled_rule: CompiledRule,
    *,
    replaces: str | None = None,
) -> tuple[MercureConfig, dict[str, CompiledRule]]:
    """The configuration with ``rule`` in place of the rule ``replaces`` (same position; a
    rename), or added at the end: for testing a rule being edited before it is saved."""
    old = replaces if replaces in config.rules else name if name in config.rules else None
    rules: dict[str, Rule] = {}
    rules_compiled: dict[str, CompiledRule] = {}
    for key, value in config.rules.items():
        if key == old:
            rules[name], rules_compiled[name] = rule, compiled_rule
        elif key != name:
            rules[key] = value
            if key in compiled:
                rules_compiled[key] = compiled[key]
    if old is None:
        rules[name], rules_compiled[name] = rule, compiled_rule
    return config.model_copy(update={"rules": rules}), rules_compiled
