"""Hypothesis tries random text, token soup and generated expressions against the evaluator."""

from __future__ import annotations

import re
import warnings
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mercure.core.rules import RuleSyntaxError, compile_rule

TAGS = {
    "Modality": "CT",
    "SeriesDescription": "CINE 2ch",
    "SliceThickness": "1.5",
    "SeriesNumber": " 3 ",
    "BodyPartExamined": "",
    "ImageType": "ORIGINAL\\PRIMARY",
}

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_never_raises(source: str) -> None:
    """Compiling raises only RuleSyntaxError; evaluating never raises and gives a bool."""
    try:
        rule = compile_rule(source)
    except RuleSyntaxError as error:
        assert error.line >= 1
        assert error.column >= 1
        return
    for tags in (TAGS, {}, {"Modality": "x" * 3000}):
        result = rule.evaluate(tags)
        assert type(result.value) is bool
        assert result.error is None or isinstance(result.error, str)
        if result.missing_tags or result.error:
            assert result.value is False


@FUZZ
@given(st.text(max_size=120))
def test_random_text_never_escapes_rule_syntax_error(source: str) -> None:
    """Any text at all either compiles or raises RuleSyntaxError; evaluation never raises."""
    check_never_raises(source)


TOKENS = [
    "tags",
    ".",
    "Modality",
    "SliceThickness",
    "Absent",
    "__class__",
    "_x",
    "[",
    "]",
    "(",
    ")",
    "{",
    "}",
    "'CT'",
    '"1.5"',
    "''",
    "'%s'",
    "'{0.__class__}'",
    "@",
    "@Modality@",
    "%",
    ",",
    ":",
    "==",
    "!=",
    "<",
    ">=",
    "in",
    "not",
    "and",
    "or",
    "is",
    "if",
    "else",
    "lambda",
    "for",
    "x",
    ":=",
    "*",
    "**",
    "-",
    "+",
    "/",
    "//",
    "~",
    "<<",
    "|",
    "&",
    "1",
    "0",
    "9",
    "2.5",
    "-1",
    "10**9",
    "True",
    "False",
    "None",
    "upper",
    "lower",
    "split",
    "replace",
    "format",
    "strip",
    "float",
    "int",
    "str",
    "len",
    "min",
    "max",
    "round",
    "any",
    "all",
    "abs",
    "match",
    "search",
    "getattr",
    "__import__",
    "type",
    "f'",
    "b'x'",
    "1j",
    "...",
    "\n",
    "\\",
]


@FUZZ
@given(st.lists(st.sampled_from(TOKENS), max_size=25).map(" ".join))
def test_token_soup_never_escapes_rule_syntax_error(source: str) -> None:
    """Rule-like token sequences either compile or raise RuleSyntaxError; none escape."""
    check_never_raises(source)


@FUZZ
@given(st.lists(st.sampled_from(TOKENS), max_size=25).map("".join))
def test_glued_tokens_never_escape_rule_syntax_error(source: str) -> None:
    """Tokens without spaces (attributes, calls, placeholders) behave the same way."""
    check_never_raises(source)


# -- differential testing against Python's own semantics ---------------------------------------

LEAVES = st.sampled_from(
    [
        "tags.Modality",
        "tags.SliceThickness",
        "tags['SeriesDescription']",
        "tags.SeriesNumber",
        "tags.BodyPartExamined",
        "tags.ImageType",
        "tags.Absent",
        "'CT'",
        "'ct'",
        "''",
        "'1.5'",
        "'a b'",
        "'\\\\'",
        "0",
        "1",
        "2",
        "-3",
        "12",
        "0.5",
        "2.0",
        "1e3",
        "True",
        "False",
        "None",
    ]
)
SMALL = st.integers(min_value=-2, max_value=4).map(str)


def _combine(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    two = st.tuples(children, children)
    return st.one_of(
        st.tuples(
            children, st.sampled_from(["+", "-", "/", "//", "%", "|", "&", "^"]), children
        ).map(lambda t: f"({t[0]}) {t[1]} ({t[2]})"),
        st.tuples(children, st.sampled_from(["*", "**"]), SMALL).map(
            lambda t: f"({t[0]}) {t[1]} {t[2]}"
        ),
        st.tuples(
            children,
            st.sampled_from(["==", "!=", "<", "<=", ">", ">=", "in", "not in"]),
            children,
        ).map(lambda t: f"({t[0]}) {t[1]} ({t[2]})"),
        st.tuples(children, children, children).map(lambda t: f"({t[0]}) < ({t[1]}) <= ({t[2]})"),
        two.map(lambda t: f"({t[0]}) and ({t[1]})"),
        two.map(lambda t: f"({t[0]}) or ({t[1]})"),
        children.map(lambda c: f"not ({c})"),
        children.map(lambda c: f"-({c})"),
        st.tuples(
            st.sampled_from(["float", "int", "str", "len", "abs", "bool", "round"]), children
        ).map(lambda t: f"{t[0]}({t[1]})"),
        st.tuples(st.sampled_from(["min", "max"]), children, children).map(
            lambda t: f"{t[0]}({t[1]}, {t[2]})"
        ),
        two.map(lambda t: f"any([{t[0]}, {t[1]}])"),
        two.map(lambda t: f"all(({t[0]}, {t[1]}))"),
        st.tuples(
            children,
            st.sampled_from(
                [
                    "upper()",
                    "lower()",
                    "strip()",
                    "split()",
                    "replace('C', 'c')",
                    "startswith('C')",
                    "find('T')",
                    "count('1')",
                    "isdigit()",
                    "split('\\\\')",
                ]
            ),
        ).map(lambda t: f"({t[0]}).{t[1]}"),
        st.tuples(children, SMALL).map(lambda t: f"({t[0]})[{t[1]}]"),
        st.tuples(children, SMALL, SMALL).map(lambda t: f"({t[0]})[{t[1]}:{t[2]}]"),
        st.tuples(children, children, children).map(
            lambda t: f"({t[0]}) if ({t[1]}) else ({t[2]})"
        ),
        two.map(lambda t: f"({t[0]}, {t[1]})"),
        two.map(lambda t: f"[{t[0]}, {t[1]}]"),
        two.map(lambda t: f"{{{t[0]}, {t[1]}}}"),
        st.tuples(st.sampled_from(["match", "search"]), children).map(
            lambda t: f"{t[0]}('[0-9C]', {t[1]})"
        ),
    )


EXPRESSIONS = st.recursive(LEAVES, _combine, max_leaves=8)


class _Missing(Exception):
    pass


class _OracleTags:
    """mercure's view of tags for the oracle: attribute and item access, missing raises."""

    def __getattr__(self, name: str) -> str:
        return self[name]

    def __getitem__(self, name: str) -> str:
        if name not in TAGS:
            raise _Missing(name)
        return TAGS[name]


def _oracle(source: str) -> tuple[bool, Any]:
    """Python's own answer for a generated expression: (succeeded, value or exception).

    Only for this test: the text comes from the grammar above, never from a user, and it
    contains no attribute access outside the whitelisted text methods.
    """
    namespace = {
        "tags": _OracleTags(),
        "float": float,
        "int": int,
        "str": str,
        "len": len,
        "abs": abs,
        "bool": bool,
        "round": round,
        "min": min,
        "max": max,
        "any": any,
        "all": all,
        "match": lambda pattern, text: re.match(pattern, text) is not None,
        "search": lambda pattern, text: re.search(pattern, text) is not None,
    }
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # Python's "did you mean" warnings count as failures
            return True, eval(source, {"__builtins__": {}}, namespace)
    except (_Missing, ArithmeticError, ValueError, TypeError, LookupError) as error:
        return False, error
    except (AttributeError, SyntaxError) as error:  # e.g. (0).upper(), (0)[0]
        return False, error


# Where the rule language is deliberately stricter than Python.
POLICY_ERRORS = (
    "'%' formatting of text is not allowed",
    "not a real number",
    "larger than",
    "longer than",
    "too long for a number",
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(EXPRESSIONS)
def test_generated_expressions_agree_with_python(source: str) -> None:
    """Where Python evaluates an expression, the rule has the same truth value; where Python
    fails (or a tag is missing), the rule is false; stricter limits are the only exceptions."""
    succeeded, expected = _oracle(source)
    try:
        rule = compile_rule(source)
    except RuleSyntaxError as error:
        # Only literal parts that always fail are refused, even where Python would skip them.
        assert error.reason.startswith("this always fails"), (source, error)
        return
    result = rule.evaluate(TAGS)
    assert type(result.value) is bool
    if not succeeded:
        assert result.value is False, (source, expected)
        if isinstance(expected, _Missing) and result.missing_tags:
            assert result.missing_tags == ("Absent",)
    elif result.error is not None:
        assert any(reason in result.error for reason in POLICY_ERRORS), (source, result)
    else:
        assert result.missing_tags == ()
        assert result.value is bool(expected), (source, expected, result)
