"""A one-time message after a change: "task X: back in outgoing/" on the page a form returns to.

A form posts, the route acts and answers 303 to a page (post/redirect/get, so a reload never
repeats the action); the message travels in a short-lived signed cookie that the next page
shows once and removes. Signed with the session cookies' key: no one else can put text there.
"""

from __future__ import annotations

import base64
import json
from typing import Literal

from fastapi import Request, Response
from fastapi.responses import RedirectResponse

from mercure.webgui.context import web_context

FLASH_COOKIE = "mercure_flash"
MAX_AGE = 60
Tone = Literal["good", "bad"]


def redirect_with(request: Request, location: str, text: str, tone: Tone = "good") -> Response:
    """A 303 to ``location`` that shows ``text`` there once."""
    response = RedirectResponse(location, status_code=303)
    raw = json.dumps({"tone": tone, "text": text[:2000]}).encode("utf-8")
    value = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    response.set_cookie(
        FLASH_COOKIE,
        web_context(request).signer.sign(value),
        max_age=MAX_AGE,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path=str(request.scope.get("root_path", "")) or "/",
    )
    return response


def take_flash(request: Request) -> dict[str, str] | None:
    """The message waiting for this page, if any (:func:`clear_flash` on the response)."""
    value = web_context(request).signer.unsign(request.cookies.get(FLASH_COOKIE))
    if value is None:
        return None
    try:
        message = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
    except ValueError:
        return None
    if not isinstance(message, dict) or message.get("tone") not in ("good", "bad"):
        return None
    return {"tone": str(message["tone"]), "text": str(message.get("text", ""))}


def clear_flash(request: Request, response: Response) -> None:
    """Remove the shown message."""
    if FLASH_COOKIE in request.cookies:
        response.delete_cookie(FLASH_COOKIE, path=str(request.scope.get("root_path", "")) or "/")
