"""Sign-in and sign-out.

The sign-in page also says what is wrong when nobody can sign in: the bookkeeper (which keeps
the users) is unreachable, or no user exists yet (then it shows the command that makes the
first one, with the configuration file this service was started with).
"""

from __future__ import annotations

import logging
import shlex
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from mercure.webgui.audit import audit
from mercure.webgui.auth import ViewerSession, public
from mercure.webgui.bookkeeper import BookkeeperError
from mercure.webgui.context import WebContext, client_address, web_context
from mercure.webgui.rendering import render, url
from mercure.webgui.roles import Role
from mercure.webgui.sessions import COOKIE_NAME, LOGIN_COOKIE_NAME, Session, new_token

log = logging.getLogger(__name__)

router = APIRouter()

USERS_EXIST_CACHE = 10.0
"""Seconds the answer "users exist" is kept, so the sign-in page does not ask every time."""
MAX_NAME = 200
MAX_PASSWORD = 1024


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _cookie_path(request: Request) -> str:
    return str(request.scope.get("root_path", "")) or "/"


def _safe_next(request: Request, target: str | None) -> str:
    """Where to go after signing in: a path of this site only (never another host)."""
    root = str(request.scope.get("root_path", ""))
    if (
        target
        and target.startswith(root + "/")
        and not target.startswith("//")
        and "\\" not in target
        and not any(c.isspace() or ord(c) < 32 for c in target)
    ):
        return target
    return url(request, "overview")


async def _users_exist(web: WebContext) -> bool:
    """Whether the bookkeeper has any user (raises BookkeeperError when it cannot tell)."""
    if web.users_exist_until > web.clock():
        return True
    users = await web.bookkeeper.list_users()
    if users:
        web.users_exist_until = web.clock() + USERS_EXIST_CACHE
    return bool(users)


def first_user_command(web: WebContext) -> str:
    """The command that creates the first administrator, for this installation."""
    command = "mercure user add admin --role admin"
    if web.config_path is not None:
        command += f" --config {shlex.quote(str(web.config_path))}"
    return command


async def _login_page(
    request: Request,
    *,
    error: str = "",
    name: str = "",
    next_url: str = "",
    status_code: int = 200,
) -> Response:
    web = web_context(request)
    token = new_token()
    problem, no_users = "", False
    try:
        no_users = not await _users_exist(web)
    except BookkeeperError as exc:
        problem = str(exc)
    response = render(
        request,
        "login.html",
        {
            "error": error,
            "name": name,
            "next_url": next_url,
            "login_token": token,
            "unreachable": problem,
            "no_users": no_users,
            "first_user_command": first_user_command(web),
            "ended": request.query_params.get("ended", "") if not error else "",
        },
        status_code=status_code,
    )
    response.set_cookie(
        LOGIN_COOKIE_NAME,
        web.signer.sign(token),
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path=_cookie_path(request),
    )
    return response


@router.get("/login", name="login", dependencies=[public()])
async def login_form(request: Request, next: str = "") -> Response:
    """The sign-in page (a signed-in user goes on to the overview)."""
    if getattr(request.state, "session", None) is not None:
        return RedirectResponse(_safe_next(request, next), status_code=303)
    return await _login_page(request, next_url=next)


@router.post("/login", name="login_submit", dependencies=[public()])
async def login_submit(
    request: Request,
    name: Annotated[str, Form(max_length=MAX_NAME)] = "",
    password: Annotated[str, Form(max_length=MAX_PASSWORD)] = "",
    next: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Check the password at the bookkeeper, throttled; on success a new session."""
    web = web_context(request)
    address = client_address(request)
    name = name.strip()
    wait = web.throttle.wait_time(name, address)
    if wait > 0:
        audit(request, "login.throttled", name, "sign-in refused: too many failures", user=name)
        return await _login_page(
            request,
            error=f"Too many failed sign-ins for this user name or from your address. "
            f"Try again in {wait:.0f} seconds.",
            name=name,
            next_url=next,
            status_code=429,
        )
    if not name or not password:
        return await _login_page(
            request,
            error="Enter your user name and password.",
            name=name,
            next_url=next,
            status_code=400,
        )
    try:
        user = await web.bookkeeper.verify_user(name, password, address)
    except BookkeeperError as exc:
        log.warning("sign-in of %s not possible: %s", name, exc)
        return await _login_page(request, name=name, next_url=next, status_code=503)
    if user is None:
        web.throttle.failed(name, address)
        return await _login_page(
            request,
            error="Wrong user name or password, or the account is disabled.",
            name=name,
            next_url=next,
            status_code=401,
        )
    web.throttle.succeeded(name)
    session = web.sessions.create(
        user.name,
        Role(user.role),
        user.session_epoch,
        address,
        must_change_password=user.must_change_password,
    )
    log.info("%s signed in from %s", user.name, address)
    where = (
        url(request, "password_change") if user.must_change_password else _safe_next(request, next)
    )
    response = RedirectResponse(where, status_code=303)
    set_session_cookie(request, response, session)
    response.delete_cookie(LOGIN_COOKIE_NAME, path=_cookie_path(request))
    return response


def set_session_cookie(request: Request, response: Response, session: Session) -> None:
    """Give the browser the signed session id (HttpOnly, SameSite=Strict, Secure on HTTPS)."""
    web = web_context(request)
    response.set_cookie(
        COOKIE_NAME,
        web.signer.sign(session.id),
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path=_cookie_path(request),
    )


@router.post("/logout", name="logout")
async def logout(request: Request, session: ViewerSession) -> Response:
    """End the session here (the cookie is worth nothing after) and in the browser."""
    web = web_context(request)
    web.sessions.delete(session.id)
    audit(request, "logout", session.user, f"{session.user} signed out")
    response: Response = RedirectResponse(url(request, "login"), status_code=303)
    if "hx-request" in request.headers:
        response = Response(status_code=204, headers={"HX-Redirect": url(request, "login")})
    response.delete_cookie(
        COOKIE_NAME,
        path=_cookie_path(request),
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    return response
