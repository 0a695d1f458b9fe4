"""Attempts to escape the rule evaluator or to exhaust the router: all refused or bounded."""

from __future__ import annotations

import pytest

from mercure.core.rules import RuleSyntaxError, compile_rule
from mercure.core.rules.runtime import MAX_TEXT_CHARS

TAGS = {"Modality": "CT", "SeriesNumber": "12", "SeriesDescription": "x" * 1_000}


@pytest.mark.parametrize(
    "source",
    [
        # Reaching Python internals through attributes.
        "tags.__class__",
        "tags.Modality.__class__",
        "''.__class__.__mro__[1].__subclasses__()",
        "().__class__.__bases__[0].__subclasses__()",
        "[].__class__",
        "None.__class__",
        "(1).__class__",
        "tags.Modality.__len__()",
        "tags.Modality.split.__self__",
        "tags['Modality'].__class__",
        "@Modality@.__doc__",
        "len.__self__",
        "tags._Tags__dict",
        "tags.Modality._x",
        # Builtins that are not on the list.
        "__import__('os').system('true')",
        "__builtins__",
        "eval('1')",
        "exec('1')",
        "compile('1', '', 'eval')",
        "open('/etc/passwd').read()",
        "getattr(tags, 'Modality')",
        "setattr(tags, 'x', 1)",
        "type(tags)",
        "type('x', (), {})",
        "globals()",
        "locals()",
        "vars()",
        "dir()",
        "breakpoint()",
        "input()",
        "print(1)",
        "object()",
        "help()",
        "str.upper(tags.Modality)",
        "str.__dict__",
        # Formatting that could read attributes or build huge text.
        "'{0.__class__}'.format(tags.Modality)",
        "'{0.__class__.__init__.__globals__}'.format(tags.Modality)",
        "'{x}'.format_map(tags)",
        "format(tags.Modality, '>999999999')",
        "f'{tags.Modality!r:>{10**9}}'",
        "tags.Modality.join(['a'])",
        "tags.Modality.center(10**9)",
        "tags.Modality.ljust(10**9)",
        "tags.Modality.zfill(10**9)",
        "tags.Modality.expandtabs(10**9)",
        "tags.Modality.encode()",
        "tags.Modality.translate({})",
        # Code objects and other constructs.
        "(lambda: 1)()",
        "[x for x in 'a' for y in 'b' * 10**9]",
        "any(1 for x in tags.Modality)",
        "(x := tags)",
        "tags['__class__']",
        "tags['_private']",
        "tags.get('Modality')",
        "tags.keys()",
        "'Modality' in tags.__dict__",
        "@__class__@",
        # Constant parts that could only hang or allocate.
        "9**9**9",
        "10**10**10",
        "2**100000 > 1",
        "'a' * 10**9",
        "[0] * 10**9",
        "'%999999999d' % 1",
        "'ab' * 600000",
        "int('9' * 1001)",
        "round(1, -10**6)",
        "(-8) ** 0.5",
        "'x'.replace('', 'y' * 1000) * 1000",
    ],
)
def test_escape_attempt_is_refused_at_compile_time(source: str) -> None:
    """Reaching Python objects, foreign builtins, formatting or literal bombs is refused."""
    with pytest.raises(RuleSyntaxError):
        compile_rule(source)


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("2 ** int(tags.SeriesNumber + '000000') > 1", "number larger than"),
        ("int(tags.SeriesNumber) ** 10000 > 1", "number larger than"),
        ("len(tags.Modality * 10**9) > 1", "repetition would exceed"),
        ("len(tags.Modality.split() * 10**9) > 1", "repetition would exceed"),
        ("len(tags.SeriesDescription.replace('', 'y' * 1000)) > 1", "text longer than"),
        ("len(str(10 ** int(tags.SeriesNumber) ** 3)) > 1", "number larger than"),
        ("'%999999999d' % int(tags.SeriesNumber)", "'%' formatting of text is not allowed"),
        ("int(tags.SeriesDescription.replace('x', '9') * 2) > 1", "too long for a number"),
        ("round(1.5, int(tags.SeriesNumber) * 10**6) > 1", "round(): digits"),
        ("float(tags.SeriesNumber) ** 10**6 > 1", "number out of range"),
        ("(-float(tags.SeriesNumber)) ** 0.5 > 1", "not a real number"),
    ],
)
def test_run_time_bombs_fail_the_rule_without_allocating(source: str, reason: str) -> None:
    """Oversized powers, repetitions and text are refused before they are built."""
    result = compile_rule(source).evaluate(TAGS)
    assert result.value is False
    assert result.error is not None
    assert reason in result.error


def test_concatenation_stops_at_the_text_limit() -> None:
    """Joining two large texts is refused when the result would pass the text limit."""
    rule = compile_rule("len(tags.SeriesDescription * 600 + tags.SeriesDescription * 600) > 0")
    assert len(TAGS["SeriesDescription"]) * 1_200 > MAX_TEXT_CHARS
    result = rule.evaluate(TAGS)
    assert result.value is False
    assert result.error == f"text longer than {MAX_TEXT_CHARS} characters"


def test_work_on_long_text_is_bounded_by_a_budget() -> None:
    """Many searches through a long tag value exhaust the work budget instead of the CPU."""
    tags = {"ImageComments": "y" * 900_000}
    rule = compile_rule(" or ".join(["'z' in tags.ImageComments"] * 80))
    result = rule.evaluate(tags)
    assert result.value is False
    assert result.error == "the rule needs too much work (more than 25,000,000 units)"


def test_deep_nesting_is_a_clear_error_not_a_recursion_error() -> None:
    """Very deep or very long expressions give RuleSyntaxError, never RecursionError."""
    for source in (
        "not " * 3000 + "True",
        "-" * 9000 + "1",
        "(" * 1000 + "1" + ")" * 1000,
        "[" * 60 + "]" * 60,
        "tags.Modality" + ".upper()" * 60,
        " or ".join(["True"] * 1200),
        "'" + "x" * 20_000 + "'",
    ):
        with pytest.raises(RuleSyntaxError) as caught:
            compile_rule(source)
        assert caught.value.column >= 1


def test_text_longer_than_limit_in_a_tag_is_usable_but_not_copied_large() -> None:
    """A huge tag value can be compared, but building text from it past the limit fails."""
    tags = {"ImageComments": "z" * (MAX_TEXT_CHARS + 10)}
    assert compile_rule("tags.ImageComments.startswith('z')").evaluate(tags).value
    upper = compile_rule("tags.ImageComments.upper() != ''").evaluate(tags)
    assert upper.value is False
    assert upper.error is not None
    assert "longer than" in upper.error
