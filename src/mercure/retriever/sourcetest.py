"""Testing a source step by step: what ``mercure test-source`` and the web page's *Test* show.

A DICOM source: connect, then C-ECHO on an association (which also proves the TLS handshake
and that the PACS accepts our AE title), then a C-FIND at study level for one study (which
proves it lets us query: many PACS answer C-ECHO to anyone but C-FIND only to the AE titles
they know). A DICOMweb source: connect, then a QIDO-RS search for one study (TLS, login and
prefix all show there). Each wait is bounded by :data:`STEP_TIMEOUT` (or the source's own
timeout, if shorter), so a silent peer fails the test well inside the web page's limit.
The report is :class:`~mercure.core.targettest.TargetTestReport`, as a target's is.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

from mercure.core.config.models import DicomSource, Source
from mercure.core.masking import scrub
from mercure.core.targettest import StepState, TargetTestReport, TestStep
from mercure.dicomnet.errors import AssociationError, PresentationContextError
from mercure.dicomnet.negotiation import ContextProposal
from mercure.dicomnet.uids import VERIFICATION_SOP_CLASS
from mercure.retriever.query import QueryError, QueryFilter, find_studies, source_association

STEP_TIMEOUT = 10.0


class _Failed(Exception):
    """A step failed: the test ends with this message."""


class _Steps:
    def __init__(self) -> None:
        self.steps: list[TestStep] = []

    def add(self, name: str, state: StepState, detail: str) -> None:
        self.steps.append(TestStep(name=name, state=state, detail=scrub(detail)))

    def fail(self, name: str, detail: str) -> None:
        self.add(name, "failed", detail)
        raise _Failed(detail)


async def _connect(steps: _Steps, host: str, port: int, timeout: float) -> None:
    try:
        _reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except TimeoutError:
        steps.fail("connect", f"no answer from {host}:{port} within {timeout:g} s")
    except OSError as exc:
        steps.fail("connect", f"cannot connect to {host}:{port}: {exc}")
    writer.close()
    steps.add("connect", "ok", f"{host}:{port} accepted the connection")


async def _echo(name: str, source: DicomSource) -> str:
    """C-ECHO on its own association; an error message, or "" when it worked."""
    try:
        async with source_association(
            name, source, [ContextProposal(VERIFICATION_SOP_CLASS)]
        ) as association:
            response = await association.echo()
    except QueryError as exc:
        return str(exc)
    except PresentationContextError:
        return "the PACS does not accept C-ECHO (Verification)"
    except AssociationError as exc:
        return f"no C-ECHO answer: {exc}"
    return "" if response.ok else f"C-ECHO answered status 0x{response.status:04X}"


async def _test(name: str, source: Source, steps: _Steps) -> str:
    if isinstance(source, DicomSource):
        await _connect(steps, source.host, source.port, source.timeout)
        problem = await _echo(name, source)
        if problem:
            steps.fail("C-ECHO", problem)
        tls = "over TLS, " if source.tls else ""
        steps.add(
            "C-ECHO", "ok", f"{source.aet_target} answered {source.aet_source} ({tls}success)"
        )
    else:
        parts = urlsplit(source.url)
        secure = parts.scheme == "https"
        port = parts.port or (443 if secure else 80)
        await _connect(steps, parts.hostname or "", port, source.timeout)
    try:
        found = await find_studies(name, source, QueryFilter(), limit=1)
    except QueryError as exc:
        steps.fail("C-FIND" if isinstance(source, DicomSource) else "QIDO-RS", str(exc))
    query = "C-FIND" if isinstance(source, DicomSource) else "QIDO-RS"
    answer = f"answered with {len(found)} stud{'y' if len(found) == 1 else 'ies'} (limit 1)"
    steps.add(query, "ok", answer)
    if isinstance(source, DicomSource):
        return f"{source.aet_target}@{source.host}:{source.port} answers C-ECHO and C-FIND"
    return f"{source.url} answers QIDO-RS"


async def test_source(name: str, source: Source) -> TargetTestReport:
    """Test ``source`` under ``name``: each step, and whether all went well."""
    source = source.model_copy(update={"timeout": min(source.timeout, STEP_TIMEOUT)})
    steps = _Steps()
    started = time.monotonic()
    try:
        summary, ok = await _test(name, source, steps), True
    except _Failed as exc:
        summary, ok = str(exc), False
    return TargetTestReport(
        target=name,
        type=source.type,
        ok=ok,
        summary=scrub(summary),
        steps=steps.steps,
        seconds=round(time.monotonic() - started, 3),
    )
