"""Tests of mercure.testing.ports."""

from __future__ import annotations

import socket

from mercure.testing.ports import free_port


def test_free_port_can_be_bound_by_a_server() -> None:
    """A server can listen on the port handed out."""
    port = free_port()
    with socket.socket() as server:
        server.bind(("127.0.0.1", port))
        server.listen()
        assert server.getsockname()[1] == port


def test_free_port_never_repeats_within_a_process() -> None:
    """Many calls give many different ports."""
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)


def test_free_port_skips_a_port_in_use() -> None:
    """A port something listens on is not handed out while it is in use."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        assert taken not in {free_port() for _ in range(100)}
