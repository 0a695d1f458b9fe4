"""Reading, validating and saving `mercure.yaml`.

Validation reports every problem at once, each with its key path
(``rules.ct_head.targets[0]: unknown target 'pacs2'``). Strings may name environment variables
(``password: ${PACS_PASSWORD}``) so that secrets stay out of the file; the file itself keeps the
reference, and a save never writes a resolved secret.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from mercure.core.config.models import FolderTarget, MercureConfig
from mercure.core.config.sourcecheck import source_issues
from mercure.core.config.urls import CREDENTIALS_ERROR, SECRET_URL_ERROR
from mercure.core.errors import ConfigError, ConfigIssue
from mercure.core.masking import register_config

ENV_VARIABLE = "MERCURE_CONFIG"
DEFAULT_FILE = "mercure.yaml"
SECRET_KEYS = frozenset({"password", "token", "secret_access_key", "api_key", "session_secret"})
"""Keys of the settings that hold secrets (their values are never echoed in errors)."""
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$\$")


@dataclass(frozen=True)
class LoadedConfig:
    """A validated configuration with where it came from and its compiled rules."""

    path: Path
    config: MercureConfig
    raw: dict[str, Any]
    compiled_rules: Mapping[str, Any] = field(default_factory=dict)
    module_environment_secrets: tuple[str, ...] = ()
    """Values that ``${VAR}`` references gave to modules' ``environment`` (masked as secrets)."""
    rule_errors: Mapping[str, str] = field(default_factory=dict)
    """Rules whose expression does not compile, by name, with the reason and what happens
    instead: a disabled rule stays disabled; in a running service (a reload) the previous
    version of the rule stays in force, or the rule never fires if it has none. Every other
    rule that does not compile makes the whole configuration invalid."""


def default_config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """``--config`` if given, else ``$MERCURE_CONFIG``, else ``./mercure.yaml``."""
    if explicit:
        return Path(explicit)
    return Path(os.environ.get(ENV_VARIABLE) or DEFAULT_FILE)


def parse_document(text: str, source: str) -> dict[str, Any]:
    """Parse YAML or JSON text into a mapping; syntax errors name the line and column."""
    try:
        if source.endswith(".json"):
            document = json.loads(text) if text.strip() else {}
        else:
            document = yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            source, [ConfigIssue("", f"JSON syntax error at line {exc.lineno}: {exc.msg}")]
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(
            source, [ConfigIssue("", f"YAML syntax error{where}: {problem}")]
        ) from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ConfigError(source, [ConfigIssue("", "the file must hold a mapping of keys")])
    return document


def validate_document(
    raw: Mapping[str, Any],
    *,
    source: str = "<config>",
    base_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
    previous: LoadedConfig | None = None,
) -> LoadedConfig:
    """Validate a parsed document; raise :class:`ConfigError` listing every issue.

    A rule whose expression does not compile is an issue unless the rule is disabled, or
    ``previous`` (the configuration a running service has in force) is given: then the rest
    loads, and :attr:`LoadedConfig.rule_errors` says what became of that rule.
    """
    issues: list[ConfigIssue] = []
    substituted: list[tuple[tuple[str | int, ...], str]] = []
    expanded = _expand_env(
        raw, environ if environ is not None else os.environ, (), issues, substituted
    )
    if issues:
        raise ConfigError(source, issues)
    # Report everything at once: structure (pydantic), then references and rule syntax, which
    # are checked on the document itself so that they need no structurally valid file.
    config: MercureConfig | None = None
    try:
        config = MercureConfig.model_validate(expanded)
    except ValidationError as exc:
        issues.extend(_issues_from_pydantic(exc, expanded))
    issues.extend(_reference_issues(expanded))
    compiled, failures = _compile_rules(expanded)
    rule_errors: dict[str, str] = {}
    for name, (issue, reason) in failures.items():
        outcome = _tolerated_rule_failure(name, expanded, previous)
        if outcome is None:
            issues.append(issue)
            continue
        kept, what = outcome
        compiled[name] = kept if kept is not None else _failed_rule(expanded, name, reason)
        rule_errors[name] = f"{issue.message}; {what}"
    if config is not None:
        issues.extend(_module_policy_issues(config))
        issues.extend(_template_issues(config))
        issues.extend(source_issues(config))
    if issues or config is None:
        raise ConfigError(source, issues)
    if base_dir is not None:
        config = _resolve_relative_paths(config, base_dir)
    return LoadedConfig(
        path=Path(source),
        config=config,
        raw=dict(raw),
        compiled_rules=compiled,
        rule_errors=rule_errors,
        module_environment_secrets=tuple(
            value
            for path, value in substituted
            if len(path) == 4 and path[0] == "modules" and path[2] == "environment"
        ),
    )


def _resolve_relative_paths(config: MercureConfig, base_dir: Path) -> MercureConfig:
    """Relative local folders mean beside the configuration file, not the current folder."""
    update: dict[str, Any] = {}
    if not config.data_dir.is_absolute():
        update["data_dir"] = (base_dir / config.data_dir).resolve()
    targets = dict(config.targets)
    for name, target in config.targets.items():
        if isinstance(target, FolderTarget) and not target.folder.is_absolute():
            targets[name] = target.model_copy(
                update={"folder": (base_dir / target.folder).resolve()}
            )
    if targets != config.targets:
        update["targets"] = targets
    webgui = config.webgui
    tls = {
        key: (base_dir / path).resolve()
        for key, path in (("tls_certificate", webgui.tls_certificate), ("tls_key", webgui.tls_key))
        if path is not None and not path.is_absolute()
    }
    if tls:
        update["webgui"] = webgui.model_copy(update=tls)
    return config.model_copy(update=update) if update else config


def load_config(
    path: str | os.PathLike[str] | None = None, *, previous: LoadedConfig | None = None
) -> LoadedConfig:
    """Read and validate the configuration file (see :func:`default_config_path`).

    ``previous``: the configuration a running service has in force (a reload); a rule that
    no longer compiles then keeps its previous version (see :func:`validate_document`).
    """
    config_path = default_config_path(path)
    try:
        text = config_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            str(config_path),
            [ConfigIssue("", "file not found (create one with `mercure init`)")],
        ) from None
    except OSError as exc:
        raise ConfigError(str(config_path), [ConfigIssue("", f"cannot read: {exc}")]) from None
    raw = parse_document(text, str(config_path))
    loaded = validate_document(
        raw, source=str(config_path), base_dir=config_path.resolve().parent, previous=previous
    )
    # The configuration this process runs with: from now on its secrets are masked everywhere.
    register_config(loaded.config, loaded.module_environment_secrets)
    return dataclasses.replace(loaded, path=config_path.resolve())


def expand_env(
    node: Any, environ: Mapping[str, str] | None = None, path: tuple[str | int, ...] = ()
) -> tuple[Any, list[ConfigIssue]]:
    """``node`` with every ``${VAR}`` replaced from ``environ`` (default: this process's
    environment), as loading does; the variables that are not set, each at its key path."""
    issues: list[ConfigIssue] = []
    expanded = _expand_env(node, os.environ if environ is None else environ, path, issues, [])
    return expanded, issues


def _expand_env(
    node: Any,
    environ: Mapping[str, str],
    path: tuple[str | int, ...],
    issues: list[ConfigIssue],
    substituted: list[tuple[tuple[str | int, ...], str]],
) -> Any:
    if isinstance(node, str):

        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name = match.group(1)
            if name not in environ:
                issues.append(
                    ConfigIssue(format_path(path), f"environment variable {name} is not set")
                )
                return ""
            substituted.append((path, environ[name]))
            return environ[name]

        return _ENV_REFERENCE.sub(replace, node) if "$" in node else node
    if isinstance(node, Mapping):
        return {
            key: _expand_env(value, environ, (*path, key), issues, substituted)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [
            _expand_env(value, environ, (*path, i), issues, substituted)
            for i, value in enumerate(node)
        ]
    return node


def format_path(loc: Sequence[str | int]) -> str:
    """Render a location as ``rules.ct_head.targets[0]``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _issues_from_pydantic(exc: ValidationError, document: Any) -> list[ConfigIssue]:
    issues = []
    for error in exc.errors():
        loc = _document_location(error["loc"], document)
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        elif error["type"] == "missing":
            message = "required key is missing"
        elif _is_target(loc) and error["type"] in ("union_tag_invalid", "union_tag_not_found"):
            message = _target_type_message(error)
        message = message.removeprefix("Value error, ")
        # Never repeat a refused URL: it holds the very credentials it was refused for.
        echo = error["type"] not in (
            "extra_forbidden",
            "missing",
            CREDENTIALS_ERROR,
            SECRET_URL_ERROR,
        )
        if echo and not _is_secret_key(loc) and "input" in error:
            value = error["input"]
            if isinstance(value, str | int | float | bool) and len(str(value)) < 80:
                message = f"{message} (got {value!r})"
        issues.append(ConfigIssue(format_path(loc), message))
    return issues


def _is_target(loc: Sequence[str | int]) -> bool:
    return len(loc) == 2 and loc[0] == "targets"


def _target_type_message(error: Any) -> str:
    """An unknown or missing target ``type``, with the installed types to choose from."""
    from mercure.core.config.targettypes import installed_types, unknown_type_message

    kind = error.get("input", {}).get("type") if isinstance(error.get("input"), dict) else None
    if kind is None:
        return f"`type` is missing; the installed types are: {', '.join(installed_types())}"
    return unknown_type_message(kind)


def _is_secret_key(loc: Sequence[str | int]) -> bool:
    """Whether a location names a secret setting, whose value an error must not repeat."""
    return bool(loc) and isinstance(loc[-1], str) and loc[-1] in SECRET_KEYS


def _document_location(loc: Sequence[str | int], document: Any) -> list[str | int]:
    """Drop pydantic's union tags from ``loc`` by walking the real document along it."""
    path: list[str | int] = []
    node = document
    tag_seen: Any = None
    for part in loc:
        # A union's tag comes first under its object, even when a key has the same name
        # (a folder target's `folder`): skip it once there.
        tags = (node.get("type"), node.get("runner")) if isinstance(node, Mapping) else ()
        if tag_seen is not node and part in tags:
            tag_seen = node
            continue
        if isinstance(node, Mapping | list) and _has_child(node, part):
            node = node[part]  # type: ignore[index]
            path.append(part)
        elif not _is_union_tag(part, node):
            path.append(part)
            node = None
    return path


def _has_child(node: Mapping[str, Any] | list[Any], part: str | int) -> bool:
    if isinstance(node, Mapping):
        return part in node
    return isinstance(part, int) and part < len(node)


def _is_union_tag(part: str | int, node: Any) -> bool:
    """pydantic adds the discriminator value or a validator name for union members."""
    if isinstance(node, Mapping) and part in (node.get("type"), node.get("runner")):
        return True
    return isinstance(part, str) and (part.startswith("function-") or part[:1].isupper())


def _named_entries(document: Mapping[str, Any], key: str) -> dict[str, Any]:
    section = document.get(key)
    return section if isinstance(section, dict) else {}


def _names(value: Any) -> list[Any]:
    if isinstance(value, str):
        return [value] if value else []
    return value if isinstance(value, list) else []


def _compile_rules(
    document: Mapping[str, Any],
) -> tuple[dict[str, Any], dict[str, tuple[ConfigIssue, str]]]:
    """The compiled rules, and for each rule that does not compile its issue and reason."""
    rules = {
        name: rule["rule"]
        for name, rule in _named_entries(document, "rules").items()
        if isinstance(rule, dict) and isinstance(rule.get("rule"), str)
    }
    if not rules:
        return {}, {}
    from mercure.core.rules import RuleSyntaxError, compile_rule

    compiled: dict[str, Any] = {}
    failures: dict[str, tuple[ConfigIssue, str]] = {}
    for name, source in rules.items():
        try:
            compiled[name] = compile_rule(source, name=name)
        except RuleSyntaxError as exc:
            failures[name] = (ConfigIssue(f"rules.{name}.rule", str(exc)), exc.message)
    return compiled, failures


def _tolerated_rule_failure(
    name: str, document: Mapping[str, Any], previous: LoadedConfig | None
) -> tuple[Any, str] | None:
    """What to run instead of a rule that does not compile, and what to tell about it; None
    if the failure makes the configuration invalid (an enabled rule, at start-up)."""
    rule = _named_entries(document, "rules").get(name)
    if isinstance(rule, dict) and rule.get("disabled") is True:
        return None, "the rule is disabled; the rest of the configuration loads"
    if previous is None:
        return None
    from mercure.core.rules import FailedRule

    kept = previous.compiled_rules.get(name)
    if kept is not None and not isinstance(kept, FailedRule):
        shown = " ".join(kept.source.split())
        shown = shown if len(shown) <= 200 else shown[:200] + "..."
        return kept, f"the previous version of the rule stays in force: {shown}"
    return None, "the rule never fires until it is fixed (it has no previous version)"


def _failed_rule(document: Mapping[str, Any], name: str, reason: str) -> Any:
    from mercure.core.rules import FailedRule

    return FailedRule(_named_entries(document, "rules")[name]["rule"], name, reason)


def _reference_issues(document: Mapping[str, Any]) -> list[ConfigIssue]:
    """Rules must name targets and modules that exist."""
    issues = []
    targets = _named_entries(document, "targets")
    modules = _named_entries(document, "modules")
    channels = _named_entries(document, "notifications")
    for name, rule in _named_entries(document, "rules").items():
        if not isinstance(rule, dict):
            continue
        key = "target" if "target" in rule and "targets" not in rule else "targets"
        references = (
            (key, "target", targets),
            ("dynamic_routing_allowed_targets", "target", targets),
            ("processing_module", "module", modules),
            ("notification_channels", "notification channel", channels),
        )
        for key_name, what, known in references:
            for i, item in enumerate(_names(rule.get(key_name))):
                if isinstance(item, str) and item not in known:
                    issues.append(
                        ConfigIssue(f"rules.{name}.{key_name}[{i}]", f"unknown {what} '{item}'")
                    )
        required = rule.get("study_trigger_series")
        if isinstance(required, str) and required.strip():
            issues.extend(_required_series_issues(f"rules.{name}.study_trigger_series", required))
        if rule.get("study_trigger_condition") == "received_series" and not rule.get(
            "study_trigger_series"
        ):
            issues.append(
                ConfigIssue(
                    f"rules.{name}.study_trigger_series",
                    "required when study_trigger_condition is 'received_series'",
                )
            )
    return issues


def _required_series_issues(path: str, source: str) -> list[ConfigIssue]:
    """A study rule's required series are a small language of their own: check its syntax."""
    from mercure.core.rules.required import RequiredSeriesError, parse_required_series

    try:
        parse_required_series(source)
    except RequiredSeriesError as exc:
        return [ConfigIssue(path, str(exc))]
    return []


def _module_policy_issues(config: MercureConfig) -> list[ConfigIssue]:
    """Modules may only ask for what the processing section allows."""
    from mercure.core.config.modulecheck import docker_argument_issues, rule_settings_issues

    issues = rule_settings_issues(config)
    for name, module in config.modules.items():
        issues.extend(
            settings_schema_issues(f"modules.{name}", module.settings, module.settings_schema)
        )
        issues.extend(
            docker_argument_issues(
                f"modules.{name}.docker_arguments", getattr(module, "docker_arguments", {})
            )
        )
        if getattr(module, "requires_root", False) and not config.processing.allow_root:
            issues.append(
                ConfigIssue(
                    f"modules.{name}.requires_root",
                    "module needs root but processing.allow_root is false",
                )
            )
        for i, volume in enumerate(getattr(module, "volumes", [])):
            root = config.processing.volume_root
            if root is None or not volume.source.resolve().is_relative_to(root.resolve()):
                issues.append(
                    ConfigIssue(
                        f"modules.{name}.volumes[{i}].source",
                        f"{volume.source} is not under processing.volume_root ({root})",
                    )
                )
    return issues


def _template_issues(config: MercureConfig) -> list[ConfigIssue]:
    """Every notification template compiles and renders over sample fields (an unknown field
    or a sandbox refusal is an error now, not a failed notification later)."""
    from mercure.core.notifications.templates import check_json_body, check_template

    issues = []
    for name, channel in config.notifications.items():
        html = getattr(channel, "html", False)
        for key in ("subject", "title", "body"):
            template = getattr(channel, key, None)
            if template is None:
                continue
            if key == "body" and channel.type == "webhook" and "json" in channel.content_type:
                problem = check_json_body(template)
            else:
                problem = check_template(template, html=html and key == "body")
            if problem is not None:
                issues.append(ConfigIssue(f"notifications.{name}.{key}", problem))
    return issues


MAX_SCHEMA_ISSUES = 20


def settings_schema_issues(
    where: str, settings: Mapping[str, Any], schema: Mapping[str, Any] | None
) -> list[ConfigIssue]:
    """Whether ``schema`` is a JSON Schema and ``settings`` satisfy it; the problems, each at
    its key path under ``where`` (``modules.seg.settings.threshold``)."""
    if schema is None:
        return []
    # Imported here: only configurations with a schema pay for it.
    import jsonschema

    validator_class = jsonschema.validators.validator_for(schema, jsonschema.Draft202012Validator)
    try:
        validator_class.check_schema(schema)
    except jsonschema.SchemaError as exc:
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in exc.path)
        return [ConfigIssue(f"{where}.settings_schema{path}", f"not a JSON Schema: {exc.message}")]
    issues = []
    for error in validator_class(schema).iter_errors(dict(settings)):
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        issues.append(ConfigIssue(f"{where}.settings{path}", error.message))
        if len(issues) >= MAX_SCHEMA_ISSUES:
            break
    return issues
