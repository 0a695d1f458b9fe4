"""Hypothesis builds rules from the whole grammar, with hostile sizes, and none may take more
than 100 ms of CPU or 64 MB of memory to compile and evaluate.

Every operator, every whitelisted function and text method (taken from the compiler's own
tables, so a new one is fuzzed as soon as it is allowed), tag access in all its forms,
literals, subscripts, slices, lists, tuples and sets are combined and nested, with repetition
counts and tag values chosen to reach the limits. A rule the compiler refuses, or one that
stops at a budget, passes; what must not happen is a rule that runs long or allocates much.

The examples are derandomized, so every run (and CI) tries the same ones. For a longer search
on your machine, set ``MERCURE_RULE_FUZZ_EXAMPLES`` (e.g. ``5000``; the default is 500) and
``MERCURE_RULE_FUZZ_SEED`` to try another series of examples:

    MERCURE_RULE_FUZZ_EXAMPLES=5000 MERCURE_RULE_FUZZ_SEED=7 \\
        .venv/bin/python -m pytest tests/core/rules/test_rules_budget_fuzz.py
"""

from __future__ import annotations

import gc
import os
import time
import tracemalloc

from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from mercure.core.rules import RuleSyntaxError, SeriesTags, compile_rule
from mercure.core.rules.functions import BUILTINS, REGEX_HELPERS
from mercure.core.rules.methods import METHODS

MAX_CPU_SECONDS = 0.100
MAX_PEAK_BYTES = 64 * 2**20

EXAMPLES = int(os.environ.get("MERCURE_RULE_FUZZ_EXAMPLES", "500"))
SEED = int(os.environ.get("MERCURE_RULE_FUZZ_SEED", "0"))

TAGS = SeriesTags(
    {
        "Modality": "CT",
        "X": "x" * 4096,  # the receiver's cut-off length
        "U": "\u0101\U0001f600 \u03b0" * 1024,  # four-byte text whose case changes grow it
        "W": "ab cd\\" * 700,  # words and backslash-separated values
        "L": "a\n\r\x1c" * 1024,  # line breaks of every kind
        "D": "7" * 1000,  # a number as long as int() accepts
        "N": "3",
        "E": "",
        "P": "\x00\U000e0000" * 2048,  # unprintable
        "Huge": "y" * 1_200_000,  # longer than any text a rule may build
    }
)
KEYS = [*TAGS, "Absent"]

HOSTILE_NUMBERS = [
    "0",
    "1",
    "2",
    "-1",
    "3",
    "10",
    "244",
    "999",
    "4096",
    "65536",
    "99999",
    "100000",
    "999999",
    "10**6",
    "2**62",
    "1e300",
    "0.5",
    "-0.0",
]
TEXT_LITERALS = [
    "''",
    "'x'",
    "'CT'",
    "' '",
    "'\\\\'",
    "'\\n'",
    "'a b'",
    "'\u0101'",
    "'\\x00'",
    "'xx'",
    "'x' * 999999",
    "'\\U0001f600' * 250000",
]
PATTERNS = [
    "x",
    "(?i)ct",
    "(x+x+)+y",
    "(.*a){20}",
    "\\\\w{1,1000}z",
    "(\\\\w{1,100}){10}z",
    "^[0-9]+$",
    "[\\\\x{100}-\\\\x{10ffff}]{100}z",
]


def _tag(key: str) -> st.SearchStrategy[str]:
    return st.sampled_from([f"tags.{key}", f"tags['{key}']", f"@{key}@", f"tags.{key.lower()}"])


TEXT_RESULTS = ["upper", "lower", "casefold", "title", "capitalize", "swapcase", "strip"]
TEXT_RESULTS += ["lstrip", "rstrip", "removeprefix", "removesuffix", "replace"]
LIST_RESULTS = ["split", "rsplit", "splitlines", "partition", "rpartition"]


def _typed(
    children: st.SearchStrategy[str], names: list[str], numbers: st.SearchStrategy[str]
) -> st.SearchStrategy[str]:
    """Text (or lists) built from text: where the sizes grow, so where the limits are met."""
    return st.tuples(children, st.sampled_from(names), st.lists(children, max_size=2)).map(
        lambda t: (
            f"({t[0]}).{t[1]}({', '.join(t[2][: METHODS[t[1]].max_args])})"
            if len(t[2]) >= METHODS[t[1]].min_args
            else f"({t[0]}).{t[1]}('x', 'yy')"
        )
    )


def _text(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    numbers = st.sampled_from(HOSTILE_NUMBERS)
    return st.one_of(
        st.tuples(children, numbers).map(lambda t: f"({t[0]}) * {t[1]}"),
        st.tuples(children, children).map(lambda t: f"({t[0]}) + ({t[1]})"),
        _typed(children, TEXT_RESULTS, numbers),
        children.map(lambda c: f"str(({c}).split())"),
        st.tuples(children, numbers).map(lambda t: f"str([{t[0]}] * {t[1]})"),
        st.tuples(children, numbers, numbers).map(lambda t: f"({t[0]})[{t[1]}::{t[2]}]"),
    )


TEXT = st.recursive(
    st.one_of(st.sampled_from(KEYS).flatmap(_tag), st.sampled_from(TEXT_LITERALS)),
    _text,
    max_leaves=6,
)
LISTS = st.one_of(
    st.tuples(TEXT, st.sampled_from(LIST_RESULTS), TEXT).map(
        lambda t: f"({t[0]}).{t[1]}({t[2] if 'partition' in t[1] else ''})"
    ),
    st.tuples(TEXT, st.sampled_from(HOSTILE_NUMBERS)).map(lambda t: f"[{t[0]}] * {t[1]}"),
    st.tuples(TEXT, st.sampled_from(HOSTILE_NUMBERS)).map(lambda t: f"({t[0]}).split() * {t[1]}"),
)

LEAVES = st.one_of(
    st.sampled_from(KEYS).flatmap(_tag),
    st.sampled_from(HOSTILE_NUMBERS),
    st.sampled_from(TEXT_LITERALS),
    st.sampled_from(["True", "False", "None", "'Modality' in tags", "'X' not in tags"]),
    TEXT,
    LISTS,
)

BINARY = ["+", "-", "*", "/", "//", "%", "**", "|", "&", "^"]
COMPARE = ["==", "!=", "<", "<=", ">", ">=", "in", "not in"]
FUNCTIONS = sorted(BUILTINS.values(), key=lambda f: f.name)
TEXT_METHODS = sorted(METHODS.values(), key=lambda f: f.name)


def _call(name: str, args: list[str]) -> str:
    return f"{name}({', '.join(args)})"


def _combine(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    two = st.tuples(children, children)
    numbers = st.sampled_from(HOSTILE_NUMBERS)
    function = st.sampled_from(FUNCTIONS).flatmap(
        lambda f: st.lists(children, min_size=f.min_args, max_size=min(f.max_args, 3)).map(
            lambda args: _call(f.name, args)
        )
    )
    text_method = st.sampled_from(TEXT_METHODS).flatmap(
        lambda f: st.tuples(
            children, st.lists(children, min_size=f.min_args, max_size=f.max_args)
        ).map(lambda t: f"({t[0]}).{_call(f.name, t[1])}")
    )
    regex = st.tuples(st.sampled_from(REGEX_HELPERS), st.sampled_from(PATTERNS), children).map(
        lambda t: f"{t[0]}('{t[1]}', {t[2]})"
    )
    bounds = st.one_of(st.just(""), numbers, children)
    return st.one_of(
        st.tuples(children, st.sampled_from(BINARY), children).map(
            lambda t: f"({t[0]}) {t[1]} ({t[2]})"
        ),
        # Repetition by the sizes that reach the limits, of text and of lists.
        st.tuples(children, numbers).map(lambda t: f"({t[0]}) * {t[1]}"),
        st.tuples(children, numbers).map(lambda t: f"[{t[0]}] * {t[1]}"),
        st.tuples(children, st.sampled_from(COMPARE), children).map(
            lambda t: f"({t[0]}) {t[1]} ({t[2]})"
        ),
        st.tuples(children, children, children).map(lambda t: f"({t[0]}) < ({t[1]}) <= ({t[2]})"),
        two.map(lambda t: f"({t[0]}) and ({t[1]})"),
        two.map(lambda t: f"({t[0]}) or ({t[1]})"),
        st.tuples(children, children, children).map(
            lambda t: f"({t[0]}) if ({t[1]}) else ({t[2]})"
        ),
        st.tuples(st.sampled_from(["not ", "-", "+"]), children).map(lambda t: f"{t[0]}({t[1]})"),
        children.map(lambda c: f"({c}) in tags"),
        function,
        text_method,
        regex,
        st.tuples(children, st.one_of(numbers, children)).map(lambda t: f"({t[0]})[{t[1]}]"),
        st.tuples(children, bounds, bounds, bounds).map(
            lambda t: f"({t[0]})[{t[1]}:{t[2]}:{t[3]}]"
        ),
        st.lists(children, min_size=1, max_size=4).map(lambda c: f"[{', '.join(c)}]"),
        st.lists(children, min_size=1, max_size=4).map(lambda c: f"({', '.join(c)},)"),
        st.lists(children, min_size=1, max_size=4).map(lambda c: f"{{{', '.join(c)}}}"),
    )


RULES = st.recursive(LEAVES, _combine, max_leaves=12)


def _compile_and_evaluate(source: str) -> None:
    try:
        rule = compile_rule(source)
    except RuleSyntaxError:
        return
    result = rule.evaluate(TAGS)
    assert type(result.value) is bool
    assert result.error is None or result.value is False


@seed(SEED)
@settings(
    max_examples=EXAMPLES,
    derandomize=SEED == 0,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(RULES)
def test_no_rule_from_the_grammar_runs_long_or_allocates_much(source: str) -> None:
    """Compile + evaluate of any rule stays under 100 ms of CPU and 64 MB of memory."""
    # A collection of the garbage hypothesis leaves behind is no cost of the rule.
    gc.disable()
    try:
        start = time.thread_time()
        _compile_and_evaluate(source)
        cpu = time.thread_time() - start
    finally:
        gc.enable()
    assert cpu < MAX_CPU_SECONDS, (source, cpu)

    tracemalloc.start()
    try:
        _compile_and_evaluate(source)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < MAX_PEAK_BYTES, (source, peak)
