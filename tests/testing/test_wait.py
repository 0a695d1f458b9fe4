"""Tests of mercure.testing.wait."""

from __future__ import annotations

import asyncio

import pytest

from mercure.testing.wait import wait_until, wait_until_async


def test_wait_until_returns_the_first_truthy_value() -> None:
    """The predicate's truthy value is returned, after the falsy ones."""
    values = iter([None, 0, "", "ready", "later"])
    assert wait_until(lambda: next(values), timeout=5) == "ready"


def test_wait_until_fails_with_message_and_last_value() -> None:
    """A condition that never holds raises AssertionError naming it and the last value seen."""
    queue = ["a", "b"]
    with pytest.raises(
        AssertionError, match=r"queue empty: not true after 0.05 s \(last value: False\)"
    ):
        wait_until(lambda: not queue, timeout=0.05, message="queue empty")


def test_wait_until_checks_once_more_at_the_deadline() -> None:
    """With a zero timeout the predicate still runs, and a true result passes."""
    assert wait_until(lambda: 42, timeout=0) == 42


def test_ignored_exceptions_count_as_not_yet() -> None:
    """Exceptions listed in ``ignore`` are retried; the last one is reported on timeout."""
    attempts = iter([ConnectionRefusedError("down"), ConnectionRefusedError("down"), "up"])

    def probe() -> str:
        item = next(attempts)
        if isinstance(item, Exception):
            raise item
        return item

    assert wait_until(probe, timeout=5, ignore=(OSError,)) == "up"

    def always_down() -> bool:
        raise ConnectionRefusedError("still down")

    with pytest.raises(AssertionError, match="ConnectionRefusedError: still down"):
        wait_until(always_down, timeout=0.02, ignore=(OSError,))


def test_other_exceptions_propagate() -> None:
    """Exceptions not listed in ``ignore`` are errors of the test, not "not yet"."""
    with pytest.raises(ZeroDivisionError):
        wait_until(lambda: 1 / 0, timeout=1)


def test_wait_until_async_accepts_coroutine_and_plain_predicates() -> None:
    """The async variant awaits coroutine predicates and calls plain ones."""
    state = {"n": 0}

    async def bump() -> int:
        state["n"] += 1
        return state["n"] if state["n"] >= 3 else 0

    async def scenario() -> tuple[int, str]:
        first = await wait_until_async(bump, timeout=5)
        second = await wait_until_async(lambda: "plain", timeout=5)
        return first, second

    assert asyncio.run(scenario()) == (3, "plain")


def test_wait_until_async_times_out() -> None:
    """The async variant raises AssertionError with the message on timeout."""
    with pytest.raises(AssertionError, match="never"):
        asyncio.run(wait_until_async(lambda: False, timeout=0.02, message="never"))
