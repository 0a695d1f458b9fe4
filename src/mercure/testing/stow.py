"""A real receiver with its STOW-RS endpoint on, and STOW-RS request bodies, for tests.

``start_stow_receiver`` starts ``mercure receiver`` with ``receiver.stow`` on a free port and
the senders given; ``multipart_body`` builds a ``multipart/related`` body from Part 10 files or
raw bytes (tests of broken parts need the raw bytes).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mercure.testing.ports import free_port
from mercure.testing.receiver import RunningReceiver, receiver_config, start_receiver
from mercure.testing.wait import wait_until

SENDER = "lab"
TOKEN = "test-token-0123456789abcdef"


def stow_receiver_config(
    data_dir: Path,
    *,
    senders: dict[str, str] | None = None,
    stow: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A receiver configuration with ``receiver.stow`` on a free port (``senders``: name to
    token; by default one sender ``lab``)."""
    senders = senders if senders is not None else {SENDER: TOKEN}
    return receiver_config(
        data_dir,
        receiver={
            "stow": {
                "port": free_port(),
                "senders": {name: {"token": token} for name, token in senders.items()},
                **(stow or {}),
            }
        },
        extra=extra,
    )


def start_stow_receiver(config: dict[str, Any], config_path: Path) -> RunningReceiver:
    """Start the receiver and wait until its STOW-RS endpoint listens; ``extra["stow_url"]``
    is the endpoint's base URL."""
    running = start_receiver(config, config_path)
    stow = config["receiver"]["stow"]
    scheme = "https" if stow.get("tls") else "http"
    wait_until(
        lambda: "STOW-RS listening" in running.log_text(),
        timeout=20,
        message="STOW-RS endpoint listening",
    )
    running.extra["stow_url"] = f"{scheme}://127.0.0.1:{stow['port']}"
    return running


def multipart_body(parts: Iterable[Path | bytes], boundary: str | None = None) -> tuple[str, bytes]:
    """``(content_type, body)`` of a STOW-RS request holding ``parts`` (files or raw bytes)."""
    boundary = boundary or f"test-{secrets.token_hex(8)}"
    chunks = []
    for part in parts:
        raw = part.read_bytes() if isinstance(part, Path) else part
        chunks += [
            f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode(),
            raw,
            b"\r\n",
        ]
    chunks.append(f"--{boundary}--\r\n".encode())
    return f'multipart/related; type="application/dicom"; boundary={boundary}', b"".join(chunks)
