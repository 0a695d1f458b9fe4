"""Measure the rule language: compile time, evaluation time per rule, and a 200-rule series.

Goal (issue 4): the router evaluates ~200 rules per complete series; one simple rule should
take well under 20 us. Run: ``.venv/bin/python bench/bench_rules.py``.

``--costs`` checks the work units instead (core/rules/runtime.py): it runs costly rules on
long tag values and prints the CPU time per work unit each one charged. A unit is meant to be
at most about a nanosecond; a line far above that means a cost constant is too low for this
machine (the time limit per evaluation still stops such a rule).
"""

from __future__ import annotations

import argparse
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


LONG = 900_000
COST_TAGS = {
    "A": "Ab c\\" * (LONG // 5),  # ASCII with spaces and backslashes
    "U": "a\u0101 \u03b0\U0001f600" * (LONG // 15),  # four-byte text, case changes grow it
    "N": "\x00\U000e0000" * (LONG // 2),  # unprintable
    "L": "a\n" * (LONG // 2),  # many lines
    "D": "7" * LONG,  # digits: the is... tests read it all
    "S": "x" * 4096,  # a tag at the receiver's cut-off
    "W": "abcdefgh " * 99_000,  # just under the longest list in words
}
COST_RULES = [
    "tags.A.upper() == ''",
    "tags.U.upper() == ''",
    "tags.A.title() == ''",
    "tags.U.swapcase() == ''",
    "tags.D.isdigit() and tags.D.isnumeric() and tags.U.istitle()",
    "tags.N.istitle() or tags.N.isspace() or tags.N.isalnum()",
    "len(tags.A.split(' ')) > 0",
    "len(tags.A.split()) > 0",
    "len(tags.U.split()) > 0",
    "len(tags.L.splitlines()) > 0",
    "len(tags.A.replace('b', 'bb')) > 0",
    "len(tags.A.strip('Ab c\\\\xyzXYZ0123456789')) >= 0",
    "tags.A.find('zz') + tags.A.count('b') + tags.A.rfind('qq') > 0",
    "'zz' in tags.A or tags.A.endswith((tags.A[:400000], tags.A[:400000] + 'q'))",
    "min(tags.S * 80) == '' or all(tags.S * 80)",
    "str(tags.S.split('x')[:50000]) != ''",
    "str([tags.S[:3]] * 90000) != ''",
    "str(tags.S.split('x')[:20000] * 5) != ''",
    "str(tags.W.split()) != ''",
    "str([tags.W.split()[:10]] * 9000) != ''",
    "tags.W.split(' ') == tags.W.split(' ')",
    "tags.W.split() < tags.W.split()",
    "'q' in tags.W.split(' ')",
    "tags.W.split(' ').count('q') > 0",
    "max(tags.W.split(' ')) == ''",
    "any(tags.W.split(' ')[:50000] * 2)",
    "tags.S * 244 == tags.S * 244",
    "tags.A[::2] + tags.A[1::3] != ''",
    "search('(x+x+)+y', tags.S * 30)",
    "search('\\\\w{1,1000}z', tags.S[:300])",
    "search('(\\\\w{1,100}){10}z', tags.S[:300])",
    "fullmatch('(.*a){20}', tags.U[:6000])",
    "{tags.S * 200, tags.A[:100], tags.U[:100]} == {tags.S}",
    "tags.A.partition('q')[0] == tags.A.rpartition('q')[2]",
    "tags.A.removeprefix('Ab').removesuffix('q') != ''",
]


def cpu_ms(call: Callable[[], object], repeat: int = 3) -> float:
    """Best of ``repeat`` calls, in milliseconds of this thread's CPU time."""
    best = float("inf")
    for _ in range(repeat):
        start = time.thread_time()
        call()
        best = min(best, time.thread_time() - start)
    return best * 1e3


def costs() -> None:
    """Print CPU time per charged work unit for costly rules on long tag values."""
    tags = SeriesTags(COST_TAGS)
    print(f"{'rule':58} {'units':>11} {'MB':>6} {'cpu ms':>7} {'ns/unit':>8}  result")
    for source in COST_RULES:
        rule = compile_rule(source)
        result, work, memory = rule.spend(tags, time_limit=None)
        ms = cpu_ms(partial(rule.evaluate, tags, time_limit=None))
        per_unit = ms * 1e6 / work if work else float("nan")
        outcome = result.error or str(result.value)
        print(
            f"{source[:58]:58} {work:11,} {memory / 2**20:6.1f} {ms:7.2f} {per_unit:8.2f}  "
            f"{outcome[:40]}"
        )


def main() -> None:
    """Print the measurements as a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--costs", action="store_true", help="CPU time per work unit")
    if parser.parse_args().costs:
        costs()
        return
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
