"""The Upload page: DICOM files from the user's computer into the router.

Operators and admins pick files (one or many; a folder's files can be selected together);
the web interface stores them through the receiver's STOW-RS endpoint as the sender
``webgui.upload_sender`` (:mod:`mercure.webgui.upload`), so they arrive exactly as from any
other sender, and shows each file's outcome. The request may reach ``webgui.max_upload_mb``;
it is streamed, never held in memory (:class:`mercure.webgui.asgi.BodyLimit`). Every upload
is in the audit log: who, how many files and instances, never what they hold.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.datastructures import UploadFile

from mercure.webgui.asgi import UPLOAD_PATH
from mercure.webgui.audit import audit
from mercure.webgui.auth import OperatorSession
from mercure.webgui.context import WebContext, web_context
from mercure.webgui.rendering import render
from mercure.webgui.upload import UploadTarget, upload, upload_target

router = APIRouter()

MAX_FILES = 1000
"""Files in one upload (the form parser's own limit)."""


def _page_values(web: WebContext, target: UploadTarget | str) -> dict[str, Any]:
    return {
        "problem": target if isinstance(target, str) else None,
        "sender": target.sender if isinstance(target, UploadTarget) else None,
        "max_upload_mb": web.config.webgui.max_upload_mb,
        "max_files": MAX_FILES,
        "error": None,
        "outcomes": None,
        "stored": 0,
    }


@router.get(UPLOAD_PATH, name="upload")
async def upload_page(request: Request, _session: OperatorSession) -> Response:
    """The form, or how to configure uploads when they are not."""
    web = web_context(request)
    return render(request, "upload.html", _page_values(web, upload_target(web.config)))


@router.post(UPLOAD_PATH, name="upload_submit")
async def upload_submit(request: Request, _session: OperatorSession) -> Response:
    """Store the posted files and show each one's outcome."""
    web = web_context(request)
    target = upload_target(web.config)
    context = _page_values(web, target)
    if isinstance(target, str):
        return render(request, "upload.html", context, status_code=409)
    form = await request.form(max_files=MAX_FILES, max_fields=10)
    files = [
        item for item in form.getlist("files") if isinstance(item, UploadFile) and item.filename
    ]
    if not files:
        context["error"] = "Choose one or more DICOM files first."
        return render(request, "upload.html", context, status_code=400)
    try:
        outcomes = await upload(target, [(f.filename or "?", f.file) for f in files])
    finally:
        for item in files:
            await item.close()
    stored = sum(1 for o in outcomes if o.stored)
    audit(
        request,
        "upload.store",
        target.sender,
        f"{stored} of {len(outcomes)} uploaded files stored through STOW-RS",
        files=len(outcomes),
        instances=stored,
        failed=len(outcomes) - stored,
    )
    context["outcomes"] = outcomes
    context["stored"] = stored
    return render(request, "upload.html", context)
