"""Free TCP ports for servers that tests start on 127.0.0.1.

Ports come from below the kernel's ephemeral range where possible: the kernel hands out
ephemeral ports to every outgoing connection (and the test suite makes thousands of them), so a
port taken from that range could be grabbed by a client socket between ``free_port()`` and the
server's ``bind``. Within one process a port is never handed out twice.
"""

from __future__ import annotations

import random
import socket
import threading
from pathlib import Path

_LOWEST = 10000
_handed_out: set[int] = set()
_lock = threading.Lock()
_random = random.SystemRandom()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on now and that this process has not handed out before."""
    low, _high = _ephemeral_range()
    with _lock:
        if low - _LOWEST > 1000:
            for _ in range(200):
                port = _random.randrange(_LOWEST, low)
                if port not in _handed_out and _can_bind(host, port) and _can_bind("", port):
                    _handed_out.add(port)
                    return port
        for _ in range(200):
            port = _bind_any(host)
            if port not in _handed_out:
                _handed_out.add(port)
                return port
    raise OSError(f"no free TCP port found on {host}")


def _can_bind(host: str, port: int) -> bool:
    # No SO_REUSEADDR: a port still in TIME_WAIT counts as busy, which is the cautious answer.
    # Callers also try "" (all interfaces) because DCMTK's storescp cannot bind to one address.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _bind_any(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _ephemeral_range() -> tuple[int, int]:
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        low, high = (int(part) for part in text.split())
    except (OSError, ValueError):
        return 32768, 60999
    return low, high
