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
- ``POST`` (admin): saved through :func:`mercure.webgui.configedit.save_edit`; renaming renames
  the channel in the rules' ``notification_channels``; deleting is refused while a rule uses it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel

from mercure.core.config.models import AppriseChannel, EmailChannel, WebhookChannel
from mercure.webgui.auth import ViewerSession
from mercure.webgui.configedit import Unreadable, open_config
from mercure.webgui.context import web_context
from mercure.webgui.flash import clear_flash, take_flash
from mercure.webgui.namedobjects import NamedKind, may
from mercure.webgui.rendering import render
from mercure.webgui.roles import Role

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


CHANNELS.add_routes(router)
