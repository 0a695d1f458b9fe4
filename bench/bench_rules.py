"""Measure the rule language: compile time, evaluation time per rule, and a 200-rule series.

Goal (issue 4): the router evaluates ~200 rules per complete series; one simple rule should
take well under 20 us. Run: ``.venv/bin/python bench/bench_rules.py``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from functools import partial

from mercure.core.rules import SeriesTags, compile_rule

# A tags file of realistic size: ~300 text elements plus the receiver's own entries.
TAGS = {f"Element{i:03d}": f"value {i}" for i in range(300)}
TAGS.update(
    {
        "Modality": "CT",
        "StudyDescription": "CT Head w/o contrast",
        "SeriesDescription": "AX 2.0 MPR",
        "SliceThickness": "2.0",
        "ImageType": "ORIGINAL\\PRIMARY\\AXIAL",
        "SenderAET": "CT01",
        "ReceiverAET": "MERCURE",
        "SenderAddress": "10.0.0.5",
    }
)

RULES = {
    "equality": "tags.Modality == 'CT'",
    "legacy placeholder": "@Modality@ == 'CT'",
    "substring of upper()": "'HEAD' in tags.StudyDescription.upper()",
    "float threshold": "float(tags.SliceThickness) < 2.5",
    "membership in tuple": "tags.SenderAET in ('CT01', 'CT02', 'CT03')",
    "regex search": "search('(?i)head', tags.StudyDescription)",
    "three clauses": (
        "tags.Modality == 'CT' and float(tags.SliceThickness) <= 2 "
        "and 'AXIAL' in tags.ImageType.split('\\\\')"
    ),
    "missing tag": "tags.PatientAge == '040Y'",
    "missing tag, other case": "tags.modality == 'CT'",
    "literal True": "True",
}


def per_call_us(call: Callable[[], object], number: int = 20_000, repeat: int = 5) -> float:
    """Best of ``repeat`` runs of ``number`` calls, in microseconds per call."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            call()
        best = min(best, (time.perf_counter() - start) / number)
    return best * 1e6


def main() -> None:
    """Print the measurements as a table."""
    series_tags = SeriesTags(TAGS)
    plain_tags = dict(TAGS)
    print(f"{'rule':28} {'compile us':>11} {'eval us':>9} {'eval us (dict)':>15}")
    for label, source in RULES.items():
        compile_us = per_call_us(partial(compile_rule, source), number=500)
        rule = compile_rule(source)
        with_series = per_call_us(partial(rule.evaluate, series_tags))
        with_dict = per_call_us(partial(rule.evaluate, plain_tags))
        print(f"{label:28} {compile_us:11.1f} {with_series:9.2f} {with_dict:15.2f}")

    # 200 rules per series, a mix of the kinds above with different values.
    sources = [
        f"tags.SenderAET == 'CT{i:02d}' and 'HEAD' in tags.StudyDescription.upper()"
        if i % 4 == 0
        else f"float(tags.SliceThickness) < {i / 10}"
        if i % 4 == 1
        else f"tags.Modality == 'MR' or tags.Element{i:03d} == 'value {i}'"
        if i % 4 == 2
        else f"tags.BodyPart{i} == 'HEAD'"
        for i in range(200)
    ]
    rules = [compile_rule(source) for source in sources]
    timings = []
    for _ in range(200):
        start = time.perf_counter()
        tags = SeriesTags(TAGS)
        fired = [rule for rule in rules if rule.evaluate(tags).value]
        timings.append(time.perf_counter() - start)
    print(
        f"\n200 rules per series (incl. building SeriesTags): median "
        f"{statistics.median(timings) * 1e3:.3f} ms, {len(fired)} fired"
    )

    # Worst cases are bounded: a rule that tries to burn CPU on a long tag value.
    hostile = compile_rule(" or ".join(["'z' in tags.ImageComments.upper()"] * 150))
    long_tags = {"ImageComments": "y" * 900_000}
    start = time.perf_counter()
    result = hostile.evaluate(long_tags)
    print(
        f"hostile rule on a 900k-character tag: {(time.perf_counter() - start) * 1e3:.1f} ms "
        f"-> {result.error}"
    )


if __name__ == "__main__":
    main()
