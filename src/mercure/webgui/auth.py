"""Who may use a route: ``requires(role)`` or ``public()``, declared on every route.

``requires(Role.OPERATOR)`` is a FastAPI dependency that

1. finds the session of the request's signed cookie (none, expired, or ended: *not signed
   in*, which is a redirect to the sign-in page for a page a browser navigates to, and 401
   for anything else: fragments, JSON, forms);
2. re-checks the user at the bookkeeper at most every ten seconds: removed, disabled or a
   changed ``session_epoch`` (new password, other role) ends the session. While the bookkeeper
   is unreachable the session goes on, and the page shows a banner;
3. requires the CSRF token of the session on every request that is not GET/HEAD: in the
   ``X-CSRF-Token`` header (static/app.js sets it on every htmx request) or the form field
   ``csrf_token`` (every form in the templates has it); else 403;
4. requires the role (else 403), and returns the :class:`Session`.

Use it as a parameter, ``session: ViewerSession`` (also ``OperatorSession``,
``AdminSession``: ``Annotated[Session, requires(role)]``), or in
``dependencies=[requires(Role.ADMIN)]`` when the route does not need the session.
``public()`` marks the few routes anyone may use (the sign-in page); a non-GET public route
still needs the sign-in form's CSRF token (kept in a signed cookie until there is a session).
The application refuses to start with a route that declares neither, or both.

Requests marked ``X-Mercure-Poll: 1`` (automatic refreshes, see templates) do not count as
use of the session, so an open page does not keep a session alive past its idle timeout.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated, Any

import fastapi.routing
from fastapi import Depends, FastAPI, Request
from fastapi.routing import APIRoute

from mercure.webgui.bookkeeper import BookkeeperError
from mercure.webgui.context import web_context
from mercure.webgui.roles import Role
from mercure.webgui.sessions import COOKIE_NAME, LOGIN_COOKIE_NAME, Session, tokens_match

log = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
POLL_HEADER = "x-mercure-poll"


class NotSignedIn(Exception):
    """The request has no live session."""

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason or "not signed in")
        self.reason = reason


class PasswordChangeRequired(Exception):
    """Signed in with a temporary password: the user must choose a new one first."""


ALLOWED_BEFORE_PASSWORD_CHANGE = frozenset({"password_change", "password_change_submit", "logout"})
"""Routes a user who must change their password may use (by route name)."""


class Forbidden(Exception):
    """Signed in, but not allowed: the role is too low, or the CSRF token is missing/wrong."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def wants_page(request: Request) -> bool:
    """Whether a browser navigates to this: a whole page (a link, or a form it posts), not an
    htmx fragment or a script's request."""
    return (
        request.method in ("GET", "POST")
        and "hx-request" not in request.headers
        and "text/html" in request.headers.get("accept", "")
    )


def session_of(request: Request, *, touch: bool = True) -> Session | None:
    """The live session of the request's cookie, without any other check."""
    web = web_context(request)
    session_id = web.signer.unsign(request.cookies.get(COOKIE_NAME))
    return web.sessions.get(session_id, touch=touch)


async def _supplied_csrf(request: Request) -> str | None:
    token = request.headers.get(CSRF_HEADER)
    if token:
        return token
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        value = form.get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    return None


async def _confirm_user(request: Request, session: Session) -> None:
    """Re-check the user at the bookkeeper when it is due; end the session if it must end."""
    web = web_context(request)
    if not web.sessions.needs_recheck(session):
        return
    try:
        user = await web.bookkeeper.get_user(session.user)
    except BookkeeperError as exc:
        # Cannot ask: keep the session (it was valid when last checked) and say so.
        request.state.bookkeeper_problem = str(exc)
        return
    if user is None or user.disabled or user.session_epoch != session.epoch:
        web.sessions.delete(session.id)
        why = "removed" if user is None else "disabled" if user.disabled else "changed"
        log.info("session of %s ended: the user was %s", session.user, why)
        raise NotSignedIn(f"Your session ended: your account was {why}. Please sign in again.")
    if user.role != session.role.value:
        # An epoch that did not move with the role would be a bookkeeper bug; be safe.
        web.sessions.delete(session.id)
        raise NotSignedIn("Your session ended: your role changed. Please sign in again.")
    web.sessions.confirmed(session)


class AccessRule:
    """The dependency behind :func:`requires` and :func:`public` (tests read ``role``)."""

    def __init__(self, role: Role | None) -> None:
        self.role = role
        """The least role a user needs; None for a public route."""

    def __repr__(self) -> str:
        return f"requires({self.role.value})" if self.role else "public()"

    async def __call__(self, request: Request) -> Any:
        if self.role is None:
            return await self._public(request)
        session = session_of(request, touch=request.headers.get(POLL_HEADER) != "1")
        if session is None:
            if web_context(request).signer.unsign(request.cookies.get(COOKIE_NAME)):
                # A cookie this interface signed, for a session that is gone.
                raise NotSignedIn(
                    "Your session ended (unused too long, too old, or the web interface "
                    "restarted). Please sign in again."
                )
            raise NotSignedIn()
        await _confirm_user(request, session)
        request.state.session = session
        if session.must_change_password:
            route = request.scope.get("route")
            if getattr(route, "name", None) not in ALLOWED_BEFORE_PASSWORD_CHANGE:
                raise PasswordChangeRequired()
        if request.method not in SAFE_METHODS and not tokens_match(
            await _supplied_csrf(request), session.csrf_token
        ):
            raise Forbidden("The form was out of date or not sent by this site (CSRF check).")
        if not session.role.allows(self.role):
            raise Forbidden(f"This needs the {self.role.value} role; you are {session.role}.")
        return session

    async def _public(self, request: Request) -> None:
        request.state.session = session_of(request, touch=False)
        if request.method in SAFE_METHODS:
            return None
        web = web_context(request)
        expected = web.signer.unsign(request.cookies.get(LOGIN_COOKIE_NAME))
        if expected is None or not tokens_match(await _supplied_csrf(request), expected):
            raise Forbidden("The form was out of date or not sent by this site (CSRF check).")
        return None


def requires(role: Role) -> Any:
    """A dependency: the request needs a session with at least ``role``; gives the Session."""
    return Depends(AccessRule(Role(role)))


def public() -> Any:
    """A dependency marking a route anyone may use (non-GET ones still check CSRF)."""
    return Depends(AccessRule(None))


ViewerSession = Annotated[Session, requires(Role.VIEWER)]
"""A route parameter: the session of a signed-in user with at least the viewer role."""
OperatorSession = Annotated[Session, requires(Role.OPERATOR)]
"""A route parameter: the session of a user with at least the operator role."""
AdminSession = Annotated[Session, requires(Role.ADMIN)]
"""A route parameter: the session of an admin."""


def access_rules(route: APIRoute) -> list[AccessRule]:
    """The access rules a route declares (in its dependencies, at any depth)."""
    found: list[AccessRule] = []
    stack = [route.dependant]
    while stack:
        dependant = stack.pop()
        if isinstance(dependant.call, AccessRule):
            found.append(dependant.call)
        stack.extend(dependant.dependencies)
    return found


@dataclass(frozen=True)
class RouteInfo:
    """A route of the application as a request reaches it."""

    path: str
    methods: frozenset[str]
    name: str
    route: APIRoute


def app_routes(app: FastAPI) -> list[RouteInfo]:
    """Every API route of ``app``, included routers flattened, with its full path."""
    # FastAPI >= 0.16x keeps included routers as branches of app.routes and offers
    # iter_route_contexts to walk them; older versions copy every route into app.routes.
    iterate = getattr(fastapi.routing, "iter_route_contexts", None)
    found: list[RouteInfo] = []
    if iterate is not None:
        for context in iterate(app.routes):
            route = context.original_route
            if isinstance(route, APIRoute):
                path = context.path or route.path
                found.append(RouteInfo(path, frozenset(route.methods or ()), route.name, route))
        return found
    for route in app.routes:
        if isinstance(route, APIRoute):
            found.append(RouteInfo(route.path, frozenset(route.methods or ()), route.name, route))
    return found


def check_routes_declare_access(app: FastAPI) -> None:
    """Raise if a route declares no access rule, or more than one."""
    for info in app_routes(app):
        rules = access_rules(info.route)
        if len(rules) != 1:
            declared = ", ".join(map(repr, rules)) or "none"
            raise RuntimeError(
                f"route {sorted(info.methods)} {info.path} must declare exactly one of "
                f"requires(role) or public(); it declares {declared}"
            )
