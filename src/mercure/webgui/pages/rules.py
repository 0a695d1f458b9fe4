"""The Rules page: the list, the editor with live validation, and the live tester.

- ``GET /rules``: every rule in configuration order: enabled or not, action, targets, module
  chain, priority, fallback, and how many tasks it selected in the last 24 hours (from the
  bookkeeper; "unknown" while it does not answer). Admins create, edit, duplicate,
  disable/enable and delete (after a confirmation page that warns about studies still being
  collected for the rule).
- ``GET /rules/new``, ``GET /rules/{name}/edit``: the editor, one control per field of the
  rule (named as in mercure.yaml); viewers and operators see it read-only, without a save
  button, and their POST is refused (403). Beside it: the tag keywords and the functions and
  methods of the rule language (from the code, :mod:`mercure.core.rules.reference`).
- ``POST /rules/check``: the expression, checked as you type (htmx, 300 ms after the last key)
  by the compiler every configuration load uses: "valid", or the error with a caret under its
  column.
- ``POST /rules/test``: the live tester: the rule being edited and every configured rule
  (the edited one in place of its saved version, unsaved) against a series waiting in
  incoming/, a series the bookkeeper recorded, or an uploaded DICOM file (read from memory,
  header only, never stored), with the decision the router would take
  (:mod:`mercure.core.rules.ruletest`, what ``mercure rule-test`` prints).

Every change goes through :func:`mercure.webgui.configedit.save_edit`: validated as
``check-config`` validates, refused if the file changed since the form was opened, saved
atomically with history, audited, applied at once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from mercure.core.config.editing import ConfigFile, Document
from mercure.core.config.loader import validate_document
from mercure.core.config.models import MercureConfig
from mercure.core.datafolder import Stage
from mercure.core.dicomtags import TAGS_FILE, read_tags_file
from mercure.core.errors import ConfigError, MercureError
from mercure.core.rules import CompiledRule, RuleSyntaxError, SeriesTags, compile_rule
from mercure.core.rules.reference import helpers, search_tag_keywords
from mercure.core.rules.ruletest import (
    RuleOutcome,
    RuleTestReport,
    SourceError,
    evaluate_rule,
    evaluate_rules,
    incoming_series_tags,
    replace_rule,
    tags_from_upload,
)
from mercure.core.studies import study_names
from mercure.webgui.auth import AdminSession, ViewerSession
from mercure.webgui.bookkeeper import BookkeeperError, SeriesRecord
from mercure.webgui.configedit import (
    EditRefused,
    current_config,
    save_edit,
    save_then_redirect,
)
from mercure.webgui.context import web_context
from mercure.webgui.flash import clear_flash, redirect_with, take_flash
from mercure.webgui.rendering import render, url
from mercure.webgui.roles import Role
from mercure.webgui.rules import (
    ACTION_HELP,
    ACTIONS,
    FORCE_ACTIONS,
    MODULE_SLOTS,
    PRIORITIES,
    STUDY_CONDITIONS,
    TRIGGERS,
    RuleForm,
    copy_name,
    edited_rule,
    form_from_rule,
    issues_by_field,
    parse_form,
    rule_rows,
    rule_value,
)
from mercure.webgui.sessions import Session

router = APIRouter()

NOTIFICATION_ROWS = (
    ("notification_trigger_reception", "reception", "a series is selected (task created)"),
    ("notification_trigger_completion", "completion", "the task is complete"),
    (
        "notification_trigger_completion_on_request",
        "",
        "complete, if a module's result asks for it",
    ),
    ("notification_trigger_error", "error", "the task failed"),
)
"""The editor's notification triggers: field, its ``notification_urgent_only`` name, label."""

MAX_TEST_REQUEST = 1 << 20
"""Largest tester request read: Starlette keeps an uploaded file in memory up to 1 MiB and
would spool a larger one to a temporary file; an upload is never stored, so it stops here."""
MAX_UPLOAD = MAX_TEST_REQUEST - (64 << 10)
"""Largest DICOM file the tester takes (a rule needs only the header)."""
MAX_FORM_FIELDS = 200
RECENT_SERIES = 20
"""Series offered to the tester from the bookkeeper and from incoming/ (each)."""


def _may_edit(session: Session | None) -> bool:
    return session is not None and session.role.allows(Role.ADMIN)


def _with_flash(request: Request, template: str, context: dict[str, Any], **kw: Any) -> Response:
    flash = take_flash(request)
    response = render(request, template, {**context, "flash": flash}, **kw)
    clear_flash(request, response)
    return response


async def _form(request: Request, *, files: int = 0) -> FormData:
    """The posted form (only the tester takes a file: ``files=1``)."""
    return await request.form(max_files=files, max_fields=MAX_FORM_FIELDS)


def _text(form: FormData, key: str) -> str:
    value = form.get(key)
    return value if isinstance(value, str) else ""


@dataclass
class _Current:
    """The configuration file as it is now: its version, its document (rules as written) and
    the configuration it gives with its compiled rules."""

    file: ConfigFile
    document: Document
    config: MercureConfig
    compiled: dict[str, CompiledRule]
    problem: str = ""


def _current(request: Request) -> _Current:
    """Read the file; if it cannot be read or is not valid now (a hand edit under way), show
    the configuration in force and say so (a save is then refused by ``save_edit``)."""
    try:
        config_file, document = current_config(request)
        loaded = validate_document(
            document.plain(), source=str(config_file.path), base_dir=config_file.path.parent
        )
    except (ConfigError, EditRefused) as exc:
        reason = exc.issues[0] if isinstance(exc, ConfigError) and exc.issues else exc
        return _in_force(request, f"The configuration file cannot be used now ({reason})")
    return _Current(config_file, document, loaded.config, dict(loaded.compiled_rules))


def _in_force(request: Request, why: str) -> _Current:
    """The configuration the web interface runs with, when the file is not usable."""
    web = web_context(request)
    config = web.config
    compiled = {}
    for name, rule in config.rules.items():
        try:
            compiled[name] = compile_rule(rule.rule, name=name)
        except RuleSyntaxError:
            continue
    path = web.config_path or Path("mercure.yaml")
    problem = (
        f"{why}; this page shows the configuration in force, and saving waits until the file "
        "is fixed."
    )
    return _Current(ConfigFile(path, "", ""), Document(""), config, compiled, problem)


# --- the list ----------------------------------------------------------------------------
async def _hits(request: Request) -> dict[str, tuple[int, int]] | None:
    try:
        found = await web_context(request).bookkeeper.rule_hits()
    except BookkeeperError as exc:
        request.state.bookkeeper_problem = str(exc)
        return None
    return {hit.rule: (hit.tasks, hit.series) for hit in found.rules}


def _collecting(request: Request) -> dict[str, int]:
    """Rule -> how many studies are being collected for it in studies/."""
    counts: dict[str, int] = {}
    for name in study_names(web_context(request).data):
        _uid, _, rule = name.rpartition("#")
        if rule:
            counts[rule] = counts.get(rule, 0) + 1
    return counts


@router.get("/rules", name="rules")
async def rules_page(request: Request, session: ViewerSession) -> Response:
    """Every rule with what it does and how often it fired in the last 24 hours."""
    current = _current(request)
    hits = await _hits(request)
    collecting = await run_in_threadpool(_collecting, request)
    context = {
        "rows": rule_rows(current.config, hits),
        "hits_known": hits is not None,
        "collecting": collecting,
        "version": current.file.version,
        "may_edit": _may_edit(session),
        "config_problem": current.problem,
    }
    return _with_flash(request, "rules/list.html", context)


# --- the editor ----------------------------------------------------------------------------
@dataclass
class _Sources:
    """Series the tester can be pointed at."""

    incoming: list[dict[str, str]]
    recorded: list[SeriesRecord] | None


def _incoming_series(request: Request) -> list[dict[str, str]]:
    """The newest series folders in incoming/ with what identifies them to a person."""
    folder = web_context(request).data.stage(Stage.INCOMING)
    try:
        entries = [e for e in os.scandir(folder) if e.is_dir() and not e.name.startswith(".")]
    except FileNotFoundError:
        return []
    entries.sort(key=lambda e: e.stat().st_mtime, reverse=True)
    found = []
    for entry in entries[:RECENT_SERIES]:
        tags = read_tags_file(folder / entry.name / TAGS_FILE) or {}
        found.append(
            {
                "uid": entry.name,
                "modality": tags.get("Modality", ""),
                "description": tags.get("SeriesDescription", ""),
                "sender": tags.get("SenderAET", ""),
            }
        )
    return found


async def _sources(request: Request) -> _Sources:
    incoming = await run_in_threadpool(_incoming_series, request)
    recorded: list[SeriesRecord] | None = None
    try:
        recorded = (await web_context(request).bookkeeper.search_series(limit=RECENT_SERIES)).items
    except BookkeeperError as exc:
        request.state.bookkeeper_problem = str(exc)
    return _Sources(incoming, recorded)


async def _editor(
    request: Request,
    session: Session,
    current: _Current,
    form: RuleForm,
    *,
    original: str | None,
    version: str,
    status_code: int = 200,
    problem: str = "",
) -> Response:
    """The editor page for ``form`` (``original``: the saved rule's name, None for a new one)."""
    config = current.config
    target_names = list(config.targets)
    module_names = list(config.modules)
    chain = list(form.processing_module)
    missing_channels = [c for c in form.notification_channels if c not in config.notifications]
    context = {
        "form": form,
        "original": original,
        "version": version,
        "may_edit": _may_edit(session),
        "problem": problem or form.errors.get("form", ""),
        "targets": target_names + [t for t in form.targets if t not in config.targets],
        "missing_targets": [t for t in form.targets if t not in config.targets],
        "module_slots": chain + [""] * MODULE_SLOTS,
        "modules": module_names,
        "missing_modules": [m for m in chain if m not in config.modules],
        "channels": list(config.notifications) + missing_channels,
        "missing_channels": missing_channels,
        "notification_triggers": NOTIFICATION_ROWS,
        "module_defaults": {
            name: module.settings for name, module in config.modules.items() if module.settings
        },
        "actions": ACTIONS,
        "action_help": ACTION_HELP,
        "triggers": TRIGGERS,
        "study_conditions": STUDY_CONDITIONS,
        "force_actions": FORCE_ACTIONS,
        "priorities": PRIORITIES,
        "helpers": helpers(),
        "sources": await _sources(request),
        "max_upload": MAX_UPLOAD,
        "config_problem": current.problem,
    }
    return render(request, "rules/editor.html", context, status_code=status_code)


@router.get("/rules/new", name="rule_new")
async def new_rule(request: Request, session: ViewerSession) -> Response:
    """An empty editor, or a copy of the rule named in ``?copy=``."""
    current = _current(request)
    copy = request.query_params.get("copy", "")
    form = RuleForm(rule="tags.Modality == 'CT'")
    if copy and copy in current.config.rules:
        raw = _raw_rule(current, copy)
        form = form_from_rule(copy_name(copy, current.config.rules), raw)
    return await _editor(
        request, session, current, form, original=None, version=current.file.version
    )


def _raw_rule(current: _Current, name: str) -> dict[str, Any]:
    """The rule as the file writes it (as the configuration in force has it, if the file is
    not usable)."""
    raw = current.document.get(("rules", name))
    if isinstance(raw, dict):
        return raw
    rule = current.config.rules.get(name)
    return rule.model_dump(mode="json", exclude_defaults=True) if rule is not None else {}


@router.get("/rules/{rule_name}/edit", name="rule_edit")
async def edit_rule(request: Request, session: ViewerSession, rule_name: str) -> Response:
    """The editor of a saved rule (read-only below the admin role)."""
    current = _current(request)
    if rule_name not in current.config.rules:
        return render(
            request,
            "rules/missing.html",
            {"name": rule_name[:200]},
            status_code=404,
        )
    form = form_from_rule(rule_name, _raw_rule(current, rule_name))
    return await _editor(
        request, session, current, form, original=rule_name, version=current.file.version
    )


def _summary(before: dict[str, Any] | None, after: dict[str, Any], name: str, old: str) -> str:
    """The change in words for the audit log: which keys changed."""
    if before is None:
        return f"rule {name} created ({after.get('action', 'route')})"
    changed = sorted(key for key in set(before) | set(after) if before.get(key) != after.get(key))
    renamed = f" renamed from {old}," if old != name else ""
    return f"rule {name}{renamed} changed: {', '.join(changed) or 'nothing'}"


async def _save(request: Request, session: Session, original: str | None) -> Response:
    """Create (``original`` None) or change a rule from the posted editor."""
    form = await _form(request)
    version = _text(form, "config_version")
    parsed = parse_form(form, form.getlist)
    current = _current(request)
    if original is not None and original not in current.config.rules:
        parsed.errors["form"] = (
            f"The rule {original!r} is no longer in the configuration (deleted or renamed "
            "meanwhile?). Save it as a new rule, or open the list again."
        )
    elif parsed.name != original and parsed.name in current.config.rules:
        parsed.errors["name"] = f"There is a rule {parsed.name!r} already; choose another name."
    if not parsed.ok:
        return await _editor(
            request, session, current, parsed, original=original, version=version, status_code=422
        )
    before = _raw_rule(current, original) if original is not None else None
    value = rule_value(parsed, before)
    name = parsed.name

    def edit(doc: Document) -> None:
        # A file changed since the form was opened is refused by save_edit after this.
        if original is not None and original != name and doc.has(("rules", original)):
            doc.rename(("rules", original), name)
        doc.set(("rules", name), value)

    try:
        await save_edit(
            request,
            edit,
            version=version,
            summary=_summary(before, value, name, original or name),
            object=f"rule {name}",
        )
    except EditRefused as refused:
        parsed.errors.update(issues_by_field(refused.issues, name))
        problem = refused.message
        if refused.conflict:
            problem += (
                " Your changes are still in the form: open the rule again in another tab to "
                "see what changed, then save again from there."
            )
        return await _editor(
            request,
            session,
            current,
            parsed,
            original=original,
            version=version,
            status_code=409 if refused.conflict else 422,
            problem=problem,
        )
    verb = "created" if original is None else "saved"
    renamed = f" (renamed from {original})" if original not in (None, name) else ""
    return redirect_with(
        request,
        url(request, "rules"),
        f"Rule {name} {verb}{renamed}. The router applies it to the next complete series.",
    )


@router.post("/rules/new", name="rule_create")
async def create_rule(request: Request, session: AdminSession) -> Response:
    """Add the rule of the posted editor."""
    return await _save(request, session, None)


@router.post("/rules/{rule_name}/edit", name="rule_save")
async def save_rule(request: Request, session: AdminSession, rule_name: str) -> Response:
    """Save the posted editor over the rule (a changed name renames it in place)."""
    return await _save(request, session, rule_name)


# --- disable, enable, delete ------------------------------------------------------------
async def _switch(request: Request, rule_name: str, disabled: bool) -> Response:
    form = await _form(request)
    current = _current(request)
    verb = "disabled" if disabled else "enabled"
    if rule_name not in current.config.rules:
        return redirect_with(
            request, url(request, "rules"), f"There is no rule {rule_name[:200]!r}.", "bad"
        )
    had = _raw_rule(current, rule_name)

    def edit(doc: Document) -> None:
        if disabled:
            doc.set(("rules", rule_name, "disabled"), True)
        elif "disabled" in had:
            doc.delete(("rules", rule_name, "disabled"))

    effect = (
        "it is no longer evaluated" if disabled else "it is evaluated for the next series again"
    )
    rules = url(request, "rules")
    return await save_then_redirect(
        request,
        edit,
        version=_text(form, "config_version"),
        summary=f"rule {rule_name} {verb}",
        object=f"rule {rule_name}",
        saved=(rules, f"Rule {rule_name} {verb}: {effect}."),
        refused=(rules, f"Rule {rule_name} not {verb}: "),
    )


@router.post("/rules/{rule_name}/disable", name="rule_disable")
async def disable_rule(request: Request, _session: AdminSession, rule_name: str) -> Response:
    """Keep the rule but stop evaluating it."""
    return await _switch(request, rule_name, True)


@router.post("/rules/{rule_name}/enable", name="rule_enable")
async def enable_rule(request: Request, _session: AdminSession, rule_name: str) -> Response:
    """Evaluate a disabled rule again."""
    return await _switch(request, rule_name, False)


@router.get("/rules/{rule_name}/delete", name="rule_delete_confirm")
async def confirm_delete(request: Request, _session: AdminSession, rule_name: str) -> Response:
    """Are you sure? With the studies still being collected for the rule."""
    current = _current(request)
    rule = current.config.rules.get(rule_name)
    collecting = (await run_in_threadpool(_collecting, request)).get(rule_name, 0)
    context = {
        "name": rule_name[:200],
        "rule": rule,
        "collecting": collecting,
        "version": current.file.version,
    }
    return _with_flash(request, "rules/delete.html", context, status_code=200 if rule else 404)


@router.post("/rules/{rule_name}/delete", name="rule_delete")
async def delete_rule(request: Request, _session: AdminSession, rule_name: str) -> Response:
    """Remove the rule from the configuration (after the confirmation page)."""
    form = await _form(request)
    current = _current(request)
    if rule_name not in current.config.rules:
        return redirect_with(
            request, url(request, "rules"), f"There is no rule {rule_name[:200]!r}.", "bad"
        )
    if _text(form, "confirm") != rule_name:
        return redirect_with(
            request,
            url(request, "rule_delete_confirm", rule_name=rule_name),
            f"Rule {rule_name} not deleted: confirm it on this page first.",
            "bad",
        )

    def edit(doc: Document) -> None:
        doc.delete(("rules", rule_name))

    rules = url(request, "rules")
    return await save_then_redirect(
        request,
        edit,
        version=_text(form, "config_version"),
        summary=f"rule {rule_name} deleted",
        object=f"rule {rule_name}",
        saved=(rules, f"Rule {rule_name} deleted."),
        refused=(rules, f"Rule {rule_name} not deleted: "),
    )


# --- live validation, reference, tester ------------------------------------------------------
@router.post("/rules/check", name="rule_check")
async def check_expression(request: Request, _session: ViewerSession) -> Response:
    """The expression's verdict as a fragment: valid, or the error under its column."""
    form = await _form(request)
    source = _text(form, "rule")
    error: RuleSyntaxError | None = None
    try:
        compile_rule(source, name=None)
    except RuleSyntaxError as exc:
        error = exc
    return render(request, "rules/_check.html", {"error": error, "source": source})


@router.get("/rules/tags", name="rule_tags")
async def tag_search(request: Request, _session: ViewerSession) -> Response:
    """Tag keywords matching ``?q=`` (fragment beside the editor)."""
    wanted = request.query_params.get("q", "")[:64]
    return render(
        request, "rules/_tags.html", {"found": search_tag_keywords(wanted), "wanted": wanted}
    )


async def _test_tags(request: Request, form: FormData) -> tuple[dict[str, str], str]:
    """The tags the tester was pointed at, and a label saying where they are from."""
    upload = form.get("test_file")
    if isinstance(upload, UploadFile) and upload.filename:
        name = os.path.basename(upload.filename)[:120] or "upload"
        data = await upload.read(MAX_UPLOAD + 1)
        await upload.close()
        if len(data) > MAX_UPLOAD:
            raise SourceError(
                f"{name} is larger than {MAX_UPLOAD >> 10} KiB; the tester reads files up to "
                "that size. Test with a smaller instance of the series, or with the series "
                "once it is received."
            )
        additional = list(web_context(request).config.router.additional_tags)
        tags = await run_in_threadpool(tags_from_upload, data, name, additional)
        return tags, f"uploaded file {name}"
    chosen = _text(form, "test_series")
    where, _, uid = chosen.partition(":")
    if where == "incoming" and uid:
        data_dir = web_context(request).data.root
        additional = list(web_context(request).config.router.additional_tags)
        tags = await run_in_threadpool(incoming_series_tags, data_dir, uid, additional)
        return tags, f"series {uid} waiting in incoming/"
    if where == "recorded" and uid:
        try:
            page = await web_context(request).bookkeeper.search_series(series_uid=uid, limit=1)
        except BookkeeperError as exc:
            raise SourceError(f"the bookkeeper does not answer: {exc}") from None
        if not page.items:
            raise SourceError(f"the bookkeeper has no series {uid[:200]!r}")
        recorded = {k: str(v) for k, v in page.items[0].tags.items() if v is not None}
        return recorded, f"series {uid} as the bookkeeper recorded it"
    raise SourceError("Choose a series, or a DICOM file to upload.")


def _test_context(
    request: Request, parsed: RuleForm, tags: dict[str, str], original: str | None
) -> dict[str, Any]:
    """The tester's findings: the edited expression, every rule, the decision."""
    current = _current(request)
    prepared = SeriesTags(tags)
    rule, compiled, why_not = edited_rule(parsed)
    expression: RuleOutcome | None = None
    if compiled is not None:
        expression = evaluate_rule(compiled, prepared, name=parsed.name or "this rule")
    config, compiled_rules = current.config, dict(current.compiled)
    if rule is not None and compiled is not None:
        config, compiled_rules = replace_rule(
            config,
            compiled_rules,
            parsed.name or "this rule",
            rule,
            compiled,
            replaces=original,
        )
    elif original is not None and original in config.rules:
        # The edited rule cannot run as it is: judge the others without its saved version.
        rules = {k: v for k, v in config.rules.items() if k != original}
        config = config.model_copy(update={"rules": rules})
    report: RuleTestReport = evaluate_rules(config, compiled_rules, prepared)
    return {
        "expression": expression,
        "edited_name": parsed.name or "this rule",
        "why_not": why_not,
        "report": report,
        "tags": sorted(tags.items()),
    }


@router.post("/rules/test", name="rule_test")
async def test_rule(request: Request, _session: ViewerSession) -> Response:
    """The live tester (fragment): the edited rule and all rules against a series or file."""
    announced = request.headers.get("content-length")
    if announced is None or not announced.isdigit() or int(announced) > MAX_TEST_REQUEST:
        # Refused before the body is read: nothing is parsed or stored.
        message = (
            f"The tester reads DICOM files up to {MAX_UPLOAD >> 10} KiB (a rule needs only "
            "the header); this request is larger or does not say its size."
        )
        return render(request, "rules/_tester.html", {"problem": message, "source": ""})
    # Within that size the file stays in memory.
    form = await _form(request, files=1)
    original = _text(form, "original") or None
    parsed = parse_form(form, form.getlist)
    try:
        tags, source = await _test_tags(request, form)
    except (SourceError, MercureError) as exc:
        return render(request, "rules/_tester.html", {"problem": str(exc), "source": ""})
    context = await run_in_threadpool(_test_context, request, parsed, tags, original)
    return render(request, "rules/_tester.html", {**context, "problem": "", "source": source})
