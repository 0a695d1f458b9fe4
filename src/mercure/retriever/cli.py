"""The retriever's commands: ``mercure query SOURCE [filters] [--series] [--format ...]`` and
``mercure test-source NAME [--json] [--definition -]``; and ``mercure retrieve`` (retrieve jobs,
:mod:`.jobcli`).

The query prints what the user asked for, patient names and IDs included (that is its
purpose); the log never holds them. Exit codes: 0 done (also with no match), 1 the source
could not answer, 2 a usage error (an unknown source, a bad date range).

``test-source --definition -`` tests a source that is not saved (the web page's *Test*): its
definition as a JSON object on standard input, never an argument or a file, since it may hold
a password or token.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import dataclasses
import json
import shutil
import sys
from collections.abc import Sequence
from typing import TextIO

from mercure.core.config import load_config
from mercure.core.config.definition import read_definition, validate_definition
from mercure.core.config.models import Source
from mercure.core.errors import MercureError
from mercure.core.masking import register_model_secrets, register_target_secrets, scrub
from mercure.core.targettest import failed_report, print_report
from mercure.retriever.jobcli import add_retrieve_commands
from mercure.retriever.query import (
    QueryError,
    QueryFilter,
    SeriesMatch,
    StudyMatch,
    find_series,
    find_studies,
    parse_date_range,
)
from mercure.retriever.sourcetest import test_source

FORMATS = ("table", "json", "csv")


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """Add ``mercure query``, ``mercure test-source`` and ``mercure retrieve`` to ``mercure``."""
    parser = commands.add_parser(
        "query",
        parents=[common],
        help="ask a source (C-FIND or QIDO-RS) which studies match, and print them",
        description="Ask a configured source which studies match. Text values may hold the "
        "DICOM wildcards * and ?.",
    )
    parser.add_argument("source", help="source name in the configuration (sources:)")
    parser.add_argument("--patient-id", metavar="ID")
    parser.add_argument("--patient-name", metavar="NAME", help="e.g. 'Doe^J*'")
    parser.add_argument("--accession", metavar="A", help="accession number")
    parser.add_argument("--study-uid", metavar="UID")
    parser.add_argument(
        "--date",
        metavar="RANGE",
        type=_date_range,
        help="study date: 20250101, 20250101-20250131, 20250101- or -20250131",
    )
    parser.add_argument("--modality", metavar="M", help="a modality in the study, e.g. CT")
    parser.add_argument("--description", metavar="TEXT", help="study description, e.g. '*HEAD*'")
    parser.add_argument("--series", action="store_true", help="list the series of each study")
    parser.add_argument(
        "--limit",
        type=_positive,
        default=1000,
        metavar="N",
        help="studies at most (default 1000)",
    )
    parser.add_argument("--format", choices=FORMATS, default="table", help="output (table)")
    parser.set_defaults(handler=cmd_query)

    test = commands.add_parser(
        "test-source",
        parents=[common],
        help="test a source step by step: connect, C-ECHO and a one-study C-FIND, or a "
        "one-study QIDO-RS search",
    )
    test.add_argument("name", help="source name in the configuration")
    test.add_argument("--json", action="store_true", help="print the report as one JSON object")
    test.add_argument(
        "--definition",
        metavar="-",
        choices=["-"],
        help="test this definition instead of the configured one: one source as a JSON "
        "object on standard input (never a file or an argument: it may hold secrets)",
    )
    test.set_defaults(handler=cmd_test_source)

    add_retrieve_commands(commands, common)


def _date_range(text: str) -> tuple[object, object]:
    try:
        return parse_date_range(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value


def _filter(args: argparse.Namespace) -> QueryFilter:
    date_from, date_to = args.date or (None, None)
    return QueryFilter(
        patient_id=args.patient_id,
        patient_name=args.patient_name,
        accession=args.accession,
        study_uid=args.study_uid,
        date_from=date_from,
        date_to=date_to,
        modality=args.modality,
        study_description=args.description,
    )


async def _run(
    name: str, source: Source, query: QueryFilter, limit: int, with_series: bool
) -> list[tuple[StudyMatch, list[SeriesMatch]]]:
    studies = await find_studies(name, source, query, limit=limit)
    studies.sort(key=lambda study: (study.study_date, study.accession, study.study_uid))
    found = []
    for study in studies:
        series = await find_series(name, source, study.study_uid) if with_series else []
        found.append((study, series))
    return found


def cmd_query(args: argparse.Namespace) -> int:
    """Query one source and print the matches; see the module docstring for exit codes."""
    sources = load_config(args.config).config.sources
    source = sources.get(args.source)
    if source is None:
        known = ", ".join(sorted(sources)) or "none (add one under sources:)"
        print(f"error: no source {args.source!r}; configured: {known}", file=sys.stderr)
        return 2
    try:
        found = asyncio.run(_run(args.source, source, _filter(args), args.limit, args.series))
    except QueryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    {"table": print_table, "json": print_json, "csv": print_csv}[args.format](
        found, args.series, sys.stdout
    )
    if len(found) >= args.limit:
        print(f"note: stopped at --limit {args.limit}; the source may hold more", file=sys.stderr)
    return 0


def _source_definition(name: str) -> Source:
    """The source definition on standard input; MercureError naming what is wrong."""
    document = read_definition()
    if isinstance(document, dict):
        register_target_secrets(document)  # before validation: an error may quote a value
    source: Source = validate_definition(document, Source, f"source {name!r}")
    register_model_secrets(source)
    return source


def cmd_test_source(args: argparse.Namespace) -> int:
    """Test one source; exit code 0 when it works, 1 with the reason when not."""
    try:
        if args.definition:
            source = _source_definition(args.name)
        else:
            sources = load_config(args.config).config.sources
            if args.name not in sources:
                known = ", ".join(sorted(sources)) or "none"
                raise MercureError(f"no source {args.name!r}; configured: {known}")
            source = sources[args.name]
        report = asyncio.run(test_source(args.name, source))
    except MercureError as exc:
        report = failed_report(args.name, scrub(str(exc)))
    return print_report(args.name, report, as_json=args.json)


# --- Output ------------------------------------------------------------------------------------

Found = Sequence[tuple[StudyMatch, Sequence[SeriesMatch]]]


def _count(value: int | None) -> str:
    return "" if value is None else str(value)


def _study_row(study: StudyMatch) -> dict[str, str]:
    return {
        "date": study.study_date,
        "patient_id": study.patient_id,
        "patient_name": study.patient_name,
        "accession": study.accession,
        "modalities": "/".join(study.modalities),
        "description": study.study_description,
        "series": _count(study.series_count),
        "instances": _count(study.instance_count),
        "study_uid": study.study_uid,
    }


def _series_row(series: SeriesMatch) -> dict[str, str]:
    return {
        "series_number": series.series_number,
        "modality": series.modality,
        "series_description": series.series_description,
        "series_instances": _count(series.instance_count),
        "series_uid": series.series_uid,
    }


STUDY_HEADERS = {
    "date": "Date",
    "patient_id": "Patient ID",
    "patient_name": "Patient name",
    "accession": "Accession",
    "modalities": "Mod.",
    "description": "Description",
    "series": "Series",
    "instances": "Inst.",
    "study_uid": "Study UID",
}
SHRINKABLE = ("study_uid", "description", "patient_name", "patient_id", "accession")
"""Columns cut (in this order) when the table is wider than the terminal."""


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def _widths(rows: list[dict[str, str]], room: int) -> dict[str, int]:
    """Column widths that fit ``room`` characters, shrinking the long text columns first."""
    widths = {
        key: max([len(header)] + [len(row[key]) for row in rows])
        for key, header in STUDY_HEADERS.items()
    }
    excess = sum(widths.values()) + 2 * (len(widths) - 1) - room
    for key in SHRINKABLE:
        if excess <= 0:
            break
        floor = max(len(STUDY_HEADERS[key]), 8)
        cut = min(excess, widths[key] - floor)
        if cut > 0:
            widths[key] -= cut
            excess -= cut
    return widths


def print_table(found: Found, with_series: bool, out: TextIO) -> None:
    """A table as wide as the terminal; with series, one indented line per series."""
    room = shutil.get_terminal_size((160, 24)).columns
    rows = [_study_row(study) for study, _ in found]
    widths = _widths(rows, room)

    def line(cells: dict[str, str]) -> str:
        text = "  ".join(_cut(cells[key], widths[key]).ljust(widths[key]) for key in widths)
        return text.rstrip()

    out.write(line(STUDY_HEADERS) + "\n")
    for row, (_, series) in zip(rows, found, strict=True):
        out.write(line(row) + "\n")
        if with_series:
            for item in series:
                cells = _series_row(item)
                text = (
                    f"    #{cells['series_number'] or '?':>4}  {cells['modality']:<4}  "
                    f"{cells['series_instances'] or '?':>5} inst.  "
                    f"{cells['series_description']}  {cells['series_uid']}"
                )
                out.write(_cut(text, room) + "\n")
    out.write(f"{len(found)} {'study' if len(found) == 1 else 'studies'}\n")


def print_json(found: Found, with_series: bool, out: TextIO) -> None:
    """A JSON array of studies (each with ``series`` when asked)."""
    documents = []
    for study, series in found:
        document = dataclasses.asdict(study)
        if with_series:
            document["series"] = [dataclasses.asdict(item) for item in series]
        documents.append(document)
    json.dump(documents, out, indent=2, ensure_ascii=False)
    out.write("\n")


def print_csv(found: Found, with_series: bool, out: TextIO) -> None:
    """CSV with a header: a row per study, or with series a row per series (study columns
    repeated)."""
    fields = list(STUDY_HEADERS)
    if with_series:
        fields += ["series_number", "modality", "series_description", "series_instances"]
        fields += ["series_uid"]
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for study, series in found:
        row = _study_row(study)
        if not with_series or not series:
            writer.writerow(row)
        for item in series:
            writer.writerow(row | _series_row(item))
