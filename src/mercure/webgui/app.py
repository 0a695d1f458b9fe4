"""The web application: ``create_app(context)``.

Layers, outermost first: proxy headers, security headers, root path, body limit (pure ASGI,
:mod:`mercure.webgui.asgi`), then FastAPI with the static files and the pages. Errors are
answered here, per request: not signed in (redirect or 401), forbidden (403), unknown
(404) and unexpected (500, logged) each get a page or, for htmx and scripts, a short answer.
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp

from mercure import __version__
from mercure.webgui.asgi import BodyLimit, ProxyHeaders, RootPath, SecurityHeaders
from mercure.webgui.auth import (
    Forbidden,
    NotSignedIn,
    PasswordChangeRequired,
    check_routes_declare_access,
    session_of,
    wants_page,
)
from mercure.webgui.context import WebContext
from mercure.webgui.pages import ROUTERS
from mercure.webgui.rendering import render, url

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")


def create_app(context: WebContext) -> FastAPI:
    """The FastAPI application of the web interface on ``context``."""
    app = FastAPI(
        title="mercure-router web interface",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.web = context
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for router in ROUTERS:
        app.include_router(router)
    check_routes_declare_access(app)
    _add_error_pages(app)
    return app


def asgi_app(app: FastAPI, context: WebContext) -> ASGIApp:
    """``app`` behind the pure ASGI layers: what uvicorn serves."""
    settings = context.settings
    inner: ASGIApp = BodyLimit(app, settings)
    inner = RootPath(inner, settings)
    inner = SecurityHeaders(inner, settings)
    return ProxyHeaders(inner, settings)


def _add_error_pages(app: FastAPI) -> None:
    @app.exception_handler(NotSignedIn)
    async def not_signed_in(request: Request, exc: NotSignedIn) -> Response:
        login = url(request, "login")
        if wants_page(request):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            params = []
            if request.method == "GET":  # after signing in, never repeat a form post
                params.append(f"next={quote(target, safe='/')}")
            if exc.reason:
                params.append("ended=1")
            query = "?" + "&".join(params) if params else ""
            return RedirectResponse(login + query, status_code=303)
        # htmx follows HX-Redirect (even on an error status); scripts see 401.
        return PlainTextResponse(
            exc.reason or "not signed in", status_code=401, headers={"HX-Redirect": login}
        )

    @app.exception_handler(ClientDisconnect)
    async def client_gone(request: Request, exc: ClientDisconnect) -> Response:
        # Nobody to answer (or BodyLimit answered 413 already and drops this).
        return PlainTextResponse("", status_code=400)

    @app.exception_handler(PasswordChangeRequired)
    async def password_change_required(request: Request, exc: PasswordChangeRequired) -> Response:
        change = url(request, "password_change")
        if wants_page(request):
            return RedirectResponse(change, status_code=303)
        return PlainTextResponse(
            "choose a new password first", status_code=403, headers={"HX-Redirect": change}
        )

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden) -> Response:
        if wants_page(request) or (
            request.method == "POST" and "hx-request" not in request.headers
        ):
            return render(
                request,
                "error.html",
                {"title": "Not allowed", "message": exc.message},
                status_code=403,
            )
        return PlainTextResponse(exc.message, status_code=403)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404 and wants_page(request):
            request.state.session = session_of(request, touch=False)
            return render(
                request,
                "error.html",
                {"title": "Not found", "message": "There is no such page."},
                status_code=404,
            )
        return PlainTextResponse(
            str(exc.detail), status_code=exc.status_code, headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("web request %s %s failed", request.method, request.url.path)
        return PlainTextResponse(
            "The web interface failed on this request; the error is in its log.",
            status_code=500,
        )
