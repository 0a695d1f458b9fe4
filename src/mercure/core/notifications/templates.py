"""Message templates: Jinja2 in a sandbox, over the fields of one notification.

The sandbox (:class:`jinja2.sandbox.ImmutableSandboxedEnvironment`) refuses attribute access to
internals (``__class__``, ``mro`` ...) and changes to the values; a template sees plain strings,
numbers, lists and dicts only, never a service's objects. Unknown fields are errors
(``StrictUndefined``), so a misspelt field is caught by ``check-config`` rather than becoming an
empty string in a message at 3 a.m.

Fields that identify a patient are empty unless the channel sets ``include_phi``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from jinja2 import StrictUndefined, TemplateError, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

PHI_FIELDS = (
    "patient_name",
    "patient_id",
    "patient_birth_date",
    "accession",
    "study_uid",
    "series_uid",
)
"""Fields that identify a patient or a study: empty strings unless the channel's include_phi."""

FIELDS: dict[str, str] = {
    "event": "reception, completion, error or test",
    "text": "one sentence saying what happened (no PHI)",
    "rule": "name of the rule",
    "task_id": "the task's id",
    "action": "the rule's action (route, process, both, notification, discard)",
    "priority": "urgent, normal or offpeak",
    "appliance": "appliance_name of this installation",
    "time": "when it happened (ISO 8601, UTC)",
    "link": "the task's page in the web interface (empty without notifier.web_url)",
    "modality": "Modality of the series",
    "study_description": "StudyDescription",
    "series_description": "SeriesDescription",
    "sender_aet": "calling AE title of the sender",
    "targets": "list of the task's target names",
    "modules": "list of the task's processing modules",
    "result": "the module's result.json (a dict; empty when none)",
    "details": "text a module asked to send (result.json __mercure_notification.text)",
    "requested": "whether a module requested the notification (true/false)",
    "reason": "why the task failed (error only; secrets masked)",
    "fail_stage": "stage the task failed in (error only)",
    "patient_name": "PatientName (PHI: only with include_phi)",
    "patient_id": "PatientID (PHI: only with include_phi)",
    "patient_birth_date": "PatientBirthDate (PHI: only with include_phi)",
    "accession": "AccessionNumber (PHI: only with include_phi)",
    "study_uid": "StudyInstanceUID (PHI: only with include_phi)",
    "series_uid": "SeriesInstanceUID (PHI: only with include_phi)",
}
"""Every field a template may use, with what it holds (docs/notifications.md lists them)."""

SAMPLE: dict[str, Any] = {
    "event": "completion",
    "text": "Task 20261204T101500000000Z-1a2b3c4d of rule ct_ai is complete.",
    "rule": "ct_ai",
    "task_id": "20261204T101500000000Z-1a2b3c4d",
    "action": "both",
    "priority": "normal",
    "appliance": "mercure",
    "time": "2026-12-04T10:15:00+00:00",
    "link": "https://mercure.example.org/queue/tasks/20261204T101500000000Z-1a2b3c4d",
    "modality": "CT",
    "study_description": "CT HEAD",
    "series_description": "AXIAL 5MM",
    "sender_aet": "CT01",
    "targets": ["pacs"],
    "modules": ["ai"],
    "result": {"finding": True},
    "details": "Finding: suspected bleed",
    "requested": True,
    "reason": "",
    "fail_stage": "",
    "patient_name": "DOE^JANE",
    "patient_id": "123456",
    "patient_birth_date": "19700101",
    "accession": "A1",
    "study_uid": "1.2.3",
    "series_uid": "1.2.3.4",
}
"""Values for checking a template before any notification exists (check-config, the web form)."""

MAX_RENDERED = 256 * 1024
"""Longest message a template may produce (a loop over a huge result is refused, not sent)."""


def _tojson(value: Any) -> str:
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    return json.dumps(value, ensure_ascii=False, default=str)


def _environment(*, autoescape: bool) -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        undefined=StrictUndefined, autoescape=autoescape, keep_trailing_newline=True
    )
    # A JSON body needs a value as JSON (quoted, escaped) whatever it holds.
    env.filters["tojson"] = _tojson
    return env


_PLAIN = _environment(autoescape=False)
_HTML = _environment(autoescape=True)


def template_fields(
    facts: Mapping[str, Any], *, include_phi: bool, web_url: str | None
) -> dict[str, Any]:
    """The fields a template sees: ``facts`` (from the queue file) with PHI blanked unless
    ``include_phi``, and the link built from ``web_url``."""
    fields = {name: facts.get(name, SAMPLE_EMPTY[name]) for name in FIELDS}
    if not include_phi:
        for name in PHI_FIELDS:
            fields[name] = ""
    task_id = fields["task_id"]
    fields["link"] = f"{web_url.rstrip('/')}/queue/tasks/{task_id}" if web_url and task_id else ""
    return fields


SAMPLE_EMPTY: dict[str, Any] = {
    name: []
    if isinstance(value, list)
    else {}
    if isinstance(value, dict)
    else False
    if isinstance(value, bool)
    else ""
    for name, value in SAMPLE.items()
}
"""The value of each field when a notification does not have it."""


class TemplateProblem(ValueError):
    """A template that cannot compile or render; the message says where."""


def render(template: str, fields: Mapping[str, Any], *, html: bool = False) -> str:
    """Render ``template`` over ``fields``; :class:`TemplateProblem` when it fails."""
    env = _HTML if html else _PLAIN
    try:
        text = env.from_string(template).render(dict(fields))
    except TemplateError as exc:
        line = getattr(exc, "lineno", None)
        where = f" (line {line})" if line else ""
        raise TemplateProblem(f"{exc.message or type(exc).__name__}{where}") from None
    except Exception as exc:  # a filter given a value it cannot take
        raise TemplateProblem(f"{type(exc).__name__}: {exc}") from None
    if len(text) > MAX_RENDERED:
        raise TemplateProblem(f"the message is longer than {MAX_RENDERED // 1024} KiB")
    return text


def check_template(template: str, *, html: bool = False) -> str | None:
    """What is wrong with a template (syntax, unknown field, sandbox refusal), or None."""
    try:
        render(template, SAMPLE, html=html)
    except TemplateProblem as exc:
        return str(exc)
    return None


def check_json_body(template: str) -> str | None:
    """For a JSON webhook body: whether the sample renders to valid JSON."""
    problem = check_template(template)
    if problem is not None:
        return problem
    try:
        json.loads(render(template, SAMPLE))
    except ValueError as exc:
        return f"the body is not valid JSON when rendered: {exc}"
    return None
