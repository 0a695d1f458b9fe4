"""DCMTK as the reference peer: ``storescp`` as a receiver, storescu / dcmsend / echoscu as senders.

All run with ``TCP_NODELAY=1`` (see :func:`~mercure.testing.peers.process.peer_environment`)
and talk to 127.0.0.1. Note that storescp cannot bind to one address: it listens on all.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pydicom

from mercure.testing.peers.process import (
    PeerProcess,
    is_listening,
    peer_environment,
    require_program,
    run_client,
)
from mercure.testing.ports import free_port
from mercure.testing.wait import wait_until

#: storescp's choices of accepted / preferred transfer syntaxes, by name.
STORESCP_SYNTAX_OPTIONS: Mapping[str, str] = {
    "uncompressed": "+x=",  # DCMTK's default: the uncompressed syntaxes, explicit local first
    "little": "+xe",
    "big": "+xb",
    "implicit-only": "+xi",
    "deflated": "+xd",
    "rle": "+xr",
    "jpeg-lossless": "+xs",
    "all": "+xa",
}

#: dcmsend's transfer-syntax conversion choices, by name.
DCMSEND_DECOMPRESS_OPTIONS: Mapping[str, str] = {
    "never": "-dn",
    "lossless": "+dls",
    "lossy": "+dly",
}


def dcmtk_program(program: str) -> str:
    """The path of a DCMTK program, or PeerNotInstalledError naming the Debian package."""
    return require_program(program, f"DCMTK's {program}", "dcmtk")


class StoreSCP(PeerProcess):
    """DCMTK's storescp on a free port, writing what it receives into ``output_dir``.

    ``syntaxes`` picks what it accepts (a key of :data:`STORESCP_SYNTAX_OPTIONS`, e.g.
    ``"implicit-only"`` for a receiver that refuses everything else, or ``"all"``). ``fork``
    serves each association in a child process. Files are named ``<modality>.<SOP UID>.dcm``;
    storescp writes them in place, so a file is complete only once the sender got its response.
    """

    name = "storescp"

    def __init__(
        self,
        output_dir: Path | str,
        *,
        port: int | None = None,
        ae_title: str = "STORESCP",
        syntaxes: str = "uncompressed",
        fork: bool = False,
        bit_preserving: bool = False,
        ignore: bool = False,
        extra_args: Sequence[str] = (),
        log_path: Path | None = None,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.port = port or free_port()
        self.ae_title = ae_title
        try:
            syntax_flag = STORESCP_SYNTAX_OPTIONS[syntaxes]
        except KeyError:
            choices = sorted(STORESCP_SYNTAX_OPTIONS)
            raise ValueError(f"unknown storescp syntaxes {syntaxes!r}; one of {choices}") from None
        argv = [
            dcmtk_program("storescp"),
            "--aetitle",
            ae_title,
            "--output-directory",
            str(self.output_dir),
            "--filename-extension",
            ".dcm",
            syntax_flag,
        ]
        if fork:
            argv.append("--fork")
        if bit_preserving:
            argv.append("--bit-preserving")
        if ignore:
            argv.append("--ignore")
        argv += [*extra_args, str(self.port)]
        self.output_dir.mkdir(parents=True, exist_ok=True)
        super().__init__(argv, log_path or self.output_dir.parent / f"storescp-{self.port}.log")

    def is_ready(self) -> bool:
        """storescp listens on its port."""
        return self.running and is_listening(self.port, self.pid)

    def files(self) -> list[Path]:
        """The received files, sorted by name."""
        return sorted(self.output_dir.rglob("*.dcm"))

    def sop_instance_uids(self) -> set[str]:
        """The SOP Instance UIDs of the received files (read with pydicom)."""
        return {
            str(pydicom.dcmread(path, specific_tags=["SOPInstanceUID"]).SOPInstanceUID)
            for path in self.files()
        }

    def wait_for_files(self, count: int, timeout: float = 30.0) -> list[Path]:
        """Wait until at least ``count`` files arrived and return them."""

        def enough() -> list[Path]:
            files = self.files()
            return files if len(files) >= count else []

        return wait_until(
            enough,
            timeout=timeout,
            message=f"storescp on port {self.port} received {count} files",
        )


def storescu(
    port: int,
    *paths: Path | str,
    host: str = "127.0.0.1",
    calling_aet: str = "STORESCU",
    called_aet: str = "ANY-SCP",
    propose: str | None = None,
    extra_args: Sequence[str] = (),
    timeout: float = 300.0,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Send files and folders (recursively) with DCMTK's storescu on one association.

    ``propose`` is a storescu transfer-syntax flag such as ``"-xi"`` (implicit VR only) or
    ``"-xs"``. With ``check`` a failed run raises PeerError with storescu's output.
    """
    argv = [dcmtk_program("storescu"), "-aet", calling_aet, "-aec", called_aet, "+sd", "+r"]
    if propose:
        argv.append(propose)
    argv += [*extra_args, host, str(port), *map(str, paths)]
    return run_client(argv, what="storescu", timeout=timeout, check=check)


_SENDING = re.compile(r"Sending file: (\S+)")


def storescu_reporting_acks(
    port: int, folder: Path, on_ack: Callable[[Path], None], *, called_aet: str = "MERCURE"
) -> int:
    """Send ``folder`` with storescu (one association) and call ``on_ack`` with each file as
    soon as storescu reads its success response; storescu's exit code. For tests that act
    mid-transfer (kill the receiver after N acknowledged instances)."""
    command = [
        dcmtk_program("storescu"), "-v", "-aec", called_aet, "+sd", "+r",
        "127.0.0.1", str(port), str(folder),
    ]  # fmt: skip
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=peer_environment()
    ) as sender:
        assert sender.stdout is not None
        current: Path | None = None
        for line in sender.stdout:
            if match := _SENDING.search(line):
                current = Path(match.group(1))
            elif "Received Store Response (Success)" in line and current is not None:
                on_ack(current)
    return sender.returncode


def dcmsend(
    port: int,
    *paths: Path | str,
    host: str = "127.0.0.1",
    calling_aet: str = "DCMSEND",
    called_aet: str = "ANY-SCP",
    decompress: str | None = None,
    report_file: Path | None = None,
    extra_args: Sequence[str] = (),
    timeout: float = 300.0,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Send files and folders (recursively) with DCMTK's dcmsend.

    ``decompress`` is a key of :data:`DCMSEND_DECOMPRESS_OPTIONS`; ``report_file`` asks for
    dcmsend's per-instance report. With ``check`` a failed run raises PeerError.
    """
    argv = [dcmtk_program("dcmsend"), "-aet", calling_aet, "-aec", called_aet, "+sd", "+r"]
    if decompress is not None:
        if decompress not in DCMSEND_DECOMPRESS_OPTIONS:
            choices = sorted(DCMSEND_DECOMPRESS_OPTIONS)
            raise ValueError(f"unknown dcmsend decompress {decompress!r}; one of {choices}")
        argv.append(DCMSEND_DECOMPRESS_OPTIONS[decompress])
    if report_file is not None:
        argv += ["--create-report-file", str(report_file)]
    argv += [*extra_args, host, str(port), *map(str, paths)]
    return run_client(argv, what="dcmsend", timeout=timeout, check=check)


def echoscu(
    port: int,
    *,
    host: str = "127.0.0.1",
    calling_aet: str = "ECHOSCU",
    called_aet: str = "ANY-SCP",
    extra_args: Sequence[str] = (),
    timeout: float = 30.0,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Send one C-ECHO with DCMTK's echoscu. With ``check`` a failure raises PeerError."""
    argv = [dcmtk_program("echoscu"), "-aet", calling_aet, "-aec", called_aet, *extra_args]
    argv += [host, str(port)]
    return run_client(argv, what="echoscu", timeout=timeout, check=check)
