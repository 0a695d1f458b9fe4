"""``mercure retrieve``: create retrieve jobs, show their progress, pause, resume, cancel them.

::

    mercure retrieve SOURCE --accessions FILE.csv [--name JOB] [--series-filter EXPR]
                            [--rule RULE] [--offpeak]
    mercure retrieve status [JOB] [--json] [--watch]
    mercure retrieve list [--json]
    mercure retrieve pause|resume|cancel JOB

The commands only read and write the job folders (:mod:`.jobs`), so they work whether or not
the retriever service runs; the service picks the changes up within a second or two.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
from pathlib import Path
from typing import Any

from mercure.core.config import MercureConfig, load_config
from mercure.core.datafolder import DataFolder
from mercure.core.delivery import command_events
from mercure.core.rules import RuleSyntaxError
from mercure.retriever.engine import compile_series_filter
from mercure.retriever.jobs import (
    FINISHED,
    Action,
    JobError,
    JobProgress,
    JobRequest,
    check_job_id,
    create_job,
    find_job,
    job_folders,
    new_job_id,
    read_control,
    read_progress,
    read_request,
    write_control,
)

ACTIONS = ("status", "list", "pause", "resume", "cancel")
"""Words that are commands after ``mercure retrieve``, not a source name."""
ACCESSION_COLUMNS = ("accessionnumber", "accession")
MAX_ACCESSION = 16
"""The longest accession number DICOM allows (VR SH)."""
WATCH_INTERVAL = 1.0
BAR_WIDTH = 30


def add_retrieve_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """Add ``mercure retrieve`` to the command line."""
    parser = commands.add_parser(
        "retrieve",
        parents=[common],
        help="retrieve studies from a source by accession number (durable jobs)",
        description="`mercure retrieve SOURCE --accessions FILE.csv` creates a retrieve job "
        "that the retriever service runs; `mercure retrieve status|list|pause|resume|cancel "
        "[JOB]` shows and steers jobs.",
    )
    parser.add_argument(
        "what",
        metavar="SOURCE|status|list|pause|resume|cancel",
        help="a source under `sources:` (creates a job) or one of the commands",
    )
    parser.add_argument("job", nargs="?", metavar="JOB", help="the job (status, pause ...)")
    parser.add_argument(
        "--accessions",
        metavar="FILE.csv",
        type=Path,
        help="CSV with a column AccessionNumber (or accession), or a single column",
    )
    parser.add_argument("--name", metavar="JOB", help="job id (default: generated)")
    parser.add_argument(
        "--series-filter",
        metavar="EXPR",
        help="retrieve only the series this rule expression selects, e.g. "
        "\"tags.Modality == 'CT'\"",
    )
    parser.add_argument(
        "--rule", metavar="RULE", help="apply this rule alone to the retrieved series"
    )
    parser.add_argument(
        "--offpeak", action="store_true", help="run only inside the off-peak window"
    )
    parser.add_argument("--json", action="store_true", help="status as JSON")
    parser.add_argument(
        "--watch", action="store_true", help="redraw the status until the job ends (Ctrl-C quits)"
    )
    parser.set_defaults(handler=cmd_retrieve)


def cmd_retrieve(args: argparse.Namespace) -> int:
    """Dispatch ``mercure retrieve ...``; the exit code."""
    config = load_config(args.config).config
    data = DataFolder(config.data_dir)
    what = args.what
    if what not in ACTIONS:
        return _create(args, config, data)
    if args.accessions is not None:
        raise JobError(f"--accessions belongs to `mercure retrieve SOURCE`, not to {what!r}")
    if what in ("status", "list"):
        return _status(data, args.job, as_json=args.json, watch=args.watch)
    if args.job is None:
        raise JobError(f"`mercure retrieve {what}` needs the job id")
    action: Action = {"pause": "pause", "resume": "run", "cancel": "cancel"}[what]  # type: ignore[assignment]
    return _steer(data, args.job, action)


# --- create ------------------------------------------------------------------------------
def _create(args: argparse.Namespace, config: MercureConfig, data: DataFolder) -> int:
    source = args.what
    if source not in config.sources:
        known = ", ".join(sorted(config.sources)) or "none"
        raise JobError(f"no source {source!r} under `sources:` (configured: {known})")
    if args.accessions is None:
        raise JobError("`mercure retrieve SOURCE` needs --accessions FILE.csv")
    if args.rule is not None and args.rule not in config.rules:
        raise JobError(f"no rule {args.rule!r} under `rules:`")
    try:
        compile_series_filter(args.series_filter)
    except RuleSyntaxError as exc:
        raise JobError(f"--series-filter: {exc}") from exc
    accessions = read_accessions(args.accessions)
    job_id = check_job_id(args.name) if args.name else new_job_id()
    request = JobRequest(
        id=job_id,
        source=source,
        accessions=accessions,
        series_filter=args.series_filter or None,
        rule=args.rule,
        offpeak=args.offpeak,
    )
    data.ensure()
    create_job(data, request)
    with command_events(config, "retriever") as events:
        events.emit(
            "retrieve.job",
            message=f"retrieve job {job_id} created: {len(accessions)} accession(s) from {source}",
            job=job_id,
            source=source,
            state="queued",
            studies_total=len(accessions),
            studies_done=0,
            studies_failed=0,
            studies_remaining=len(accessions),
            instances=0,
            rate=None,
            offpeak=args.offpeak,
            reason=None,
        )
    print(job_id)
    return 0


def read_accessions(path: Path) -> list[str]:
    """The accession numbers of a CSV file, in order, each once; JobError naming the line.

    The file has a header with a column ``AccessionNumber`` or ``accession`` (any case), or a
    single column (with or without such a header). Delimiters: comma, semicolon or tab.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise JobError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise JobError(f"{path} is not UTF-8 text: {exc.reason}") from exc
    lines = text.splitlines()
    first = next((line for line in lines if line.strip()), "")
    delimiter = max(",;\t", key=first.count) if any(d in first for d in ",;\t") else ","
    rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
    numbered = [(n, row) for n, row in enumerate(rows, start=1) if any(c.strip() for c in row)]
    if not numbered:
        raise JobError(f"{path} holds no accession numbers")
    header = [cell.strip().lower() for cell in numbered[0][1]]
    column = next((header.index(name) for name in ACCESSION_COLUMNS if name in header), None)
    if column is not None:
        numbered = numbered[1:]
    elif len(header) == 1:
        column = 0
    else:
        raise JobError(
            f"{path}, line {numbered[0][0]}: no column named AccessionNumber or accession "
            f"(and more than one column)"
        )
    found: dict[str, None] = {}
    for number, row in numbered:
        value = row[column].strip() if column < len(row) else ""
        problem = _accession_problem(value)
        if problem:
            raise JobError(f"{path}, line {number}: {problem}")
        found[value] = None
    if not found:
        raise JobError(f"{path} holds no accession numbers")
    return list(found)


def _accession_problem(value: str) -> str | None:
    if not value:
        return "the accession number is empty"
    if len(value) > MAX_ACCESSION:
        return f"the accession number is longer than {MAX_ACCESSION} characters"
    if any(c in value for c in "*?\\") or not value.isprintable():
        return "the accession number holds a wildcard, a backslash or a control character"
    return None


# --- steer -------------------------------------------------------------------------------
def _steer(data: DataFolder, job_id: str, action: Action) -> int:
    folder = find_job(data, job_id)
    progress = read_progress(folder)
    if progress.state in FINISHED:
        raise JobError(f"retrieve job {job_id!r} has ended ({progress.state})")
    if action == "run" and read_control(folder).action == "cancel":
        raise JobError(f"retrieve job {job_id!r} is being cancelled")
    write_control(folder, action)
    said = {"run": "resumed", "pause": "paused", "cancel": "cancelled"}[action]
    print(f"{job_id}: {said}")
    return 0


# --- status ------------------------------------------------------------------------------
def job_summary(folder: Path) -> dict[str, Any]:
    """One job as ``mercure retrieve status --json`` shows it (no accession numbers)."""
    request = read_request(folder)
    progress = read_progress(folder)
    control = read_control(folder)
    done, failed, remaining = progress.counts()
    return {
        "job": request.id,
        "source": request.source,
        "state": progress.state,
        "requested": control.action,
        "reason": progress.reason,
        "offpeak": request.offpeak,
        "rule": request.rule,
        "series_filter": request.series_filter,
        "created": request.created.isoformat(),
        "started": progress.started.isoformat() if progress.started else None,
        "ended": progress.ended.isoformat() if progress.ended else None,
        "studies_total": len(progress.studies),
        "studies_done": done,
        "studies_failed": failed,
        "studies_remaining": remaining,
        "instances": progress.instances,
        "rate": _rate(progress),
        "studies": [
            {
                "study_uid": s.study_uid,
                "state": s.state,
                "attempts": s.attempts,
                "next_try": s.next_try.isoformat() if s.next_try else None,
                "expected": s.expected,
                "retrieved": s.retrieved,
                "reason": s.reason,
            }
            for s in progress.studies
        ],
    }


def _rate(progress: JobProgress) -> float | None:
    """Instances per second since the job started (to its end, or the last update)."""
    if progress.started is None:
        return None
    until = progress.ended or progress.updated
    seconds = (until - progress.started).total_seconds()
    return round(progress.instances / seconds, 2) if seconds > 0 else None


def _status(data: DataFolder, job_id: str | None, *, as_json: bool, watch: bool) -> int:
    folders = [find_job(data, job_id)] if job_id else list(job_folders(data))
    if as_json:
        print(json.dumps([job_summary(folder) for folder in folders], indent=2))
        return 0
    if not watch:
        print(render_table([job_summary(folder) for folder in folders]))
        return 0
    try:
        while True:
            summaries = [job_summary(folder) for folder in folders]
            if job_id:
                sys.stdout.write("\r\x1b[K" + render_bar(summaries[0]))
            else:
                sys.stdout.write("\x1b[H\x1b[J" + render_table(summaries) + "\n")
            sys.stdout.flush()
            if all(s["state"] in FINISHED for s in summaries):
                break
            time.sleep(WATCH_INTERVAL)
    except KeyboardInterrupt:
        pass
    sys.stdout.write("\n")
    return 0


def render_table(summaries: list[dict[str, Any]]) -> str:
    """The jobs as a text table."""
    if not summaries:
        return "no retrieve jobs"
    head = ("JOB", "SOURCE", "STATE", "DONE", "FAILED", "REMAINING", "INSTANCES", "RATE/s")
    rows = [head] + [
        (
            s["job"],
            s["source"],
            s["state"],
            str(s["studies_done"]),
            str(s["studies_failed"]),
            str(s["studies_remaining"]),
            str(s["instances"]),
            "-" if s["rate"] is None else f"{s['rate']:.1f}",
        )
        for s in summaries
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def render_bar(summary: dict[str, Any]) -> str:
    """One job as a progress bar line: studies finished of all, instances, rate, state."""
    total = summary["studies_total"] or 1
    finished = summary["studies_done"] + summary["studies_failed"]
    filled = int(BAR_WIDTH * finished / total)
    rate = "-" if summary["rate"] is None else f"{summary['rate']:.1f}/s"
    return (
        f"{summary['job']} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] "
        f"{finished}/{summary['studies_total']} studies ({summary['studies_failed']} failed), "
        f"{summary['instances']} instances, {rate}, {summary['state']}"
    )
