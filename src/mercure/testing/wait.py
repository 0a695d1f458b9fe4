"""Poll a condition until it holds: the one way tests wait, instead of sleeping.

A sleep is either too short (flaky) or too long (slow). Polling returns as soon as the condition
holds and fails with a message that says what was awaited and what was last seen.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

_NO_VALUE = object()


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.01,
    message: str | None = None,
    *,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Call ``predicate`` until it returns a truthy value, and return that value.

    The predicate is called at least once, and once more at the deadline, so a slow machine
    never fails a condition that holds by then. Exceptions of the types in ``ignore`` count as
    "not yet" (useful while a server starts: ``ignore=(OSError,)``). Raises AssertionError with
    ``message``, the timeout and the last value (or exception) when the deadline passes.
    """
    deadline = time.monotonic() + timeout
    last: object = _NO_VALUE
    while True:
        final = time.monotonic() >= deadline
        try:
            value = predicate()
        except ignore as exc:
            last = exc
        else:
            if value:
                return value
            last = value
        if final:
            raise AssertionError(_failure(predicate, timeout, message, last))
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))


async def wait_until_async(
    predicate: Callable[[], T | Awaitable[T]],
    timeout: float = 10.0,
    interval: float = 0.01,
    message: str | None = None,
    *,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Async :func:`wait_until`: the predicate may be a plain or a coroutine function.

    Between calls it awaits ``asyncio.sleep`` so that the event loop (and the server under test
    running on it) keeps working.
    """
    deadline = time.monotonic() + timeout
    last: object = _NO_VALUE
    while True:
        final = time.monotonic() >= deadline
        try:
            result = predicate()
            value: T = await result if inspect.isawaitable(result) else result
        except ignore as exc:
            last = exc
        else:
            if value:
                return value
            last = value
        if final:
            raise AssertionError(_failure(predicate, timeout, message, last))
        await asyncio.sleep(min(interval, max(0.0, deadline - time.monotonic())))


def _failure(
    predicate: Callable[..., object], timeout: float, message: str | None, last: object
) -> str:
    what = message or f"condition {getattr(predicate, '__qualname__', predicate)!r}"
    if isinstance(last, BaseException):
        seen = f"last error: {type(last).__name__}: {last}"
    else:
        seen = f"last value: {last!r}"
    return f"{what}: not true after {timeout:g} s ({seen})"
