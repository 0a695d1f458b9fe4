"""The work, memory and time budgets of one rule evaluation (and of folding at compile time).

The three expressions of issue 12 passed ``check-config`` and then cost seconds or gigabytes;
each is refused now before the expensive part runs, and a deterministic figure (the error,
the peak of traced memory) shows it.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from mercure.core.config.loader import ConfigError, validate_document
from mercure.core.rules import RuleSyntaxError, compile_rule
from mercure.core.rules.runtime import MAX_TEXT_CHARS

PEAK_LIMIT = 64 * 2**20
"""Most memory one compile + evaluate may take (the property test's bound too)."""

BIG_TAGS = {"X": "x" * 4096}
"""A tag at the receiver's cut-off length: ``tags.X * 244`` is just under the text limit."""


@contextmanager
def traced_peak() -> Iterator[Callable[[], int]]:
    """Trace allocations; the yielded function gives the peak so far in bytes."""
    tracemalloc.start()
    try:
        yield lambda: tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def evaluate(source: str, tags: dict[str, str], **kwargs: Any) -> Any:
    return compile_rule(source, name="hostile").evaluate(tags, **kwargs)


def test_comparing_two_huge_lists_is_refused_before_comparing() -> None:
    """``[t*244]*100000 == [t*244]*100000`` compared 100 GB in 4 s; the work budget stops it."""
    source = "[tags.X*244]*100000 == [tags.X*244]*100000"
    with traced_peak() as peak:
        result = evaluate(source, BIG_TAGS)
        assert peak() < PEAK_LIMIT
    assert result.value is False
    assert result.error is not None
    assert "too much work" in result.error


def test_str_of_a_huge_list_is_refused_before_it_is_built() -> None:
    """``str([t*244]*100000)`` would be 100 GB of text: refused at the text limit, unbuilt."""
    with traced_peak() as peak:
        result = evaluate("str([tags.X*244]*100000) != ''", BIG_TAGS)
        assert peak() < PEAK_LIMIT
    assert result.value is False
    assert result.error == f"text longer than {MAX_TEXT_CHARS} characters"


def test_folding_a_huge_literal_is_a_config_error_without_building_it() -> None:
    """``str(['a'*999999]*100000)`` took 2.7 GB at config load; now a clear error at once."""
    with traced_peak() as peak, pytest.raises(RuleSyntaxError) as caught:
        compile_rule("str(['a'*999999]*100000) == ''", name="literal_bomb")
    assert peak() < PEAK_LIMIT
    assert caught.value.reason == (
        f"this always fails (text longer than {MAX_TEXT_CHARS} characters)"
    )
    assert caught.value.column == 1


def test_huge_literal_in_the_configuration_is_reported_at_its_key_path() -> None:
    """check-config names the rule's key path for a literal that exceeds a limit."""
    document = {"rules": {"bomb": {"rule": "tags.Modality == str(['a'*999999]*100000)"}}}
    with pytest.raises(ConfigError) as caught:
        validate_document(document, source="mercure.yaml")
    [issue] = [issue for issue in caught.value.issues if issue.path == "rules.bomb.rule"]
    assert "this always fails (text longer than" in issue.message
    assert "at column 18" in issue.message


def test_rule_past_its_time_limit_stops_with_an_error() -> None:
    """A rule still working when its time is up fails at its next step, with the limit named."""
    tags = {"X": "\u0101" * 300_000}
    source = " or ".join(["'z' in tags.X.upper()"] * 40)
    result = evaluate(source, tags, time_limit=0.0)
    assert result.value is False
    assert result.error == "the rule ran longer than 0 ms"
    assert result.used_tags == ("X",)


HOSTILE_TAGS = {
    "X": "x" * 4096,
    "N": "3",
    "L": "a\n" * 500_000,
    "W": "a " * 400_000,
    "U": "\u0101\U0001f600" * 450_000,
}


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("len(tags.L.splitlines()) > 0", "list longer than 100000 items"),
        ("len(tags.W.split()) > 0", "list longer than 100000 items"),
        ("len(tags.W.rsplit(' ', 10**6)) > 0", "list longer than 100000 items"),
        ("tags.U.upper() == ''", "would build more than 16 MB"),
        (" or ".join(["(tags.X * 244)[::-1] == ''"] * 20), "would build more than 16 MB"),
        ("str([[tags.X] * 1000] * 1000) != ''", "text longer than"),
        ("(tags.X * 244).replace('x', 'xx') != ''", "text longer than"),
        ("min([tags.X * 200] * 100000) == ''", "too much work"),
        ("max(tags.X * 200) == ''", "too much work"),
        ("all(tags.X * 200)", "too much work"),
        ("tags.X * 244 in [tags.X * 244] * 100000", "too much work"),
        ("([tags.X * 244] * 100000).count(tags.X * 244) > 0", "too much work"),
        ("[tags.X * 244] * 100000 < [tags.X * 244] * 100000", "too much work"),
        ("(tags.X * 244).strip(tags.X * 244) == ''", "too much work"),
        ("(tags.X * 244).startswith(((tags.X * 244,) * 100000))", "too much work"),
        ("{(tags.X * 244,) * 100000} != {1}", "too much work"),
        ("search('(\\\\w{1,100}){10}z', tags.X)", "too much work"),
        ("any([tags.X] * 100000 + [tags.X] * 100000)", "list longer than 100000 items"),
        ("int(tags.N) ** 4096 > 0", "number larger than 4096 bits"),
    ],
)
def test_hostile_step_is_refused_before_it_runs(source: str, reason: str) -> None:
    """Each costly operator, function and method is bounded before it builds or works."""
    with traced_peak() as peak:
        result = evaluate(source, HOSTILE_TAGS)
        assert peak() < PEAK_LIMIT
    assert result.value is False
    assert result.error is not None
    assert reason in result.error


def test_literal_parts_of_a_rule_share_one_budget() -> None:
    """Folds that are each small but together too big are a compile error, not 20 MB kept."""
    source = " or ".join(["'a' * 999999 == tags.X"] * 20)
    with traced_peak() as peak, pytest.raises(RuleSyntaxError) as caught:
        compile_rule(source)
    assert peak() < PEAK_LIMIT
    assert "would build more than 16 MB" in caught.value.reason


@pytest.mark.parametrize(
    "source",
    [
        "'a b  c '.split() == ['a', 'b', 'c']",
        "'a b  c '.split(None, 1) == ['a', 'b  c ']",
        "'a b  c '.split(None, 10**6) == ['a', 'b', 'c']",
        "'a b  c '.rsplit(' ', 1) == ['a b  c', '']",
        "' a b '.rsplit(None, 0) == [' a b']",
        "'a\\r\\nb\\x1cc'.splitlines() == ['a', 'b', 'c']",
        "'ß'.upper() == 'SS' and 'ǅ'.swapcase() != ''",
        "[['a']] * 3 == [['a'], ['a'], ['a']]",
        "(['a'] * 200)[:100] == ['a'] * 100",
        "'b' in ['a'] * 1000 + ['b']",
    ],
)
def test_bounded_steps_keep_python_semantics(source: str) -> None:
    """The bounded steps answer as Python does for values within the limits."""
    result = compile_rule(source).evaluate({})
    assert result.error is None
    assert result.value is True


@pytest.mark.parametrize(
    "value",
    [
        ["x\\y", "it's", 'say "it\'s"', "\x00\n\t", "\u0101\U0001f600\U000e0000"],
        (1, -(2**4000), 1e300, -0.0, 2.5e-308),
        ({"a"}, ("b",), [[]], ()),
    ],
)
def test_str_of_a_list_is_the_text_python_makes(value: object) -> None:
    """The bound on str() of a list never refuses what Python prints within the limit."""
    rule = compile_rule(f"str({value!r}) == {str(value)!r}")
    assert rule.evaluate({}) == compile_rule("True").evaluate({})


def test_lines_of_long_text_with_few_breaks_are_counted_exactly() -> None:
    """splitlines on text longer than the item limit counts its lines instead of refusing."""
    tags = {"T": "a" * 200_000 + "\r\n" + "b" * 200_000 + "\n"}
    result = evaluate("len(tags.T.splitlines()) == 2", tags)
    assert result.error is None
    assert result.value is True


def test_spend_reports_the_work_and_memory_charged() -> None:
    """A rule's charges are visible, and an ordinary rule uses a tiny part of its budgets."""
    rule = compile_rule("'HEAD' in tags.StudyDescription.upper()")
    result, work, memory = rule.spend({"StudyDescription": "CT Head"})
    assert result.value is True
    assert 0 < work < 100
    assert 0 < memory < 100
