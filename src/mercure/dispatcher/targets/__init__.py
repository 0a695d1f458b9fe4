"""Target plug-ins, one module per target type, all behind :class:`TargetPlugin`.

Which class serves a type is the type's business: its configuration model (found through the
entry point group ``mercure.targets``, :mod:`mercure.core.config.targettypes`) names it in
``plugin``, and it is imported here only when a target of that type is used.
"""

from __future__ import annotations

import time
from typing import Any

from mercure.core.config.models import TargetBase
from mercure.core.config.targettypes import plugin_class
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

TargetConfig = TargetBase
"""The configuration of a target of any installed type."""

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
    """The plug-in for a configured target (imports only the library its type needs).

    Raises :class:`~mercure.dispatcher.errors.TargetConfigError` when the type's plug-in class
    cannot be imported or is no :class:`TargetPlugin`.
    """
    from mercure.dispatcher.errors import TargetConfigError

    try:
        cls = plugin_class(type(config))
    except (ImportError, AttributeError, TypeError) as exc:
        raise TargetConfigError(
            f"the plug-in of target type {config.type!r} ({type(config).plugin}) cannot be "
            f"loaded: {exc}"
        ) from exc
    if not issubclass(cls, TargetPlugin):
        raise TargetConfigError(
            f"{type(config).plugin}, the plug-in of target type {config.type!r}, is not a "
            "mercure.dispatcher.targets.TargetPlugin"
        )
    factory: Any = cls  # a plug-in class takes (name, its own config model)
    plugin: TargetPlugin = factory(name, config)
    return plugin


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
