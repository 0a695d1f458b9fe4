"""The users page (admins): list, add, change role, disable / enable, set a password, remove.

Every change goes through the bookkeeper's users API, which checks it (name and password
rules, a taken name, the last enabled admin) and writes the audit entry with the admin who
made it and their address; its refusals are shown as messages on the page. After a change
that ends a user's sessions, this web interface ends them at once (the bookkeeper's session
epoch would end them within ten seconds anyway).

An admin cannot change their own role, disable or remove themselves here: a slip of the mouse
must not lock the only person awake at 3 a.m. out (another admin can, or ``mercure user`` on
the server). Setting one's own password is allowed and ends one's own sessions too, this one
included: the admin signs in again with the new password.

Removing asks first: the remove button leads to a confirmation page whose form carries the
user's name, and the removal is refused without it (no script needed, the CSP allows none).
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from mercure.webgui.auth import AdminSession
from mercure.webgui.bookkeeper import (
    BookkeeperError,
    BookkeeperRejected,
    UserRecord,
    UserRole,
)
from mercure.webgui.context import client_address, web_context
from mercure.webgui.rendering import render, url
from mercure.webgui.sessions import Session

router = APIRouter()

ROLES: tuple[UserRole, ...] = ("viewer", "operator", "admin")
ROLE_HELP = {
    "viewer": "sees everything except secrets",
    "operator": "also requeues, discards, deletes, pauses and resumes",
    "admin": "also manages users and the configuration",
}
MAX_NAME = 64
MIN_PASSWORD = 12
MAX_PASSWORD = 1024
"""Shown as hints in the forms; the bookkeeper enforces the rules (docs/users.md)."""
DONE = {
    "added": "{name} was added. They can sign in now.",
    "role": "The role of {name} was changed; their sessions ended.",
    "disabled": "{name} was disabled: they cannot sign in, and their sessions ended.",
    "enabled": "{name} was enabled: they can sign in again.",
    "password": "The password of {name} was set and their sessions ended. Give it to them "
    "in person or by phone, not by e-mail.",
    "removed": "{name} was removed.",
}
"""What the page says after a change (the change is named in the redirect, never free text)."""

Text = Annotated[str, Form()]


class Refused(Exception):
    """A change that is not made; ``message`` says why, ``status`` is the answer's status."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _is_self(session: Session, name: str) -> bool:
    return session.user.lower() == name.lower()


def _done_message(request: Request) -> str:
    template = DONE.get(request.query_params.get("done", ""))
    name = request.query_params.get("name", "")[:MAX_NAME]
    return template.format(name=name) if template and name else ""


def _check_passwords(password: str, again: str) -> None:
    if not password:
        raise Refused("Enter the password twice.")
    if password != again:
        raise Refused("The two passwords differ; type the same password twice.")
    if len(password) > MAX_PASSWORD:
        raise Refused(f"A password has at most {MAX_PASSWORD} characters.")


def _refusal(what: str, exc: BookkeeperError) -> Refused:
    """A bookkeeper's refusal (or silence) as a message for the page."""
    if isinstance(exc, BookkeeperRejected):
        status = exc.status if exc.status in (404, 409, 422) else 400
        return Refused(f"Could not {what}: {exc.detail}.", status)
    return Refused(
        f"Could not {what}: {exc}. The change may not have been made; look again when the "
        "bookkeeper answers.",
        503,
    )


async def _user_or_refuse(request: Request, name: str) -> UserRecord:
    try:
        user = await web_context(request).bookkeeper.get_user(name)
    except BookkeeperError as exc:
        raise _refusal(f"look up the user {name[:MAX_NAME]!r}", exc) from None
    if user is None:
        raise Refused(f"There is no user {name[:MAX_NAME]!r} (removed meanwhile?).", 404)
    return user


def _back(request: Request, route: str, done: str, who: str, **params: str) -> Response:
    """To ``route`` (303), saying what was ``done`` to the user ``who``."""
    target = url(request, route, **params) + "?" + urlencode({"done": done, "name": who})
    return RedirectResponse(target, status_code=303)


# --- the list and adding ---------------------------------------------------------------


async def _list_page(
    request: Request,
    session: Session,
    *,
    error: str = "",
    form: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    web = web_context(request)
    users: list[UserRecord] | None = None
    try:
        users = await web.bookkeeper.list_users()
    except BookkeeperError as exc:
        request.state.bookkeeper_problem = str(exc)
    context = {
        "users": users,
        "me": session.user.lower(),
        "error": error,
        "done": "" if error else _done_message(request),
        "form": form or {"name": "", "role": "viewer"},
        "roles": ROLES,
        "role_help": ROLE_HELP,
        "max_name": MAX_NAME,
        "min_password": MIN_PASSWORD,
        "max_password": MAX_PASSWORD,
    }
    return render(request, "users.html", context, status_code=status_code)


@router.get("/users", name="users")
async def users_page(request: Request, session: AdminSession) -> Response:
    """Every user, and the form that adds one."""
    return await _list_page(request, session)


@router.post("/users", name="users_add")
async def add_user(
    request: Request,
    session: AdminSession,
    name: Text = "",
    role: Text = "viewer",
    password: Text = "",
    password_again: Text = "",
) -> Response:
    """Add a user (the bookkeeper checks the name and the password, and audits it)."""
    name = name.strip()
    form = {"name": name[: MAX_NAME * 2], "role": role if role in ROLES else "viewer"}
    try:
        if not name:
            raise Refused("Enter a user name.")
        if len(name) > MAX_NAME:
            raise Refused(f"A user name is 1 to {MAX_NAME} letters, digits, '.', '_', '@' or '-'.")
        if role not in ROLES:
            raise Refused(f"Choose a role: {', '.join(ROLES)}.")
        _check_passwords(password, password_again)
        try:
            await web_context(request).bookkeeper.create_user(
                name,
                role,  # checked against ROLES above
                password,
                actor=session.user,
                remote_address=client_address(request),
            )
        except BookkeeperError as exc:
            raise _refusal(f"add {name!r}", exc) from None
    except Refused as refused:
        return await _list_page(
            request, session, error=refused.message, form=form, status_code=refused.status
        )
    return _back(request, "users", "added", name)


# --- one user ----------------------------------------------------------------------------


async def _user_page(
    request: Request,
    session: Session,
    name: str,
    *,
    error: str = "",
    status_code: int = 200,
) -> Response:
    user: UserRecord | None = None
    try:
        user = await _user_or_refuse(request, name)
    except Refused as refused:
        error = error or refused.message
        if refused.status == 503:
            request.state.bookkeeper_problem = refused.message
        status_code = refused.status if status_code == 200 else status_code
    context = {
        "user": user,
        "name": user.name if user else name[:MAX_NAME],
        "is_self": _is_self(session, name),
        "error": error,
        "done": "" if error else _done_message(request),
        "roles": ROLES,
        "role_help": ROLE_HELP,
        "min_password": MIN_PASSWORD,
        "max_password": MAX_PASSWORD,
    }
    return render(request, "user.html", context, status_code=status_code)


@router.get("/users/{username}", name="user")
async def user_page(request: Request, session: AdminSession, username: str) -> Response:
    """One user: role, state, password, removal."""
    return await _user_page(request, session, username)


async def _change(
    request: Request, session: Session, username: str, what: str, *, own: bool = False
) -> UserRecord:
    """The user to change, after the checks every change makes."""
    if not own and _is_self(session, username):
        raise Refused(
            f"You cannot {what} your own account here, so that nobody locks themselves out "
            "by a slip. Another admin can, or on the server: mercure user (see docs/users.md).",
            409,
        )
    return await _user_or_refuse(request, username)


@router.post("/users/{username}/role", name="user_role")
async def change_role(
    request: Request, session: AdminSession, username: str, role: Text = ""
) -> Response:
    """Give a user another role; their sessions end."""
    web = web_context(request)
    try:
        user = await _change(request, session, username, "change the role of")
        if role not in ROLES:
            raise Refused(f"Choose a role: {', '.join(ROLES)}.")
        if role == user.role:
            raise Refused(f"{user.name} is {role} already; nothing was changed.")
        try:
            await web.bookkeeper.update_user(
                user.name,
                role=role,  # checked against ROLES above
                actor=session.user,
                remote_address=client_address(request),
            )
        except BookkeeperError as exc:
            raise _refusal(f"make {user.name} {role}", exc) from None
    except Refused as refused:
        return await _user_page(
            request, session, username, error=refused.message, status_code=refused.status
        )
    web.sessions.end_user(user.name)
    return _back(request, "user", "role", user.name, username=user.name)


async def _set_disabled(
    request: Request, session: Session, username: str, disabled: bool
) -> Response:
    web = web_context(request)
    verb = "disable" if disabled else "enable"
    try:
        user = await _change(request, session, username, verb)
        try:
            await web.bookkeeper.update_user(
                user.name,
                disabled=disabled,
                actor=session.user,
                remote_address=client_address(request),
            )
        except BookkeeperError as exc:
            raise _refusal(f"{verb} {user.name}", exc) from None
    except Refused as refused:
        return await _user_page(
            request, session, username, error=refused.message, status_code=refused.status
        )
    if disabled:
        web.sessions.end_user(user.name)
    return _back(
        request, "user", "disabled" if disabled else "enabled", user.name, username=user.name
    )


@router.post("/users/{username}/disable", name="user_disable")
async def disable_user(request: Request, session: AdminSession, username: str) -> Response:
    """Disable a user: no sign-in, their sessions end."""
    return await _set_disabled(request, session, username, True)


@router.post("/users/{username}/enable", name="user_enable")
async def enable_user(request: Request, session: AdminSession, username: str) -> Response:
    """Enable a disabled user."""
    return await _set_disabled(request, session, username, False)


@router.post("/users/{username}/password", name="user_password")
async def set_password(
    request: Request,
    session: AdminSession,
    username: str,
    password: Text = "",
    password_again: Text = "",
) -> Response:
    """Set a user's password (one's own too); the user's sessions end."""
    web = web_context(request)
    try:
        user = await _change(request, session, username, "set the password of", own=True)
        _check_passwords(password, password_again)
        try:
            await web.bookkeeper.set_password(
                user.name, password, actor=session.user, remote_address=client_address(request)
            )
        except BookkeeperError as exc:
            raise _refusal(f"set the password of {user.name}", exc) from None
    except Refused as refused:
        return await _user_page(
            request, session, username, error=refused.message, status_code=refused.status
        )
    web.sessions.end_user(user.name)
    if _is_self(session, user.name):
        # This session ended with the others: sign in with the new password.
        return RedirectResponse(url(request, "login") + "?ended=1", status_code=303)
    return _back(request, "user", "password", user.name, username=user.name)


@router.get("/users/{username}/remove", name="user_remove_confirm")
async def confirm_removal(request: Request, session: AdminSession, username: str) -> Response:
    """The confirmation step of removing a user."""
    error, status_code = "", 200
    user: UserRecord | None = None
    try:
        user = await _change(request, session, username, "remove")
    except Refused as refused:
        error, status_code = refused.message, refused.status
    context: dict[str, Any] = {"user": user, "name": username[:MAX_NAME], "error": error}
    return render(request, "user_remove.html", context, status_code=status_code)


@router.post("/users/{username}/remove", name="user_remove")
async def remove_user(
    request: Request, session: AdminSession, username: str, confirm: Text = ""
) -> Response:
    """Remove a user, once confirmed (the confirmation page sends the username back)."""
    web = web_context(request)
    try:
        user = await _change(request, session, username, "remove")
        if confirm.lower() != user.name.lower():
            raise Refused(
                f"Removing {user.name} needs the confirmation step: use the Remove button "
                "on this page and confirm.",
            )
        try:
            await web.bookkeeper.delete_user(
                user.name, actor=session.user, remote_address=client_address(request)
            )
        except BookkeeperError as exc:
            raise _refusal(f"remove {user.name}", exc) from None
    except Refused as refused:
        return await _user_page(
            request, session, username, error=refused.message, status_code=refused.status
        )
    web.sessions.end_user(user.name)
    return _back(request, "users", "removed", user.name)
