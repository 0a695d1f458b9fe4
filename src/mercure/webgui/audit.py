"""The audit log: every change made through the web interface, with who and from where.

:func:`audit` writes an ``audit.<action>`` event through the service's event outbox, like
every other event; the bookkeeper projects it into its ``audit`` table (user, action, object,
remote address, message, the other data as details). Sign-ins and changes to users are
audited by the bookkeeper itself, in the user endpoints; everything else that changes
something is audited here, by the route that made the change, after it succeeded.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import Request

from mercure.webgui.context import client_address, web_context

_ACTION = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*")


def audit(
    request: Request,
    action: str,
    object: str | None = None,
    message: str = "",
    *,
    user: str | None = None,
    **details: Any,
) -> None:
    """Record that the signed-in user did ``action`` (e.g. ``queue.pause``) to ``object``.

    ``user`` defaults to the user of the request's session; ``details`` go into the entry.
    """
    if not _ACTION.fullmatch(action):
        raise ValueError(f"audit action {action!r} must be dotted lower-case words")
    if user is None:
        session = getattr(request.state, "session", None)
        user = session.user if session is not None else "anonymous"
    web_context(request).events.emit(
        f"audit.{action}",
        message=message,
        user=user,
        object=object,
        remote_address=client_address(request),
        **details,
    )
