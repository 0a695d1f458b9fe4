"""The ``dicomweb`` target: STOW-RS (PS3.18 10.5), streamed in batches with bounded memory.

Instances go in batches of at most ``batch_instances`` files or ``batch_megabytes`` MB (at least
one file), one ``multipart/related; type="application/dicom"`` request each. The body is
generated while it is sent, a file read in 1 MB blocks, with an exact Content-Length (no chunked
encoding, which some servers refuse), so memory does not grow with the series. The server's
answer names per instance what it stored (ReferencedSOPSequence) and what it refused
(FailedSOPSequence with a FailureReason); only stored instances are confirmed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from mercure.core.config.models import DicomWebTarget
from mercure.core.dicomwebclient import (
    BodyChanged,
    DicomMultipart,
    DicomPart,
    dicomweb_client,
    studies_path,
)
from mercure.core.masking import excerpt
from mercure.dicomnet.errors import DicomNetError
from mercure.dicomnet.filemeta import read_file_meta
from mercure.dispatcher.errors import DeliveryError
from mercure.dispatcher.targets.base import (
    Confirm,
    SendJob,
    SendResult,
    TargetPlugin,
    TestSteps,
)

REFERENCED_SOP_SEQUENCE = "00081199"
FAILED_SOP_SEQUENCE = "00081198"
REFERENCED_SOP_INSTANCE_UID = "00081155"
FAILURE_REASON = "00081197"
TEST_TIMEOUT = 10.0


@dataclass(frozen=True)
class _Part:
    path: Path
    sop_instance_uid: str
    size: int


def batches(parts: Sequence[_Part], max_count: int, max_bytes: int) -> Iterator[list[_Part]]:
    """Consecutive batches of at most ``max_count`` parts and ``max_bytes`` (one part at least)."""
    batch: list[_Part] = []
    size = 0
    for part in parts:
        if batch and (len(batch) >= max_count or size + part.size > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(part)
        size += part.size
    if batch:
        yield batch


def _uids(document: dict[str, Any], sequence: str) -> dict[str, str]:
    """SOP Instance UID -> failure reason (empty when stored) of one response sequence."""
    found = {}
    for item in document.get(sequence, {}).get("Value", []) or []:
        uid = (item.get(REFERENCED_SOP_INSTANCE_UID, {}).get("Value") or [""])[0]
        reason = (item.get(FAILURE_REASON, {}).get("Value") or [None])[0]
        found[uid] = f"failure reason 0x{int(reason):04X}" if reason is not None else ""
    return found


class DicomWebPlugin(TargetPlugin):
    """Sends with STOW-RS."""

    def __init__(self, name: str, config: DicomWebTarget) -> None:
        super().__init__(name)
        self.config = config

    def _client(self, timeout: httpx.Timeout | None = None) -> httpx.AsyncClient:
        return dicomweb_client(self.config, timeout or httpx.Timeout(120.0, connect=15.0))

    async def send(self, job: SendJob, confirm: Confirm) -> SendResult:
        """POST the pending files to ``<url>[/<stow_url_prefix>]/studies`` batch by batch."""
        result = SendResult()
        parts = []
        for path in job.files:
            try:
                meta = await asyncio.to_thread(read_file_meta, path)
            except DicomNetError as exc:
                result.rejected[path] = str(exc)
                continue
            parts.append(_Part(path, meta.sop_instance_uid, path.stat().st_size))
        limit = self.config.batch_megabytes << 20
        async with self._client() as client:
            for batch in batches(parts, self.config.batch_instances, limit):
                await self._post(client, batch, confirm, result)
        return result

    async def _post(
        self, client: httpx.AsyncClient, batch: list[_Part], confirm: Confirm, result: SendResult
    ) -> None:
        body = DicomMultipart([DicomPart(p.path.name, p.size, p.path) for p in batch])
        headers = {"Content-Type": body.content_type, "Content-Length": str(body.length)}
        try:
            response = await client.post(
                studies_path(self.config.stow_url_prefix), content=body.stream(), headers=headers
            )
        except BodyChanged as exc:
            raise DeliveryError(str(exc)) from exc
        except httpx.HTTPError as exc:
            raise DeliveryError(f"STOW-RS to {self.config.url} failed: {exc}") from exc
        if response.status_code in (401, 403):
            raise DeliveryError(
                f"{self.config.url} refused the credentials (HTTP {response.status_code})"
            )
        try:
            document = response.json() if response.content else {}
        except ValueError:
            document = {}
        if isinstance(document, list):  # some servers wrap the dataset in a list
            document = document[0] if document else {}
        stored = _uids(document, REFERENCED_SOP_SEQUENCE)
        failed = _uids(document, FAILED_SOP_SEQUENCE)
        answered = REFERENCED_SOP_SEQUENCE in document or FAILED_SOP_SEQUENCE in document
        if not answered:
            if response.status_code != 200:
                # Servers echo requests in error pages, our Authorization header included.
                text = excerpt(response.text)
                raise DeliveryError(
                    f"STOW-RS to {self.config.url} answered HTTP {response.status_code}: {text}"
                )
            stored = {part.sop_instance_uid: "" for part in batch}  # 200 without a body
        for part in batch:
            if part.sop_instance_uid in stored:
                confirm(part.path, part.size)
            elif part.sop_instance_uid in failed:
                result.rejected[part.path] = failed[part.sop_instance_uid]
            else:
                result.rejected[part.path] = (
                    f"not confirmed by the server (HTTP {response.status_code})"
                )

    async def test(self, steps: TestSteps) -> str:
        """Connect (and TLS), then a QIDO-RS probe
        ``GET <url>[/<qido_url_prefix>]/studies?limit=1``."""
        url = self.config.url
        parts = urlsplit(url)
        host = parts.hostname or ""
        secure = parts.scheme == "https"
        port = parts.port or (443 if secure else 80)
        try:
            _reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), TEST_TIMEOUT
            )
        except TimeoutError:
            steps.fail("connect", DeliveryError(f"no answer from {host}:{port}"))
        except OSError as exc:
            steps.fail("connect", DeliveryError(f"cannot connect to {host}:{port}: {exc}"))
        writer.close()
        steps.ok("connect", f"{host}:{port} accepted the connection")
        client = self._client(httpx.Timeout(TEST_TIMEOUT))
        async with client:
            try:
                response = await client.get(
                    studies_path(self.config.qido_url_prefix), params={"limit": "1"}
                )
            except httpx.ConnectError as exc:
                step = "TLS handshake" if secure else "connect"
                steps.fail(step, DeliveryError(f"cannot reach {url}: {exc}"))
            except httpx.HTTPError as exc:
                steps.fail("QIDO-RS answer", DeliveryError(f"cannot reach {url}: {exc}"))
        if secure:
            verified = "certificate verified" if self.config.verify_tls else "not verified"
            steps.ok("TLS handshake", f"{host}:{port}, {verified}")
        else:
            steps.skipped("TLS handshake", "http: no TLS")
        if response.status_code in (401, 403):
            steps.fail(
                "credentials accepted",
                DeliveryError(f"{url} refused the credentials (HTTP {response.status_code})"),
            )
        if self.config.auth == "none":
            steps.skipped("credentials accepted", "no credentials configured (auth: none)")
        else:
            steps.ok("credentials accepted", f"{self.config.auth} login accepted")
        if response.status_code >= 400:
            steps.fail(
                "QIDO-RS answer",
                DeliveryError(
                    f"{url} answered HTTP {response.status_code}: {excerpt(response.text)}"
                ),
            )
        kind = response.headers.get("content-type", "").split(";")[0] or "no body"
        steps.ok("QIDO-RS answer", f"HTTP {response.status_code} ({kind})")
        return f"DICOMweb service {url} answered (HTTP {response.status_code})"
