"""The ``dicom`` target: C-STORE through the project's own upper layer (mercure.dicomnet).

Every file is sent as stored when the target accepted its SOP class in its transfer syntax.
For each SOP class we also propose a fallback context in Explicit / Implicit VR Little Endian,
so that a target refusing the stored syntax (say JPEG) gets the instance decompressed
(:mod:`mercure.dispatcher.transcode`); an instance that cannot be converted, or whose SOP class
the target refused, is reported as refused with the reason. Several associations per task
(``parallel_associations``) each send an interleaved share of the instances.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
import threading
from collections import defaultdict
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from mercure.core.config.models import DicomTarget
from mercure.core.errors import MercureError
from mercure.core.tlsclient import client_tls_context
from mercure.dicomnet.errors import AssociationError, DicomNetError, PresentationContextError
from mercure.dicomnet.filemeta import FileMeta, read_file_meta_from
from mercure.dicomnet.requestor import Association, ContextProposal, DimseResponse
from mercure.dicomnet.uids import VERIFICATION_SOP_CLASS
from mercure.dispatcher.errors import DeliveryError, TargetConfigError
from mercure.dispatcher.targets.base import (
    Confirm,
    SendJob,
    SendResult,
    TargetPlugin,
    TestSteps,
)
from mercure.dispatcher.transcode import CONVERTIBLE_TO, encode_as

log = logging.getLogger(__name__)

MAX_CONTEXTS = 128
TEST_TIMEOUT = 10.0
"""Seconds a test's connection may take."""

T = TypeVar("T")


@dataclass(frozen=True)
class _Instance:
    path: Path
    meta: FileMeta
    size: int


def _syntax(instance: _Instance) -> tuple[str, str]:
    """The instance's SOP class and stored transfer syntax."""
    return instance.meta.sop_class_uid, instance.meta.transfer_syntax_uid


def _scan(files: list[Path]) -> tuple[list[_Instance], dict[Path, str]]:
    instances, unreadable = [], {}
    for path in files:
        try:
            # Unbuffered, and the size from the open descriptor: this runs once per instance.
            with open(path, "rb", buffering=0) as handle:
                meta = read_file_meta_from(handle, str(path))
                size = os.fstat(handle.fileno()).st_size
            instances.append(_Instance(path, meta, size))
        except (DicomNetError, OSError) as exc:
            unreadable[path] = str(exc)
    return instances, unreadable


def _association_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where installed (less CPU per request, as in the receiver), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _run_in_own_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` on a new event loop in the calling (worker) thread."""
    with asyncio.Runner(loop_factory=_association_loop_factory()) as runner:
        return runner.run(coroutine)


def propose(instances: list[_Instance]) -> list[ContextProposal]:
    """One context per SOP class and stored syntax, plus an uncompressed fallback per class."""
    stored: dict[str, list[str]] = defaultdict(list)
    for instance in instances:
        syntaxes = stored[instance.meta.sop_class_uid]
        if instance.meta.transfer_syntax_uid not in syntaxes:
            syntaxes.append(instance.meta.transfer_syntax_uid)
    exact = [ContextProposal(sop, (ts,)) for sop, syntaxes in stored.items() for ts in syntaxes]
    fallback = []
    for sop, syntaxes in stored.items():
        others = tuple(ts for ts in CONVERTIBLE_TO if ts not in syntaxes)
        if others:
            fallback.append(ContextProposal(sop, others))
    return (exact + fallback)[:MAX_CONTEXTS]


class DicomPlugin(TargetPlugin):
    """Sends with C-STORE over one or more associations."""

    def __init__(self, name: str, config: DicomTarget) -> None:
        super().__init__(name)
        self.config = config
        self._send_called_aet = config.aet_target

    def _host(self, job: SendJob | None) -> str:
        if self.config.use_sender_address and job is not None:
            if not job.info.sender_address:
                raise TargetConfigError(
                    "use_sender_address is set but the task has no sender address"
                )
            return job.info.sender_address
        return self.config.host

    def _calling_aet(self, job: SendJob | None) -> str:
        if self.config.pass_sender_aet and job is not None and job.info.sender_aet:
            return job.info.sender_aet
        return self.config.aet_source

    def _called_aet(self, job: SendJob | None) -> str:
        """aet_target, or with pass_receiver_aet the AE title the series was sent to here."""
        if self.config.pass_receiver_aet and job is not None and job.info.receiver_aet:
            return job.info.receiver_aet
        return self.config.aet_target

    async def _connect(
        self,
        host: str,
        calling_aet: str,
        contexts: list[ContextProposal],
        called_aet: str | None = None,
    ) -> Association:
        ssl_context = client_tls_context(self.config.tls) if self.config.tls else None
        try:
            return await Association.connect(
                host,
                self.config.port,
                called_aet=called_aet or self.config.aet_target,
                calling_aet=calling_aet,
                contexts=contexts,
                ssl_context=ssl_context,
                server_hostname=host if ssl_context else None,
                max_pdu=0x100000,
            )
        except AssociationError as exc:
            raise DeliveryError(f"{exc}") from exc
        except (OSError, ssl.SSLError) as exc:
            where = f"{self.config.aet_target}@{host}:{self.config.port}"
            raise DeliveryError(f"cannot connect to {where}: {exc}") from exc

    async def send(self, job: SendJob, confirm: Confirm) -> SendResult:
        """Send the pending files over ``parallel_associations`` associations."""
        result = SendResult()
        if not job.files:
            return result
        instances, unreadable = await asyncio.to_thread(_scan, list(job.files))
        result.rejected.update(unreadable)
        if not instances:
            return result
        host, calling_aet = self._host(job), self._calling_aet(job)
        self._send_called_aet = self._called_aet(job)
        contexts = propose(instances)
        count = min(self.config.parallel_associations, len(instances))
        shares = [instances[i::count] for i in range(count)]
        outcomes: Sequence[dict[Path, str] | BaseException]
        stop = threading.Event()
        if count == 1:
            outcomes = await asyncio.gather(
                self._send_share(host, calling_aet, contexts, shares[0], confirm, stop),
                return_exceptions=True,
            )
        else:
            # One thread and event loop (uvloop where installed) per association: file reads
            # and socket writes release the GIL, so several associations use more than one
            # core. Measured, the process stays well below one core (docs/performance.md), so
            # processes instead of threads would add start-up and IPC for no gain.
            loop = asyncio.get_running_loop()
            pool = ThreadPoolExecutor(count, thread_name_prefix=f"dicom-{self.name}")
            try:
                outcomes = await asyncio.gather(
                    *(
                        loop.run_in_executor(
                            pool,
                            _run_in_own_loop,
                            self._send_share(host, calling_aet, contexts, share, confirm, stop),
                        )
                        for share in shares
                    ),
                    return_exceptions=True,
                )
            finally:
                stop.set()  # when cancelled: the threads stop after their current instance
                pool.shutdown(wait=False)
        errors: list[BaseException] = []
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                errors.append(outcome)
            else:
                result.rejected.update(outcome)
        if errors:
            raise errors[0]
        return result

    async def _send_share(
        self,
        host: str,
        calling_aet: str,
        contexts: list[ContextProposal],
        share: list[_Instance],
        confirm: Confirm,
        stop: threading.Event,
    ) -> dict[Path, str]:
        rejected: dict[Path, str] = {}
        association = await self._connect(host, calling_aet, contexts, self._send_called_aet)
        # Instances the target takes as stored go pipelined (the next read and sent the moment
        # an answer arrives); those that need converting follow one by one.
        as_stored = [i for i in share if association.context_for(*_syntax(i)) is not None]
        converted = [i for i in share if association.context_for(*_syntax(i)) is None]
        sending = as_stored[0] if as_stored else None
        try:
            if stop.is_set():
                raise DeliveryError("sending was stopped")
            try:
                files = [(i.path, i.meta) for i in as_stored]
                async with contextlib.aclosing(association.store_files(files)) as outcomes:
                    async for index, outcome in outcomes:
                        instance = as_stored[index]
                        sending = as_stored[index + 1] if index + 1 < len(as_stored) else None
                        if isinstance(outcome, DimseResponse):
                            self._record(instance, outcome, confirm, rejected)
                        else:  # unreadable file
                            rejected[instance.path] = str(outcome)
                        if stop.is_set():
                            raise DeliveryError("sending was stopped")
                for instance in converted:
                    if stop.is_set():
                        raise DeliveryError("sending was stopped")
                    sending = instance
                    try:
                        response = await self._store(association, instance)
                    except MercureError as exc:  # not convertible, no context, unreadable file
                        if isinstance(exc, AssociationError):
                            raise
                        rejected[instance.path] = str(exc)
                        continue
                    self._record(instance, response, confirm, rejected)
            except AssociationError as exc:
                # Name the instance the link failed on: a peer aborting on one file (too
                # big, a syntax it chokes on) is then found without a packet capture.
                where = (
                    f" (while sending {sending.path.name}, "
                    f"SOP Instance UID {sending.meta.sop_instance_uid})"
                    if sending is not None
                    else ""
                )
                raise DeliveryError(f"{exc}{where}") from exc
        except BaseException:
            association.abort()
            raise
        try:
            await association.release()
        except (DicomNetError, OSError) as exc:
            # Every response is in: the instances are delivered whatever the release does.
            log.warning("target %s: association release failed after sending: %s", self.name, exc)
        return rejected

    @staticmethod
    def _record(
        instance: _Instance, response: DimseResponse, confirm: Confirm, rejected: dict[Path, str]
    ) -> None:
        if response.ok:
            confirm(instance.path, instance.size)
        else:
            comment = f" ({response.error_comment})" if response.error_comment else ""
            rejected[instance.path] = f"status 0x{response.status:04X}{comment}"

    async def _store(self, association: Association, instance: _Instance) -> DimseResponse:
        meta = instance.meta
        if association.context_for(meta.sop_class_uid, meta.transfer_syntax_uid) is not None:
            return await association.store_file(instance.path, meta=meta)
        for syntax in CONVERTIBLE_TO:
            if association.context_for(meta.sop_class_uid, syntax) is not None:
                data = await asyncio.to_thread(encode_as, instance.path, syntax)
                return await association.store_dataset(
                    meta.sop_class_uid, meta.sop_instance_uid, syntax, data
                )
        raise PresentationContextError(
            f"the target accepted SOP class {meta.sop_class_uid} neither in the stored "
            f"transfer syntax {meta.transfer_syntax_uid} nor uncompressed"
        )

    async def test(self, steps: TestSteps) -> str:
        """Resolve the host, connect (and TLS), open an association, C-ECHO."""
        if self.config.use_sender_address:
            steps.warning(
                "sender address",
                "use_sender_address is set: deliveries go back to each series' sender; "
                f"this test reaches the configured host {self.config.host}",
            )
        host, port = self.config.host, self.config.port
        where = f"{self.config.aet_target}@{host}:{port}"
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), TEST_TIMEOUT
            )
        except (OSError, TimeoutError) as exc:
            steps.fail("resolve host", DeliveryError(f"cannot resolve {host!r}: {exc}"))
        addresses = sorted({str(info[4][0]) for info in infos})
        steps.ok("resolve host", f"{host} is {', '.join(addresses)}")
        await self._probe(steps, "TCP connect", host, port, None)
        if self.config.tls:
            try:
                context = client_tls_context(self.config.tls)
            except (OSError, ssl.SSLError) as exc:
                steps.fail("TLS handshake", DeliveryError(f"TLS settings unusable: {exc}"))
            detail = await self._probe(steps, "TLS handshake", host, port, context)
            steps.ok("TLS handshake", detail)
        else:
            steps.skipped("TLS handshake", "no tls configured: plain DICOM")
        try:
            association = await asyncio.wait_for(
                self._connect(
                    host, self.config.aet_source, [ContextProposal(VERIFICATION_SOP_CLASS)]
                ),
                TEST_TIMEOUT,
            )
        except TimeoutError:
            steps.fail(
                "association accepted",
                DeliveryError(f"{where} did not answer the association in {TEST_TIMEOUT:.0f} s"),
            )
        except MercureError as exc:
            steps.fail("association accepted", exc)
        steps.ok(
            "association accepted",
            f"{where} accepted calling AE title {self.config.aet_source}",
        )
        async with association:
            try:
                response = await asyncio.wait_for(association.echo(), TEST_TIMEOUT)
            except TimeoutError:
                steps.fail("C-ECHO", DeliveryError(f"no C-ECHO answer in {TEST_TIMEOUT:.0f} s"))
            except DicomNetError as exc:
                steps.fail("C-ECHO", DeliveryError(f"C-ECHO failed: {exc}"))
            if not response.ok:
                steps.fail(
                    "C-ECHO", DeliveryError(f"{where} answered C-ECHO with 0x{response.status:04X}")
                )
        steps.ok("C-ECHO", "status 0x0000 (success)")
        return f"C-ECHO to {where} succeeded"

    async def _probe(
        self,
        steps: TestSteps,
        name: str,
        host: str,
        port: int,
        context: ssl.SSLContext | None,
    ) -> str:
        """Open and close a connection (TLS with ``context``); what the handshake gave."""
        try:
            _reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    host, port, ssl=context, server_hostname=host if context else None
                ),
                TEST_TIMEOUT,
            )
        except TimeoutError:
            steps.fail(name, DeliveryError(f"no answer from {host}:{port} in {TEST_TIMEOUT:.0f} s"))
        except (OSError, ssl.SSLError) as exc:
            steps.fail(name, DeliveryError(f"{host}:{port}: {exc}"))
        detail = f"{host}:{port} accepted the connection"
        if context is not None:
            tls = writer.get_extra_info("ssl_object")
            if tls is not None:
                peer = tls.getpeercert() or {}
                subject = ", ".join(f"{k}={v}" for part in peer.get("subject", ()) for k, v in part)
                detail = f"{tls.version()}, {tls.cipher()[0]}" + (
                    f", certificate of {subject}" if subject else ""
                )
                if not self.config.tls or not self.config.tls.verify:
                    detail += " (not verified: verify is off)"
        writer.close()
        # The probe is done; how the peer closes does not matter.
        with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 2.0)
        if context is None:
            steps.ok(name, detail)
        return detail
