"""``mercure logs [SERVICE]``: the services' log files in the data folder, read back.

Without a service it lists the log files (size, last written); with one it prints the last
records at a level or above, and ``--follow`` keeps printing new ones across rotations. The web
interface's logs page reads the same files through the same functions (mercure.core.logs).
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime

from mercure.core.config import load_config
from mercure.core.errors import MercureError
from mercure.core.logs import LEVELS, LogPosition, log_files, read_new, tail


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """Add ``mercure logs [SERVICE] [-n N] [--level L] [--follow]``."""
    logs = commands.add_parser(
        "logs",
        parents=[common],
        help="list the services' log files, or show the end of one",
        description="The log files services write to data_dir/logs (logging.files). Without "
        "SERVICE: the list of files. With SERVICE (e.g. router, or router@host2): its last "
        "records.",
    )
    logs.add_argument("service", nargs="?", help="a service's log, as listed without it")
    logs.add_argument("-n", "--lines", type=int, default=50, help="records to show (default 50)")
    logs.add_argument("--level", choices=LEVELS, default="DEBUG", help="this level or above")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new records")
    logs.set_defaults(handler=cmd_logs)


def cmd_logs(args: argparse.Namespace) -> int:
    """List the log files, or print (and follow) one of them."""
    config = load_config(args.config).config
    files = log_files(config.data_dir)
    if not args.service:
        if not files:
            folder = config.data_dir / "logs"
            print(f"no log files in {folder} (logging.files: {config.logging.files})")
            return 0
        for name, path in files.items():
            stat = path.stat()
            written = datetime.fromtimestamp(stat.st_mtime).strftime("%Y-%m-%d %H:%M:%S")
            print(f"{name:<24} {stat.st_size / 1024:>10.1f} KiB  last written {written}")
        return 0
    if args.service not in files:
        known = ", ".join(files) or "none yet"
        raise MercureError(f"no log file for {args.service!r} (log files: {known})")
    path = files[args.service]
    for record in tail(path, max(args.lines, 0), args.level):
        print(record.text)
    if args.follow:
        position = LogPosition.end_of(path)
        try:
            while True:
                time.sleep(0.5)
                records, position = read_new(path, position, args.level)
                for record in records:
                    print(record.text, flush=True)
        except KeyboardInterrupt:
            return 0
    return 0
