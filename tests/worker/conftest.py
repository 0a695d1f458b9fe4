"""Fixtures of the scale-out tests: the machine's brokers, private ones, and a cluster."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mercure.testing.peers.brokers import RabbitBroker, RedisBroker
from mercure.testing.peers.process import PeerNotInstalledError, PeerProcess, is_listening
from mercure.testing.scaleout import Cluster

SHARED = {
    "redis": ("redis://127.0.0.1:6379/0", 6379),
    "rabbitmq": ("amqp://guest:guest@127.0.0.1:5672//", 5672),
}


@pytest.fixture(params=sorted(SHARED))
def broker_url(request: pytest.FixtureRequest) -> str:
    """The machine's Redis, then its RabbitMQ (each test uses its own queue prefix)."""
    url, port = SHARED[request.param]
    if not is_listening(port):
        pytest.skip(f"{request.param} does not listen on 127.0.0.1:{port}")
    return url


@pytest.fixture(params=["redis", "rabbitmq"])
def private_broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PeerProcess]:
    """A broker of this test alone, which it may stop and start again."""
    kind = RedisBroker if request.param == "redis" else RabbitBroker
    try:
        broker = kind(tmp_path / request.param)
    except PeerNotInstalledError as exc:
        pytest.skip(str(exc))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def cluster_factory(tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    """Make clusters on a broker URL; everything they started is stopped after the test."""
    made: list[Cluster] = []

    def make(broker: str, **kwargs: object) -> Cluster:
        cluster = Cluster(tmp_path / f"cluster{len(made)}", broker, **kwargs)  # type: ignore[arg-type]
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.stop()
