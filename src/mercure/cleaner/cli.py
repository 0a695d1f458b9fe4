"""``mercure clean``: one cleaning pass now, or with ``--dry-run`` the list of what it would do.

The list is exactly what a pass at this moment removes: retention only while the cleaning window
is open (``--ignore-window`` applies it now), disk-pressure relief whenever usage is over the
threshold. Each line gives the task, the reason, its age and its size.
"""

from __future__ import annotations

import argparse

from mercure.cleaner.cleaner import Cleaner, PassReport
from mercure.cleaner.policy import cleaning_window
from mercure.core.config import MercureConfig, load_config
from mercure.core.datafolder import DataFolder
from mercure.core.delivery import command_events
from mercure.core.logs import configure_logging


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """Add ``mercure clean`` to the command line."""
    clean = subparsers.add_parser(
        "clean",
        parents=[common],
        help="remove finished tasks that are due now (or list them with --dry-run)",
        description="Run one cleaning pass now. Retention applies only while the cleaning "
        "window is open (or with --ignore-window); disk-pressure relief applies whenever usage "
        "is over the threshold. --dry-run lists exactly what the pass would remove, with reasons.",
    )
    clean.add_argument(
        "--dry-run", action="store_true", help="list what would be removed, remove nothing"
    )
    clean.add_argument(
        "--ignore-window",
        action="store_true",
        help="apply retention now even outside the cleaning window",
    )
    clean.set_defaults(handler=cmd_clean)


def cmd_clean(args: argparse.Namespace) -> int:
    """Run one pass (or a dry run) and print what it removed."""
    loaded = load_config(args.config)
    config = loaded.config
    configure_logging(config.logging.level, config.logging.format)
    data = DataFolder(config.data_dir)
    data.ensure()
    if args.dry_run:
        report = Cleaner(data, None).run_pass(
            config, dry_run=True, ignore_window=args.ignore_window
        )
    else:
        with command_events(config, "cleaner") as events:
            report = Cleaner(data, events).run_pass(config, ignore_window=args.ignore_window)
    print(render_report(report, config))
    return 0


def render_report(report: PassReport, config: MercureConfig) -> str:
    """The pass as text: a status line, then one line per task."""
    window = cleaning_window(config)
    verb = "would remove" if report.dry_run else "removed"
    state = "open" if report.window_open else "closed"
    lines = [
        f"cleaning window {window.start:%H:%M}-{window.end:%H:%M}: {state}; "
        f"disk {report.usage_before.percent:.1f}% "
        f"(threshold {config.cleaner.disk_threshold_percent:g}%)",
    ]
    for where in report.leftovers:
        lines.append(f"{verb} {where} (interrupted removal)")
    for removal in report.removals:
        lines.append(
            f"{verb} {removal.where}  {removal.reason.value}  "
            f"age {format_age(removal.age)}  {format_size(removal.bytes)}"
        )
    for where in report.claimed:
        lines.append(f"skipped {where} (claimed by another process)")
    total = sum(removal.bytes for removal in report.removals)
    outcome = "would be removed" if report.dry_run else "removed"
    lines.append(f"{len(report.removals)} tasks, {format_size(total)} {outcome}")
    return "\n".join(lines)


def format_age(seconds: float) -> str:
    """``3d 04:05:06`` style age."""
    whole = max(0, int(seconds))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days}d {clock}" if days else clock


def format_size(size: int) -> str:
    """Bytes in binary units, one decimal."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
