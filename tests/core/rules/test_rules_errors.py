"""Compile-time errors: what is refused, and that each error names the rule and the column."""

from __future__ import annotations

import pytest

from mercure.core.errors import MercureError, PermanentError
from mercure.core.rules import RuleSyntaxError, compile_rule


def rejection(source: str, name: str | None = None) -> RuleSyntaxError:
    with pytest.raises(RuleSyntaxError) as caught:
        compile_rule(source, name=name)
    return caught.value


def test_syntax_error_names_rule_and_column() -> None:
    """A syntax error carries the rule name, the 1-based column and a printable message."""
    error = rejection("tags.Modality == 'CT' and", name="ct_head")
    assert isinstance(error, PermanentError)
    assert isinstance(error, MercureError)
    assert error.rule_name == "ct_head"
    assert error.column == 26
    assert error.line == 1
    assert error.message == "syntax error at column 26: invalid syntax"
    assert str(error) == error.message
    assert error.pointer() == "tags.Modality == 'CT' and\n" + " " * 25 + "^"


def test_forbidden_construct_names_its_column() -> None:
    """A forbidden attribute is reported at the attribute's own column."""
    error = rejection("'x' == tags.__class__")
    assert error.message == "attribute '__class__' is not allowed at column 13"
    assert (error.line, error.column) == (1, 13)


def test_columns_count_characters_not_bytes() -> None:
    """Columns after non-ASCII text count characters, as an editor shows them."""
    assert rejection("'Schädel' == tags.__x").column == 19
    assert rejection("'Schädel' == ").column == 14


def test_columns_account_for_leading_whitespace() -> None:
    """Whitespace before the rule is stripped for parsing but counted in the column."""
    assert rejection("   tags.__x").column == 9
    error = rejection("\n\n  tags.__x")
    assert (error.line, error.column) == (3, 8)


def test_rule_on_several_lines_reports_line_and_column() -> None:
    """An error in a rule of several lines names the line too."""
    error = rejection("(tags.Modality == 'CT'\n and tags.__dict__)")
    assert (error.line, error.column) == (2, 11)
    assert error.message == "attribute '__dict__' is not allowed at line 2, column 11"
    assert error.pointer() == " and tags.__dict__)\n" + " " * 10 + "^"


def test_single_equals_sign_suggests_double() -> None:
    """A lone '=' (a common mistake, also in mercure's documentation) suggests '=='."""
    error = rejection("tags.SeriesDescription.lower() = 'cine'")
    assert error.column == 32
    assert "write '==' to compare" in error.message


def test_old_percent_placeholder_gets_a_hint() -> None:
    """The unsupported %Keyword% form says what to write instead."""
    assert "write tags.Keyword" in rejection("'CINE' in %SeriesDescription%").message


@pytest.mark.parametrize("source", ["", "   ", "\n\t\n"])
def test_empty_rule_is_an_error(source: str) -> None:
    """An empty rule does not silently match or fail: it is a configuration error."""
    assert rejection(source).reason == "the rule is empty"


def test_rule_that_is_not_text_is_an_error() -> None:
    """A non-text rule (e.g. a number in YAML) is refused with a clear reason."""
    assert "must be text" in rejection(42, name="n").message  # type: ignore[arg-type]


def test_rule_that_can_only_fail_is_an_error() -> None:
    """A literal part that always fails is found at compile time."""
    error = rejection(" 1/0 ")
    assert error.message == "this always fails (division by zero) at column 2"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("lambda: True", "lambda is not allowed at column 1"),
        ("[x for x in tags.ImageType]", "comprehensions are not allowed at column 1"),
        ("any(x for x in 'ab')", "comprehensions are not allowed at column 4"),
        ("{s for s in 'ab'}", "comprehensions are not allowed"),
        ("{**{'a': 1}}", "'**' unpacking is not allowed at column 1"),
        ("f'{tags.Modality}' == 'CT'", "f-strings are not allowed at column 1"),
        ("(x := 1)", "':=' is not allowed at column 2"),
        ("[*tags.Modality]", "'*' unpacking is not allowed at column 2"),
        ("max(*tags.Modality)", "'*' unpacking is not allowed at column 5"),
        ("tags.Modality.split(sep=' ')", "keyword arguments are not allowed at column 21"),
        ("tags.Modality is 'CT'", "'is' compares only with None, True or False"),
        ("~1", "operator '~' is not allowed at column 1"),
        ("1 << 2", "shift operators are not allowed"),
        ("tags.Modality @ 1", "'@' is not an operator"),
        ("b'CT' == 1", "bytes literals are not allowed at column 1"),
        ("1j == 1", "complex numbers are not allowed at column 1"),
        ("... == 1", "Ellipsis is not allowed"),
        ("Modality == 'CT'", "unknown name 'Modality' (a tag is written tags.Modality)"),
        ("true", "unknown name 'true' (write True)"),
        ("1 == tags", "tags can only be compared as 'Keyword' in tags"),
        ("tags == 1", "write tags.Keyword or tags['Keyword'] to use a tag"),
        ("tags", "write tags.Keyword or tags['Keyword'] to use a tag"),
        ("tags[tags.Modality]", "write the tag keyword in quotes"),
        ("tags['']", "is not a tag keyword"),
        ("tags.Modality()", "tags.Modality is a tag, not a method"),
        ("@Modality@()", "a tag value cannot be called"),
        ("tags.Modality.upper", "'.upper' is a method: call it, as in .upper()"),
        ("tags.Modality.upper(1)", "upper() takes 0 arguments, got 1 at column 1"),
        ("len()", "len() takes 1 arguments, got 0"),
        ("round(1, 2, 3)", "round() takes 1 to 2 arguments, got 3"),
        ("len", "'len' is a function: call it, as in len(...)"),
        ("tags.Modality.encode()", "method 'encode' is not allowed at column 15"),
        ("tags.Modality.real", "attribute 'real' is not allowed"),
        ("(lambda: 1)()", "only the listed functions and text methods can be called"),
        ("match(tags.Modality, 'CT')", "the pattern of match() must be a quoted text at column 7"),
        ("search('(CT', tags.Modality)", "invalid regular expression (missing ): (CT) at column 8"),
        ("search(r'(a)\\1', tags.Modality)", "invalid regular expression"),
        ("search('x' * 2, tags.Modality)", "must be a quoted text"),
        ("search('x')", "search() takes 2 arguments"),
        ("search('" + "x" * 1001 + "', tags.Modality)", "longer than 1000 characters"),
        ("'a' in tags < 1", "cannot be chained"),
        ("99999999999999999999" * 70 + " == 1", "number literal larger than 4096 bits"),
        ("1 +", "syntax error at column 4"),
        ("'x' == \x00", "character '\\x00' cannot be used in a rule at column 8"),
        ("'\u01c2' == 1", "is not allowed at column 2"),
    ],
)
def test_forbidden_and_malformed_rules_are_refused(source: str, message: str) -> None:
    """Each construct outside the language is refused with a specific message."""
    assert message in rejection(source).message
