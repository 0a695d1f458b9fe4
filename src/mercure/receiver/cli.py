"""``mercure echo``: a C-ECHO to any DICOM node, through the project's own upper layer."""

from __future__ import annotations

import argparse
import asyncio
import time

from mercure.dicomnet.errors import DicomNetError
from mercure.dicomnet.requestor import Association


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """Add ``mercure echo HOST PORT AET``."""
    echo = commands.add_parser(
        "echo", parents=[common], help="send a C-ECHO to a DICOM node (verification)"
    )
    echo.add_argument("host")
    echo.add_argument("port", type=int)
    echo.add_argument("aet", help="called AE title")
    echo.add_argument("--calling-aet", default="MERCURE", help="our AE title (default MERCURE)")
    echo.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
    echo.set_defaults(handler=cmd_echo)


async def echo(
    host: str, port: int, called_aet: str, calling_aet: str, timeout: float
) -> tuple[int, float]:
    """C-ECHO a node; its status and the round trip in seconds (association included)."""
    started = time.perf_counter()
    association = await Association.connect(
        host,
        port,
        called_aet=called_aet,
        calling_aet=calling_aet,
        connect_timeout=timeout,
        acse_timeout=timeout,
        dimse_timeout=timeout,
    )
    async with association:
        response = await association.echo()
    return response.status, time.perf_counter() - started


def cmd_echo(args: argparse.Namespace) -> int:
    """Print the outcome of a C-ECHO; exit 0 on success."""
    try:
        status, seconds = asyncio.run(
            echo(args.host, args.port, args.aet, args.calling_aet, args.timeout)
        )
    except DicomNetError as exc:
        print(f"echo to {args.aet}@{args.host}:{args.port} failed: {exc}")
        return 1
    if status != 0:
        print(f"echo to {args.aet}@{args.host}:{args.port} answered status 0x{status:04X}")
        return 1
    print(f"echo to {args.aet}@{args.host}:{args.port}: success in {seconds * 1000:.0f} ms")
    return 0
