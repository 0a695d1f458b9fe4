"""Target plug-ins, one module per target type, all behind :class:`TargetPlugin`."""

from __future__ import annotations

import time

from mercure.core.config.models import (
    DicomTarget,
    DicomWebTarget,
    FolderTarget,
    S3Target,
    SftpTarget,
)
from mercure.core.errors import MercureError
from mercure.core.masking import scrub
from mercure.core.targettest import TargetTestReport, TestStep
from mercure.dispatcher.targets.base import (
    Confirm,
    SendJob,
    SendResult,
    TargetPlugin,
    TestSteps,
)

TargetConfig = DicomTarget | DicomWebTarget | SftpTarget | S3Target | FolderTarget

__all__ = [
    "Confirm",
    "SendJob",
    "SendResult",
    "TargetPlugin",
    "TestSteps",
    "build_target",
    "run_test",
    "test_target",
]


def build_target(name: str, config: TargetConfig) -> TargetPlugin:
    """The plug-in for a configured target (imports only the library its type needs)."""
    if isinstance(config, DicomTarget):
        from mercure.dispatcher.targets.dicom import DicomPlugin

        return DicomPlugin(name, config)
    if isinstance(config, DicomWebTarget):
        from mercure.dispatcher.targets.dicomweb import DicomWebPlugin

        return DicomWebPlugin(name, config)
    if isinstance(config, SftpTarget):
        from mercure.dispatcher.targets.sftp import SftpPlugin

        return SftpPlugin(name, config)
    if isinstance(config, S3Target):
        from mercure.dispatcher.targets.s3 import S3Plugin

        return S3Plugin(name, config)
    from mercure.dispatcher.targets.folder import FolderPlugin

    return FolderPlugin(name, config)


async def test_target(targets: dict[str, TargetConfig], name: str) -> TargetTestReport:
    """Run the connection test of the configured target ``name``: its report, step by step.

    Raises :class:`~mercure.core.errors.MercureError` for an unknown name.
    """
    from mercure.dispatcher.errors import TargetConfigError

    if name not in targets:
        known = ", ".join(sorted(targets)) or "none"
        raise TargetConfigError(f"no target named {name!r} in the configuration (known: {known})")
    return await run_test(name, targets[name])


async def run_test(name: str, config: TargetConfig) -> TargetTestReport:
    """Test ``config`` (saved or not) under ``name``; every failure is a failed step."""
    started = time.monotonic()
    steps = TestSteps()
    try:
        summary = await build_target(name, config).test(steps)
        ok = not steps.failed
    except (MercureError, OSError) as exc:
        summary, ok = scrub(str(exc) or type(exc).__name__), False
        if not steps.failed:  # raised outside a step: still say so as one
            steps.steps.append(TestStep(name="test", state="failed", detail=summary))
    except Exception as exc:  # the test's boundary: a library's surprise is a failed test too
        summary, ok = scrub(f"unexpected {type(exc).__name__}: {exc}"), False
        steps.steps.append(TestStep(name="test", state="failed", detail=summary))
    return TargetTestReport(
        target=name,
        type=config.type,
        ok=ok,
        summary=scrub(summary),
        steps=steps.steps,
        seconds=round(time.monotonic() - started, 3),
    )
