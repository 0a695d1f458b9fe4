"""Retry delays with jitter: a PACS coming back is not hit by every waiting task at once.

The distribution is checked with seeded random generators, never by timing.
"""

from __future__ import annotations

import asyncio
import random
import statistics
from datetime import datetime
from pathlib import Path

import pytest
from dispatch_site import Site

from mercure.core.claims import Claim
from mercure.core.config import load_config
from mercure.core.config.models import DispatchConfig
from mercure.core.datafolder import Stage
from mercure.core.events import EventClient, Outbox
from mercure.core.retry import RetryPolicy
from mercure.core.task import read_task
from mercure.dispatcher.engine import DeliveryEngine
from mercure.testing.series import generate_series


def test_without_jitter_the_delay_doubles_up_to_the_cap() -> None:
    """jitter 0 keeps the plain capped doubling: base, 2 x base, ... cap."""
    policy = RetryPolicy(attempts=9, base_delay=10, max_delay=100, jitter=0.0)
    assert [policy.delay(n) for n in range(1, 7)] == [10, 20, 40, 80, 100, 100]


@pytest.mark.parametrize("jitter", [0.25, 0.5, 1.0])
def test_jittered_delays_are_uniform_below_the_capped_backoff(jitter: float) -> None:
    """Each delay lies in [(1 - jitter) x d, d] for the capped backoff d, spread evenly."""
    policy = RetryPolicy(
        attempts=9, base_delay=10, max_delay=100, jitter=jitter, rng=random.Random(12)
    )
    for failures, capped in ((1, 10.0), (3, 40.0), (8, 100.0)):
        low = capped * (1 - jitter)
        draws = [policy.delay(failures) for _ in range(20_000)]
        assert min(draws) >= low
        assert max(draws) <= capped
        # Uniform on [low, capped]: mean in the middle, every tenth of the range used alike.
        assert statistics.fmean(draws) == pytest.approx((low + capped) / 2, rel=0.01)
        counts = [0] * 10
        for draw in draws:
            counts[min(int((draw - low) / (capped - low) * 10), 9)] += 1
        assert all(1_800 <= count <= 2_200 for count in counts), counts


def test_the_same_seed_gives_the_same_delays() -> None:
    """The generator is the only source of randomness: a seed reproduces a schedule."""

    def schedule(seed: int) -> list[float]:
        policy = RetryPolicy(5, 60, 3600, jitter=0.5, rng=random.Random(seed))
        return [policy.delay(n) for n in range(1, 6)]

    assert schedule(3) == schedule(3)
    assert schedule(3) != schedule(4)


def test_tasks_failing_together_retry_spread_out() -> None:
    """500 tasks that failed at the same moment do not come back in the same second."""
    policy = RetryPolicy.from_config(
        DispatchConfig(retry_base_delay=60, retry_max_delay=3600), rng=random.Random(5)
    )
    assert policy.jitter == 0.5  # the default: "equal jitter"
    seconds = [int(policy.delay(7)) for _ in range(500)]
    # At the cap, the 500 retries spread over the last half hour: at most a handful per second.
    assert min(seconds) >= 1800
    assert max(seconds) <= 3600
    assert max(seconds.count(s) for s in set(seconds)) <= 5


def test_config_refuses_a_jitter_outside_zero_to_one() -> None:
    """retry_jitter is a fraction of the delay: 0.3 is taken, 1.5 and -0.1 are not."""
    assert DispatchConfig.model_validate({"retry_jitter": 0.3}).retry_jitter == 0.3
    for wrong in (1.5, -0.1):
        with pytest.raises(ValueError, match="retry_jitter"):
            DispatchConfig.model_validate({"retry_jitter": wrong})


def test_engine_schedules_retries_with_the_configured_jitter(site: Site, tmp_path: Path) -> None:
    """The dispatcher's next attempt is now + the policy's jittered delay (seeded engine)."""
    series = generate_series(tmp_path / "series", "tiny", 1)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the target folder should be")
    site.configure(
        {"archive": {"type": "folder", "folder": str(blocker)}},
        retry_attempts=5,
        retry_base_delay=100,
        retry_max_delay=1000,
        retry_jitter=0.5,
    )
    config = load_config(site.config_path).config
    task_ids = [site.add_task(series.paths, ["archive"]) for _ in range(4)]
    outbox = Outbox(site.data.outbox_dir, "test@here")
    engine = DeliveryEngine(site.data, EventClient(outbox, "dispatcher", "here"), random.Random(9))
    twin = RetryPolicy.from_config(config.dispatch, rng=random.Random(9))

    async def attempt_each() -> None:
        for task_id in task_ids:
            with Claim.take(site.data.stage(Stage.OUTGOING) / task_id) as claim:
                await engine.run(claim, config)

    asyncio.run(attempt_each())
    outbox.close()
    waits = []
    for task_id in task_ids:
        status = read_task(site.data.stage(Stage.OUTGOING) / task_id).dispatch.status["archive"]
        assert status.retries == 1
        assert isinstance(status.next_retry_at, datetime) and status.time is not None
        waits.append((status.next_retry_at - status.time).total_seconds())
    expected = [twin.delay(1) for _ in task_ids]
    assert waits == pytest.approx(expected, abs=1.0)
    assert all(50 <= wait <= 101 for wait in waits)
    assert len({round(wait) for wait in waits}) == len(waits)
