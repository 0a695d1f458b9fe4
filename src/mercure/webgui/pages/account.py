"""Choosing one's own password when it was a temporary one.

A user made with ``mercure user add --must-change-password`` (users imported from mercure, or
an admin's reset with ``mercure user passwd --must-change-password``) signs in with the
temporary password and is sent here; every other page and action leads back here until a new
password is set (:class:`mercure.webgui.auth.PasswordChangeRequired`). Setting it ends the
user's sessions, this one included: they sign in again with the new password.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from mercure.webgui.auth import ViewerSession
from mercure.webgui.bookkeeper import BookkeeperError, BookkeeperRejected
from mercure.webgui.context import client_address, web_context
from mercure.webgui.pages.users import MAX_PASSWORD, MIN_PASSWORD
from mercure.webgui.rendering import render, url
from mercure.webgui.sessions import Session

router = APIRouter()

Text = Annotated[str, Form(max_length=MAX_PASSWORD)]


def _page(request: Request, session: Session, error: str = "", status_code: int = 200) -> Response:
    return render(
        request,
        "password_change.html",
        {
            "name": session.user,
            "required": session.must_change_password,
            "error": error,
            "min_password": MIN_PASSWORD,
            "max_password": MAX_PASSWORD,
        },
        status_code=status_code,
    )


@router.get("/account/password", name="password_change")
async def password_form(request: Request, session: ViewerSession) -> Response:
    """The form for a new password of one's own."""
    return _page(request, session)


@router.post("/account/password", name="password_change_submit")
async def password_submit(
    request: Request, session: ViewerSession, password: Text = "", password_again: Text = ""
) -> Response:
    """Set one's own password; the sessions end and the user signs in with it."""
    if not password or password != password_again:
        return _page(request, session, "Type the same new password twice.", 400)
    web = web_context(request)
    try:
        await web.bookkeeper.set_password(
            session.user,
            password,
            actor=session.user,
            remote_address=client_address(request),
        )
    except BookkeeperRejected as exc:
        return _page(request, session, f"Could not set the password: {exc.detail}.", 422)
    except BookkeeperError as exc:
        return _page(request, session, f"Could not set the password: {exc}.", 503)
    web.sessions.end_user(session.user)
    return RedirectResponse(url(request, "login") + "?ended=1", status_code=303)
