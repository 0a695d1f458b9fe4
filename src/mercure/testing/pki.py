"""A throw-away certificate authority for TLS tests, made with the openssl command line.

``make_test_pki(folder)`` writes ``ca.pem``/``ca.key`` and, signed by that CA, a server and a
client certificate (``server.pem``/``server.key``, ``client.pem``/``client.key``) valid for
127.0.0.1 and localhost. The ``pki`` fixture makes one per test session.
"""

from __future__ import annotations

import subprocess
from pathlib import Path


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def make_test_pki(folder: Path) -> Path:
    """Create the CA and its server and client certificates in ``folder``; returns it."""
    folder.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
             "-keyout", folder / "ca.key", "-out", folder / "ca.pem")  # fmt: skip
    for name in ("server", "client"):
        (folder / f"{name}.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                 "-keyout", folder / f"{name}.key", "-out", folder / f"{name}.csr")  # fmt: skip
        _openssl("x509", "-req", "-in", folder / f"{name}.csr", "-CA", folder / "ca.pem",
                 "-CAkey", folder / "ca.key", "-CAcreateserial", "-days", "2",
                 "-extfile", folder / f"{name}.ext", "-out", folder / f"{name}.pem")  # fmt: skip
    return folder
