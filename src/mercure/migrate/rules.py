"""mercure's rules as mercure-router rules, and their notification settings as channels.

A rule keeps its text (the rule language is mercure's). Its ``notification_webhook`` and
``notification_email`` become channels ``<rule>-webhook`` and ``<rule>-email`` under
``notifications:``, listed in the rule's ``notification_channels``; installation-wide
``phi_notifications``, ``email_notification_from`` and ``webhook_certificate_location`` apply to
each of them.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mercure.migrate.report import ImportReport
from mercure.migrate.values import (
    as_mercure_bool,
    comment_of,
    env_name,
    mercure_names,
    settings_without_secrets,
)

MERCURE_FORCE_ACTION = "discard"
"""mercure's default ``study_force_completion_action`` (its Rule model); ours is ``proceed``."""

_FLAGS = frozenset(
    {
        "disabled",
        "fallback",
        "processing_retain_images",
        "notification_trigger_reception",
        "notification_trigger_completion",
        "notification_trigger_completion_on_request",
        "notification_trigger_error",
    }
)
_LEGACY_PLACEHOLDER = re.compile(r"@([A-Za-z_][A-Za-z0-9_]*)@")
_MERCURE_ONLY_TEMPLATE_NAMES = {"mrn": "patient_id", "acc": "accession"}


@dataclass
class RuleContext:
    """What converting a rule needs beside the rule: the report, the installation-wide settings,
    the converted names of targets and modules, and the channels made so far."""

    report: ImportReport
    settings: Mapping[str, Any]
    target_names: dict[str, str] = dataclasses.field(default_factory=dict)
    module_names: dict[str, str] = dataclasses.field(default_factory=dict)
    channels: dict[str, Any] = dataclasses.field(default_factory=dict)


def _template(text: str) -> str:
    """A mercure notification template in our Jinja2 dialect.

    mercure's older ``@rule@`` placeholders become ``{{ rule }}``; its ``mrn`` and ``acc`` are
    our ``patient_id`` and ``accession`` (set at the top so the text stays as written).
    """
    text = _LEGACY_PLACEHOLDER.sub(lambda m: "{{ " + m.group(1) + " }}", text)
    prefix = "".join(
        f"{{% set {old} = {new} %}}"
        for old, new in _MERCURE_ONLY_TEMPLATE_NAMES.items()
        if re.search(rf"\b{old}\b", text)
    )
    return prefix + text


def convert_rule(
    context: RuleContext, prefix: str, name: str, source: dict[str, Any]
) -> dict[str, Any]:
    """The rule ``source`` (at ``prefix`` in the input) as rule ``name``, with its channels."""
    report = context.report
    to = f"rules.{name}"
    out: dict[str, Any] = {"rule": str(source.get("rule", "False"))}
    same = (
        "disabled",
        "fallback",
        "action",
        "action_trigger",
        "study_trigger_condition",
        "study_trigger_series",
        "priority",
        "processing_retain_images",
        "notification_trigger_reception",
        "notification_trigger_completion",
        "notification_trigger_completion_on_request",
        "notification_trigger_error",
    )
    notification_fields = (
        "notification_email",
        "notification_webhook",
        "notification_payload",
        "notification_payload_body",
        "notification_email_body",
        "notification_email_type",
    )
    for field, value in source.items():
        where = f"{prefix}.{field}"
        if field == "rule":
            report.mapped(where, f"{to}.rule")
        elif field in same:
            # Older mercure versions wrote the flags as "True"/"False".
            out[field] = as_mercure_bool(value) if field in _FLAGS else value
            report.mapped(where, f"{to}.{field}")
        elif field == "target":
            targets = []
            for target in mercure_names(value):
                if target in context.target_names:
                    targets.append(context.target_names[target])
                else:
                    report.dropped(f"{where}.{target}", "no such target in the converted targets")
            if targets:
                out["targets"] = targets
            report.mapped(where, f"{to}.targets")
        elif field == "processing_module":
            modules = [context.module_names.get(m, m) for m in mercure_names(value)]
            if modules:
                out["processing_module"] = modules
            report.mapped(where, f"{to}.processing_module")
        elif field == "processing_settings":
            if value:
                out["processing_settings"] = settings_without_secrets(
                    report, value, where, f"{to}.processing_settings", "RULE", name
                )
            report.mapped(where, f"{to}.processing_settings", "secret-looking values as ${ENV}")
        elif field == "study_force_completion_action":
            out["study_force_action"] = value or MERCURE_FORCE_ACTION
            report.mapped(where, f"{to}.study_force_action")
        elif field == "dynamic_routing":
            out[field] = as_mercure_bool(value)
            report.mapped(where, f"{to}.{field}")
        elif field == "dynamic_routing_allowed_targets":
            allowed = [context.target_names.get(t, t) for t in mercure_names(value)]
            if allowed:
                out[field] = allowed
            report.mapped(where, f"{to}.{field}")
        elif field == "conditional_alternate_target":
            report.dropped(
                where,
                "mercure-router has no alternate target: a module names the target itself "
                "(__mercure_routing.target), allowed by dynamic_routing_allowed_targets",
            )
        elif field == "tags":
            report.mapped(where, f"{to}.comment", "kept in the comment")
        elif field in notification_fields or field in ("comment", "contact"):
            continue
        else:
            report.dropped(where, "not a field of a mercure rule")
    if "study_force_completion_action" not in source:
        out["study_force_action"] = MERCURE_FORCE_ACTION
        report.changed(
            f"{prefix}.study_force_completion_action",
            f"{to}.study_force_action",
            f"absent: mercure's default on forced study completion is {MERCURE_FORCE_ACTION}, "
            "mercure-router's is proceed: written explicitly",
        )
    comment = comment_of(report, prefix, source, to)
    if source.get("tags"):
        comment = "; ".join(filter(None, [comment, f"tags: {source['tags']}"]))
    if comment:
        out["comment"] = comment
    channels = _rule_channels(context, prefix, name, source)
    if channels:
        out["notification_channels"] = channels
    return out


def _rule_channels(
    context: RuleContext, prefix: str, name: str, source: dict[str, Any]
) -> list[str]:
    """Channels under ``notifications:`` for the rule's webhook and e-mail settings."""
    report = context.report
    channels = context.channels
    include_phi = as_mercure_bool(context.settings.get("phi_notifications", False))
    made: list[str] = []
    webhook = source.get("notification_webhook")
    payload_body = source.get("notification_payload_body") or ""
    payload = source.get("notification_payload") or ""
    if webhook:
        channel = f"{name}-webhook"[:64]
        to = f"notifications.{channel}"
        variable = env_name("NOTIFY", name, "webhook_url")
        entry: dict[str, Any] = {
            "type": "webhook",
            "url": report.secret(variable, f"{prefix}.notification_webhook", f"{to}.url"),
            "include_phi": include_phi,
        }
        if payload_body:
            entry["body"] = _template(payload_body)
        elif payload:
            entry["body"] = "{" + _template(payload) + "}"
        certificate = context.settings.get("webhook_certificate_location")
        if certificate:
            entry["ca_certificate"] = certificate
        channels[channel] = entry
        made.append(channel)
        report.mapped(f"{prefix}.notification_webhook", to, f"url as ${{{variable}}}")
        for field, note in (
            ("notification_payload_body", "the body template"),
            ("notification_payload", "mercure's older payload, wrapped in braces"),
        ):
            if field in source:
                report.mapped(f"{prefix}.{field}", f"{to}.body", note)
    else:
        for field in (
            "notification_webhook",
            "notification_payload_body",
            "notification_payload",
        ):
            if field in source:
                report.mapped(f"{prefix}.{field}", "", "empty: no webhook channel")
    email = source.get("notification_email")
    if email:
        channel = f"{name}-email"[:64]
        to = f"notifications.{channel}"
        entry = {
            "type": "email",
            "host": "localhost",
            "port": 25,
            "security": "none",
            "sender": str(
                context.settings.get("email_notification_from") or "mercure@mercure.mercure"
            ),
            "to": mercure_names(email),
            "include_phi": include_phi,
            "html": source.get("notification_email_type", "plain") == "html",
        }
        if source.get("notification_email_body"):
            entry["body"] = _template(source["notification_email_body"])
        channels[channel] = entry
        made.append(channel)
        report.changed(
            f"{prefix}.notification_email",
            to,
            "mercure hands mail to the local mail server: host localhost, port 25, no TLS "
            "written; point it at your SMTP server",
        )
        for field in ("notification_email_body", "notification_email_type"):
            if field in source:
                report.mapped(
                    f"{prefix}.{field}", f"{to}.body" if "body" in field else f"{to}.html"
                )
    else:
        for field in (
            "notification_email",
            "notification_email_body",
            "notification_email_type",
        ):
            if field in source:
                report.mapped(f"{prefix}.{field}", "", "empty: no e-mail channel")
    return made
