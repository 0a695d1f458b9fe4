"""Private message brokers for the scale-out tests: Redis and RabbitMQ on free ports.

The machine's shared brokers (Redis on 6379, RabbitMQ on 5672) serve tests that only publish
and consume, each under its own queue prefix. A test that restarts the broker in the middle
starts a private one with these classes, so the shared ones are never restarted. Each keeps its
data in a temporary folder (Redis: none at all, ``--save ''``; RabbitMQ: its own node name,
Mnesia folder, distribution port, Erlang cookie and no plug-ins).
"""

from __future__ import annotations

from pathlib import Path

from mercure.testing.peers.process import PeerProcess, is_listening, require_program
from mercure.testing.ports import free_port


class RedisBroker(PeerProcess):
    """``redis-server`` on a free port, nothing persisted."""

    name = "redis-server"
    start_timeout = 20.0

    def __init__(self, work_dir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        program = require_program("redis-server", "redis-server", "redis-server")
        work_dir.mkdir(parents=True, exist_ok=True)
        super().__init__(
            [
                program,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(work_dir),
            ],
            work_dir / "redis.log",
        )

    @property
    def url(self) -> str:
        """The broker URL for ``scale_out.broker``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def is_ready(self) -> bool:
        """Whether it listens on its port."""
        return is_listening(self.port)


class RabbitBroker(PeerProcess):
    """A RabbitMQ node of its own (``rabbitmq-server``) on a free AMQP port."""

    name = "rabbitmq-server"
    start_timeout = 60.0

    def __init__(self, work_dir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.dist_port = free_port()
        program = require_program("rabbitmq-server", "rabbitmq-server", "rabbitmq-server")
        direct = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")  # not the wrapper that su's
        work_dir.mkdir(parents=True, exist_ok=True)
        (work_dir / "enabled_plugins").write_text("[].\n")
        (work_dir / "rabbitmq.conf").write_text("")
        super().__init__([str(direct) if direct.exists() else program], work_dir / "rabbit.log")
        self.env = {
            "HOME": str(work_dir),
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_NODENAME": f"mercure-test-{self.port}@localhost",
            "RABBITMQ_MNESIA_BASE": str(work_dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(work_dir / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(work_dir / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(work_dir / "rabbitmq.conf"),
            "RABBITMQ_PID_FILE": str(work_dir / "rabbit.pid"),
        }

    @property
    def url(self) -> str:
        """The broker URL for ``scale_out.broker`` (RabbitMQ's guest login, loopback only)."""
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def is_ready(self) -> bool:
        """Whether its AMQP listener is open."""
        return is_listening(self.port)
