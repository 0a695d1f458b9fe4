"""The STOW-RS endpoint (PS3.18 10.5): ``POST /studies[/{StudyInstanceUID}]``.

A small ASGI application rather than FastAPI: the order of the checks is the point. The
bearer token is checked before a byte of the body is read (a stranger cannot make us read,
let alone write, anything; uvicorn sends ``100 Continue`` only when the body is first read),
then the media type and the announced length, and only then is the body streamed, part by
part, through :class:`~mercure.core.ingest.part10.Part10Stream` into the receiver's own
placer: the same staging, fsync, series folders, journal, tags and disk floor as C-STORE.
The answer is given once every stored instance is durable.

Answers: 200 all stored, 202 some failed, 409 none stored (each failure in the
FailedSOPSequence with its reason code); 401 without or with a wrong token; 415 another media
type; 413 past ``max_request_mb`` / ``max_instance_mb``; 408 a body that stops arriving; 400 a
malformed body; 507 when the disk floor is reached (what was stored before is listed);
503 from uvicorn past ``max_connections``. Every answer but 200/202/409 closes the connection,
so a refused body is never read to its end.

The sender's name (never its token) is what logs and events show; the series' tags and the
journal carry it as the calling AE ``STOW:<name>`` (docs/data-folder.md).
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any

from mercure.core.config.models import StowConfig
from mercure.core.events import EventClient
from mercure.core.ingest.diskguard import DiskGuard
from mercure.core.ingest.multipart import (
    MultipartError,
    MultipartReader,
    PartData,
    PartEnd,
    PartStart,
    content_type_parameters,
)
from mercure.core.ingest.part10 import Part10Error, Part10Stream, ingest_association
from mercure.core.ingest.placement import AssociationState, Placer, uid_problem
from mercure.dicomnet.dimse import CANNOT_UNDERSTAND, OUT_OF_RESOURCES, SUCCESS
from mercure.dicomnet.errors import StoreRefused
from mercure.dicomnet.handler import StoreContext, StoreSink

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

LISTENER = "stow"
"""The listener name in journal lines and events of instances stored over STOW-RS."""
CALLED_AET = "STOW"
"""The ``ReceiverAET`` of series stored over STOW-RS."""
SENDER_PREFIX = "STOW:"
"""``SenderAET`` of a STOW-RS sender: this prefix and the sender's name."""
DICOM_JSON = "application/dicom+json"
MAX_SERIES_IN_EVENT = 256
MAX_BOUNDARY = 200

_PATH = re.compile(r"^(?:/[^?]*)?/studies(?:/([^/]+))?/?$")
_requests = itertools.count(1)


def sender_aet(sender: str) -> str:
    """The calling AE title a STOW-RS sender's instances are journalled and tagged with."""
    return SENDER_PREFIX + sender


class StowRefused(Exception):
    """The whole request is answered ``status`` with ``message`` (and the connection closed)."""

    def __init__(self, status: int, message: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = list(headers)


class DiskFloorReached(Exception):
    """An instance was refused at the disk floor: stop reading, answer 507."""


@dataclass
class PartResult:
    """One part's outcome: stored (``failure`` None) or its FailureReason and why."""

    sop_class_uid: str | None
    sop_instance_uid: str | None
    failure: int | None = None
    reason: str = ""


def response_body(results: list[PartResult]) -> dict[str, Any]:
    """The PS3.18 store response: ReferencedSOPSequence and FailedSOPSequence (DICOM JSON)."""

    def item(result: PartResult) -> dict[str, Any]:
        entry: dict[str, Any] = {}
        if result.sop_class_uid:
            entry["00081150"] = {"vr": "UI", "Value": [result.sop_class_uid]}
        if result.sop_instance_uid:
            entry["00081155"] = {"vr": "UI", "Value": [result.sop_instance_uid]}
        if result.failure is not None:
            entry["00081197"] = {"vr": "US", "Value": [result.failure]}
            # ErrorComment, as in a DIMSE response: the reason in words (LO: 64 characters).
            entry["00000902"] = {"vr": "LO", "Value": [result.reason[:64]]}
        return entry

    body: dict[str, Any] = {}
    stored = [item(r) for r in results if r.failure is None]
    failed = [item(r) for r in results if r.failure is not None]
    if stored:
        body["00081199"] = {"vr": "SQ", "Value": stored}
    if failed:
        body["00081198"] = {"vr": "SQ", "Value": failed}
    return body


class StowApp:
    """The ASGI application of the STOW-RS endpoint of one receiver process."""

    def __init__(
        self,
        settings: StowConfig,
        placer: Placer,
        disk: DiskGuard,
        events: EventClient,
    ) -> None:
        self.placer = placer
        self.disk = disk
        self.events = events
        self.configure(settings)

    def configure(self, settings: StowConfig) -> None:
        """Take new senders and limits (a configuration reload); address changes restart."""
        self.settings = settings
        self._tokens = [
            (sender.token.get_secret_value().encode(), name)
            for name, sender in settings.senders.items()
        ]

    def authenticate(self, authorization: str | None) -> str | None:
        """The sender whose token the ``Authorization`` header carries, or None.

        Every sender's token is compared, in constant time, whatever matched before: the
        answer's timing tells nothing about which token (or how much of one) was right.
        """
        scheme, _, given = (authorization or "").partition(" ")
        presented = given.strip().encode("latin-1", "replace")
        found = None
        for token, name in self._tokens:
            if hmac.compare_digest(token, presented) and scheme.lower() == "bearer":
                found = name
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one HTTP request: the per-request error boundary."""
        if scope["type"] != "http":
            return
        try:
            await self._handle(scope, receive, send)
        except StowRefused as refused:
            peer = scope.get("client") or ("?", 0)
            log.warning(
                "STOW-RS request from %s answered %d: %s", peer[0], refused.status, refused.message
            )
            await _answer_text(send, refused.status, refused.message, refused.headers)
        except OSError as exc:
            # Nothing was acknowledged: the sender may send the whole request again.
            log.error("STOW-RS request failed while storing: %s", exc)
            await _answer_text(send, 500, f"storing failed: {exc.strerror or exc}", [])

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _PATH.match(scope["path"])
        if match is None:
            raise StowRefused(404, "not found: this endpoint serves POST /studies (STOW-RS)")
        if scope["method"] != "POST":
            raise StowRefused(405, "only POST (STOW-RS store) is served here", [("allow", "POST")])
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        peer = scope.get("client") or ("", 0)
        sender = self.authenticate(headers.get("authorization"))
        if sender is None:
            self._unauthorized(peer[0], "authorization" in headers)
            raise StowRefused(
                401,
                "a valid bearer token is required (Authorization: Bearer <token>)",
                [("www-authenticate", 'Bearer realm="mercure STOW-RS"')],
            )
        study_uid = match.group(1)
        if study_uid is not None and uid_problem(study_uid, "StudyInstanceUID"):
            raise StowRefused(400, f"the URL's {uid_problem(study_uid, 'StudyInstanceUID')}")
        boundary = self._check_content_type(headers.get("content-type", ""))
        self._check_length(headers.get("content-length"))
        if self.disk.full:
            raise StowRefused(507, "free disk space is below the configured floor: try again later")
        started = time.time()
        key = f"stow-{os.getpid()}-{next(_requests)}"
        state = AssociationState(
            key=key,
            listener=LISTENER,
            calling_aet=sender_aet(sender),
            called_aet=CALLED_AET,
            address=str(peer[0]),
        )
        request = _StowRequest(self, state, study_uid, peer, scope.get("scheme") == "https")
        size = 0
        outcome = "stored"
        self.placer.associations += 1
        try:
            try:
                size = await request.read(receive, boundary)
            except DiskFloorReached:
                outcome = "disk full"
                await _answer_json(send, 507, response_body(request.results), close=True)
                return
            except StowRefused as refused:
                outcome = refused.message
                raise
            status = _overall_status(request.results)
            if status == 400:
                outcome = "no parts"
                raise StowRefused(400, "the request holds no parts")
            await _answer_json(send, status, response_body(request.results))
        finally:
            request.abort()
            self.placer.associations -= 1
            self.placer.release(state, released=True)
            self._report(sender, state, request.results, size, started, outcome)

    def _check_content_type(self, value: str) -> str:
        media, parameters = content_type_parameters(value)
        part_type = parameters.get("type", "application/dicom").lower()
        if media != "multipart/related" or part_type != "application/dicom":
            shown = value[:100] or "none"
            raise StowRefused(
                415,
                f"Content-Type {shown!r} is not supported: send "
                'multipart/related; type="application/dicom"; boundary=...',
            )
        boundary = parameters.get("boundary", "")
        # RFC 2046 allows 70 characters; Orthanc's DICOMweb plug-in sends 73. Be lenient.
        if not boundary or len(boundary) > MAX_BOUNDARY:
            raise StowRefused(
                400, f"Content-Type {value[:200]!r} lacks a usable boundary parameter"
            )
        return boundary

    def _check_length(self, value: str | None) -> None:
        if value is None:
            return
        try:
            length = int(value)
        except ValueError:
            raise StowRefused(400, "Content-Length is not a number") from None
        if length > self.settings.max_request_mb << 20:
            raise StowRefused(
                413,
                "request larger than receiver.stow.max_request_mb "
                f"({self.settings.max_request_mb} MiB)",
            )

    def _unauthorized(self, address: str, had_credentials: bool) -> None:
        what = "a wrong token" if had_credentials else "no token"
        log.warning("STOW-RS request from %s refused: %s", address, what)
        self.events.emit(
            "stow.rejected",
            severity="warning",
            message=f"STOW-RS request refused: {what}",
            address=address,
            listener=LISTENER,
        )

    def _report(
        self,
        sender: str,
        state: AssociationState,
        results: list[PartResult],
        size: int,
        started: float,
        outcome: str,
    ) -> None:
        stored = sum(1 for r in results if r.failure is None)
        failed = len(results) - stored
        log.info(
            "STOW-RS from sender %s (%s): %d stored, %d failed (%s)",
            sender,
            state.address,
            stored,
            failed,
            outcome,
        )
        self.events.emit(
            "stow.request",
            severity="info" if failed == 0 and outcome == "stored" else "warning",
            message=f"STOW-RS from {sender}: {stored} stored, {failed} failed ({outcome})",
            sender=sender,
            address=state.address,
            listener=LISTENER,
            association=state.key,
            instances=stored,
            failed=failed,
            bytes=size,
            series=sorted(state.series_seen)[:MAX_SERIES_IN_EVENT],
            series_count=len(state.series_seen),
            seconds=round(time.time() - started, 3),
        )


class _StowRequest:
    """The body of one authenticated request, read and placed part by part."""

    def __init__(
        self,
        app: StowApp,
        state: AssociationState,
        study_uid: str | None,
        peer: tuple[str, int],
        tls: bool,
    ) -> None:
        self.app = app
        self.state = state
        self.study_uid = study_uid
        self.association = ingest_association(
            state.calling_aet, CALLED_AET, (str(peer[0]), int(peer[1] or 0)), tls=tls
        )
        self.results: list[PartResult] = []
        self._stream: Part10Stream | None = None
        self._failed: PartResult | None = None
        self._part_size = 0
        self._parts = 0

    def _open_sink(self, context: StoreContext) -> StoreSink:
        app = self.app
        if not app.disk.admit():
            raise StoreRefused(OUT_OF_RESOURCES, "free disk space below the configured floor")
        return app.disk.guard(app.placer.open_sink(self.state, context))

    async def read(self, receive: Receive, boundary: str) -> int:
        """Read and place the whole body; its size in bytes."""
        settings = self.app.settings
        max_request = settings.max_request_mb << 20
        try:
            reader = MultipartReader(boundary)
        except MultipartError as exc:
            raise StowRefused(400, str(exc)) from None
        size = 0
        while True:
            try:
                async with asyncio.timeout(settings.read_timeout):
                    message = await receive()
            except TimeoutError:
                raise StowRefused(
                    408, f"no data for {settings.read_timeout:g} s: request abandoned"
                ) from None
            if message["type"] == "http.disconnect":
                raise StowRefused(400, "the client went away before the request was complete")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > max_request:
                raise StowRefused(
                    413,
                    f"request larger than receiver.stow.max_request_mb "
                    f"({settings.max_request_mb} MiB)",
                )
            if chunk:
                try:
                    events = reader.feed(chunk)
                except MultipartError as exc:
                    raise StowRefused(400, str(exc)) from None
                for event in events:
                    await self._on_event(event)
            if not message.get("more_body", False):
                break
        if not reader.ended:
            raise StowRefused(400, "the body ends before its closing multipart boundary")
        return size

    async def _on_event(self, event: PartStart | PartData | PartEnd) -> None:
        if isinstance(event, PartData):
            self._data(event.data)
        elif isinstance(event, PartStart):
            self._start(event.headers)
        else:
            await self._end()

    def _start(self, headers: dict[str, str]) -> None:
        self._parts += 1
        self._part_size = 0
        self._failed = None
        media, _ = content_type_parameters(headers.get("content-type", "application/dicom"))
        if media != "application/dicom":
            self._failed = PartResult(
                None,
                None,
                CANNOT_UNDERSTAND,
                f"part {self._parts}: media type {media[:60]!r} is not application/dicom",
            )
            return
        self._stream = Part10Stream(
            self.association,
            self._open_sink,
            expected_study_uid=self.study_uid,
            message_id=self._parts,
        )

    def _data(self, data: memoryview) -> None:
        stream = self._stream
        if stream is None:
            return  # a part already failed: its remaining bytes are skipped
        self._part_size += len(data)
        max_instance = self.app.settings.max_instance_mb
        if self._part_size > max_instance << 20:
            raise StowRefused(
                413, f"instance larger than receiver.stow.max_instance_mb ({max_instance} MiB)"
            )
        try:
            stream.feed(data)
        except Part10Error as exc:
            self._fail(stream, CANNOT_UNDERSTAND, f"part {self._parts}: {exc}")
        except StoreRefused as exc:
            self._refused(stream, exc)

    async def _end(self) -> None:
        stream, self._stream = self._stream, None
        if stream is None:
            if self._failed is not None:
                self.results.append(self._failed)
                log.warning("STOW-RS part not stored: %s", self._failed.reason)
            return
        try:
            status = await stream.finish()
        except Part10Error as exc:
            self._fail(stream, CANNOT_UNDERSTAND, f"part {self._parts}: {exc}")
            await self._end()
            return
        except StoreRefused as exc:
            self._refused(stream, exc)
            await self._end()
            return
        context = stream.context
        assert context is not None
        if status == SUCCESS:
            self.results.append(PartResult(context.sop_class_uid, context.sop_instance_uid))
        else:
            reason = stream.reason or f"status 0x{status:04X}"
            self.results.append(
                PartResult(context.sop_class_uid, context.sop_instance_uid, status, reason)
            )
            log.warning("STOW-RS part %d not stored: %s", self._parts, reason)

    def _fail(self, stream: Part10Stream, status: int, reason: str) -> None:
        stream.abort()
        context = stream.context
        self._stream = None
        self._failed = PartResult(
            context.sop_class_uid if context else None,
            context.sop_instance_uid if context else None,
            status,
            reason,
        )

    def _refused(self, stream: Part10Stream, exc: StoreRefused) -> None:
        self._fail(stream, exc.status, f"part {self._parts}: {exc}")
        if exc.status == OUT_OF_RESOURCES:
            assert self._failed is not None
            self.results.append(self._failed)
            raise DiskFloorReached

    def abort(self) -> None:
        """Drop a partly received instance (the request ended early or failed)."""
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.abort()


def _overall_status(results: list[PartResult]) -> int:
    if not results:
        return 400
    failed = sum(1 for r in results if r.failure is not None)
    if failed == 0:
        return 200
    return 409 if failed == len(results) else 202


async def _answer_json(
    send: Send, status: int, body: dict[str, Any], *, close: bool = False
) -> None:
    payload = json.dumps(body).encode()
    headers = [
        (b"content-type", DICOM_JSON.encode()),
        (b"content-length", str(len(payload)).encode()),
    ]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


async def _answer_text(send: Send, status: int, message: str, extra: list[tuple[str, str]]) -> None:
    payload = (message + "\n").encode()
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(payload)).encode()),
        # Refusals close the connection: a body not read is never read to its end.
        (b"connection", b"close"),
        *((name.encode(), value.encode("latin-1")) for name, value in extra),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
