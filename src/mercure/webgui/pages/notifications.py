"""The Notifications page: the channels rules notify through; add, edit and delete.

- ``GET /notifications`` (every role): each channel's type and where it sends, without its
  secrets (a webhook's host, never its path or query, which carry a chat service's token; an
  e-mail channel's SMTP server and recipients; an apprise channel's URL schemes), whether the
  templates get PHI, and the rules that use it.
- ``GET /notifications/new?type=webhook`` and ``GET /notifications/{channel}``: the form of
  one channel, every field of ``WebhookChannel`` / ``EmailChannel`` / ``AppriseChannel``
  (:mod:`mercure.webgui.forms`). The URL, header values, password, HMAC secret and apprise
  URLs are write-only. Templates are textareas with the fields they may use beside them;
  check-config's template check runs on save and its error shows at the field.
- ``POST /notifications/test`` (operator): sends the test notification with the form's values,
  saved or not, by ``mercure notify-test NAME --json --definition -`` as a subprocess
  (:mod:`mercure.webgui.notifytest`): secrets left empty are the stored ones. Operators may
  test changed values, but a stored secret only with the saved destination.
- ``POST`` (admin): saved through :func:`mercure.webgui.configedit.save_edit`; renaming renames
  the channel in the rules' ``notification_channels``; deleting is refused while a rule uses it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel

from mercure.core.config.editing import KEEP, MASK
from mercure.core.config.loader import expand_env
from mercure.core.config.models import AppriseChannel, EmailChannel, WebhookChannel
from mercure.webgui.audit import audit
from mercure.webgui.auth import OperatorSession, ViewerSession
from mercure.webgui.configedit import Unreadable, open_config, unreadable_page
from mercure.webgui.context import web_context
from mercure.webgui.flash import clear_flash, take_flash
from mercure.webgui.forms import FormData, FormErrors, parse_form
from mercure.webgui.namedobjects import NamedKind, may
from mercure.webgui.notifytest import NotifyTestReport, run_notify_test
from mercure.webgui.rendering import render
from mercure.webgui.roles import Role
from mercure.webgui.sessions import Session

router = APIRouter()

TYPES: dict[str, type[BaseModel]] = {
    "webhook": WebhookChannel,
    "email": EmailChannel,
    "apprise": AppriseChannel,
}
TYPE_HELP = {
    "webhook": "an HTTP request (Teams, Slack, Mattermost, a service of your own)",
    "email": "an e-mail through an SMTP server",
    "apprise": "chat and push services through apprise URLs",
}
CHANNELS = NamedKind(
    section="notifications",
    noun="channel",
    discriminator="type",
    models=TYPES,
    help=TYPE_HELP,
    uses=("notification_channels",),
    reserved=("new", "test"),  # the page's own addresses
    testable=True,
)


def _host(address: str) -> str:
    """The host (and port) of a URL, nothing of its credentials, path or query."""
    try:
        parts = urlsplit(address)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "?"
    if not host:
        return "?"
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


def where(channel: Any) -> str:
    """Where a channel sends, in one line, without any secret."""
    if isinstance(channel, WebhookChannel):
        return f"{channel.method} {_host(channel.url.get_secret_value())}"
    if isinstance(channel, EmailChannel):
        return f"{channel.host}:{channel.port} to {', '.join(channel.to)}"
    if isinstance(channel, AppriseChannel):
        schemes = dict.fromkeys(
            (urlsplit(u.get_secret_value()).scheme or "?") + "://" for u in channel.urls
        )
        return ", ".join(schemes)
    return ""


@router.get("/notifications", name="notifications")
async def notifications_page(request: Request, _session: ViewerSession) -> Response:
    """Every channel, where it sends (no secrets), whether it gets PHI, the rules using it."""
    web = web_context(request)
    problem = ""
    try:
        _file, document = open_config(request)
        using = CHANNELS.rules_using(document.plain())
    except Unreadable as exc:
        problem, using = str(exc), {}
    channels = [
        {
            "name": name,
            "type": channel.type,
            "where": where(channel),
            "include_phi": channel.include_phi,
            "comment": channel.comment,
        }
        for name, channel in sorted(web.config.notifications.items())
    ]
    context = {
        "channels": channels,
        "using": using,
        "problem": problem,
        "may_edit": may(request, Role.ADMIN),
        "notifier": web.config.notifier,
        "flash": take_flash(request),
    }
    response = render(request, "notifications.html", context)
    clear_flash(request, response)
    return response


# --- testing ----------------------------------------------------------------------------------
HARMLESS = frozenset(
    {"comment", "body", "subject", "title", "timeout", "include_phi", "content_type", "html"}
)
"""Settings an operator may change in a test that uses a stored secret: none of them sends the
secret anywhere else."""


def _definition(value: dict[str, Any], stored: dict[str, Any]) -> dict[str, Any]:
    """The definition to test: a secret left alone as ``<secret>`` (``mercure notify-test``
    puts back the stored one), ``${VAR}`` expanded; ValueError naming what is wrong."""
    plain: dict[str, Any] = {}
    for key, item in value.items():
        if item is KEEP:
            old = stored.get(key)
            item = [MASK] * len(old) if isinstance(old, list) else MASK
        elif isinstance(item, dict):  # headers: a value left as <secret>
            item = {k: MASK if v is KEEP else v for k, v in item.items()}
        plain[key] = item
    expanded, issues = expand_env(plain)
    if issues:
        raise ValueError("; ".join(str(issue) for issue in issues))
    return dict(expanded)


def _check_stored_secrets_stay(
    session: Session, value: dict[str, Any], stored: dict[str, Any]
) -> None:
    """Refuse an operator's test that would send a stored secret somewhere else (operators may
    not read secrets: a stored header value with a typed URL would go to whoever answers)."""
    headers = value.get("headers")
    uses_stored = any(v is KEEP for v in value.values()) or (
        isinstance(headers, dict) and any(v is KEEP for v in headers.values())
    )
    if session.role.allows(Role.ADMIN) or not uses_stored:
        return
    changed = sorted(
        key
        for key in set(value) | set(stored)
        if key not in HARMLESS
        and value.get(key) is not KEEP
        and not _same(value.get(key), stored.get(key))
        and not (value.get(key) in (None, {}, [], "") and stored.get(key) in (None, {}, [], ""))
    )
    if changed:
        raise ValueError(
            f"{', '.join(changed)} changed: a test with a stored secret uses the saved "
            "destination only (testing a new one with a stored secret needs the admin role). "
            "Type the secret to test with these values."
        )


def _same(new: Any, old: Any) -> bool:
    """Whether a submitted value is the stored one (a header left as ``<secret>`` is)."""
    if isinstance(new, dict) and isinstance(old, dict):
        return new.keys() == old.keys() and all(v is KEEP or v == old[k] for k, v in new.items())
    return bool(new == old)


@router.post("/notifications/test", name="channel_test")
async def test_channel(request: Request, session: OperatorSession) -> Response:
    """Send the test notification with the form's values (saved or not); show the answer."""
    form = FormData(await request.form())
    stored_name = form.last("stored_name") or ""
    name = (form.last(CHANNELS.name_field) or "").strip() or stored_name or "new"
    try:
        _file, document = open_config(request)
    except Unreadable as exc:
        return unreadable_page(request, exc)
    stored = document.get(("notifications", stored_name)) if stored_name else None
    stored = stored if isinstance(stored, dict) else {}
    kind = str(stored.get("type") or form.last("type") or "")
    report: NotifyTestReport | None = None
    problem = ""
    if kind not in TYPES:
        problem = "Choose a channel type first."
    else:
        try:
            value = parse_form(
                TYPES[kind],
                form,
                stored or {"type": kind},
                base_path=("notifications", stored_name or name),
            )
            _check_stored_secrets_stay(session, value, stored)
            definition = _definition(value, stored)
        except FormErrors as exc:
            problem = "Cannot test: " + "; ".join(exc.errors.values())
        except ValueError as exc:
            problem = f"Cannot test: {exc}"
        else:
            # The stored secrets are the saved channel's: the command looks them up by name.
            report = await run_notify_test(
                (stored_name or name)[:64], definition, web_context(request).config_path
            )
            audit(
                request,
                "channel.test",
                f"channel {name}",
                f"test of {name}: {'ok' if report.ok else 'failed'}",
                ok=report.ok,
            )
    context = {"report": report, "problem": problem, "name": name}
    if "hx-request" in request.headers:
        return render(request, "notifications/_test_result.html", context)
    return render(request, "notification_test.html", context)


CHANNELS.add_routes(router)  # after /notifications/test, which /notifications/{channel} matches
