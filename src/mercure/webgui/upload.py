"""The Upload page's client: files a user picked, stored through the receiver's STOW-RS
endpoint as the sender ``webgui.upload_sender``.

The web interface places nothing itself: the receiver does, exactly as for any other STOW-RS
sender (staging, fsync, series folders, journal, tags, events, disk floor), so an upload is
durable when the page says "stored". The files arrive spooled by the form parser (memory up to
1 MB each, then a temporary file); they are sent on as one ``multipart/related`` request,
read in blocks, and each file's outcome is taken from the store response by its SOP Instance
UID (read from its File Meta before sending; a file without one is not sent).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any, BinaryIO

import httpx

from mercure.core.config.models import MercureConfig
from mercure.core.dicomwebclient import DicomMultipart, DicomPart
from mercure.dicomnet.errors import DicomFileError
from mercure.dicomnet.filemeta import read_file_meta_from

TIMEOUT = httpx.Timeout(300.0, connect=10.0)
REFERENCED_SOP_SEQUENCE = "00081199"
FAILED_SOP_SEQUENCE = "00081198"
SOP_INSTANCE_UID = "00081155"
FAILURE_REASON = "00081197"
ERROR_COMMENT = "00000902"

FAILURE_REASONS = {
    0xA700: "out of resources: the receiver's disk is at its floor",
    0xA900: "does not match (SOP class, or the study asked for)",
    0xC000: "cannot be understood (not well-formed DICOM)",
}


@dataclass
class UploadTarget:
    """Where and as whom the web interface stores: the STOW-RS URL, token and TLS check."""

    url: str
    sender: str
    token: str
    verify: ssl.SSLContext | bool


@dataclass
class FileOutcome:
    """One uploaded file: stored or not, and its SOP Instance UID or the reason."""

    name: str
    stored: bool
    detail: str


def upload_target(config: MercureConfig) -> UploadTarget | str:
    """The endpoint to store through, or what the configuration lacks for it (a sentence)."""
    stow = config.receiver.stow
    sender = config.webgui.upload_sender
    if stow is None:
        return (
            "The receiver's STOW-RS endpoint is off: add receiver.stow with a sender, and "
            "name that sender in webgui.upload_sender (see docs/webgui.md, Upload)."
        )
    if sender is None or sender not in stow.senders:
        return (
            "No sender is set for uploads: add a sender to receiver.stow.senders and name it "
            "in webgui.upload_sender (see docs/webgui.md, Upload)."
        )
    host = (
        "127.0.0.1" if stow.host in ("", "0.0.0.0") else "::1" if stow.host == "::" else stow.host
    )
    shown_host = f"[{host}]" if ":" in host else host
    verify: ssl.SSLContext | bool = False
    if stow.tls is not None:
        # The receiver's own certificate is the one trust anchor: the web interface runs on
        # the same installation and reaches the receiver by address, not by its host name.
        context = ssl.create_default_context(cafile=str(stow.tls.certificate))
        context.check_hostname = False
        verify = context
    scheme = "https" if stow.tls is not None else "http"
    return UploadTarget(
        url=f"{scheme}://{shown_host}:{stow.port}/studies",
        sender=sender,
        token=stow.senders[sender].token.get_secret_value(),
        verify=verify,
    )


@dataclass
class _File:
    name: str
    handle: BinaryIO
    size: int
    sop_instance_uid: str


def _readable(name: str, handle: BinaryIO) -> _File | FileOutcome:
    handle.seek(0)
    head = handle.read(132)
    if len(head) < 132 or head[128:132] != b"DICM":
        return FileOutcome(name, False, "not a DICOM file (no 'DICM' after the preamble)")
    handle.seek(0)
    try:
        meta = read_file_meta_from(handle, name)
    except DicomFileError as exc:
        return FileOutcome(name, False, str(exc))
    size = handle.seek(0, 2)
    handle.seek(0)
    return _File(name, handle, size, meta.sop_instance_uid)


def _outcomes_by_uid(document: dict[str, Any]) -> dict[str, tuple[bool, str]]:
    found: dict[str, tuple[bool, str]] = {}
    for item in (document.get(REFERENCED_SOP_SEQUENCE) or {}).get("Value") or []:
        uid = ((item.get(SOP_INSTANCE_UID) or {}).get("Value") or [""])[0]
        found[uid] = (True, uid)
    for item in (document.get(FAILED_SOP_SEQUENCE) or {}).get("Value") or []:
        uid = ((item.get(SOP_INSTANCE_UID) or {}).get("Value") or [""])[0]
        code = ((item.get(FAILURE_REASON) or {}).get("Value") or [0])[0]
        comment = ((item.get(ERROR_COMMENT) or {}).get("Value") or [""])[0]
        reason = FAILURE_REASONS.get(int(code), f"failure reason 0x{int(code):04X}")
        found[uid] = (False, f"{reason}: {comment}" if comment else reason)
    return found


async def upload(target: UploadTarget, files: list[tuple[str, BinaryIO]]) -> list[FileOutcome]:
    """Store ``files`` (name, open binary file) through the endpoint; one outcome per file,
    in the order given."""
    checked = [_readable(name, handle) for name, handle in files]
    sendable = [f for f in checked if isinstance(f, _File)]
    answers: dict[str, tuple[bool, str]] = {}
    problem: str | None = None
    if sendable:
        body = DicomMultipart(
            [DicomPart(f.name, f.size, f.handle) for f in sendable], "mercure-upload"
        )
        headers = {
            "Authorization": f"Bearer {target.token}",
            "Content-Type": body.content_type,
            "Content-Length": str(body.length),
            "Accept": "application/dicom+json",
        }
        try:
            async with httpx.AsyncClient(verify=target.verify, timeout=TIMEOUT) as client:
                response = await client.post(target.url, content=body.stream(), headers=headers)
        except httpx.HTTPError as exc:
            problem = f"the receiver's STOW-RS endpoint could not be reached: {exc}"
        else:
            if "json" in response.headers.get("content-type", ""):
                answers = _outcomes_by_uid(response.json())
            if response.status_code not in (200, 202, 409):
                problem = f"the receiver answered {response.status_code}: {response.text[:300]}"
    outcomes = []
    for item in checked:
        if isinstance(item, FileOutcome):
            outcomes.append(item)
        elif item.sop_instance_uid in answers:
            stored, detail = answers[item.sop_instance_uid]
            outcomes.append(FileOutcome(item.name, stored, detail))
        else:
            outcomes.append(
                FileOutcome(item.name, False, problem or "not in the receiver's answer")
            )
    return outcomes
