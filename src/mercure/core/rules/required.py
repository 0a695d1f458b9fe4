"""Required series of a study (``study_trigger_series``): which series must have arrived.

mercure's notation: series descriptions in single quotes joined with ``and`` / ``or`` and
parentheses, e.g. ``'T1' and ('T2' or 'FLAIR')``. A quoted name is present when it is part of
the SeriesDescription of a received series, ignoring case (``'t1'`` matches ``T1 MPRAGE``).
``not`` is accepted as well. Parsed by a small recursive-descent parser of our own: nothing is
ever handed to Python's ``eval``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from mercure.core.errors import PermanentError

_TOKEN = re.compile(r"\s*(?:(?P<name>'[^']*')|(?P<word>[A-Za-z]+)|(?P<paren>[()]))")

Matcher = Callable[[list[str]], bool]


class RequiredSeriesError(PermanentError):
    """A ``study_trigger_series`` expression is not valid; the message names the column."""


@dataclass(frozen=True)
class RequiredSeries:
    """A parsed required-series expression."""

    source: str
    _match: Matcher

    def satisfied_by(self, descriptions: Iterable[str]) -> bool:
        """Whether series with these descriptions fulfil the expression."""
        folded = [description.lower() for description in descriptions]
        return bool(folded) and self._match(folded)


def parse_required_series(source: str) -> RequiredSeries:
    """Parse ``'T1' and ('T2' or 'FLAIR')``; raises :class:`RequiredSeriesError`."""
    tokens = _tokenize(source)
    if not tokens:
        return RequiredSeries(source, lambda _descriptions: True)
    parser = _Parser(source, tokens)
    match = parser.expression()
    if parser.position < len(tokens):
        parser.fail("unexpected text")
    return RequiredSeries(source, match)


def _tokenize(source: str) -> list[tuple[str, str, int]]:
    tokens = []
    position = 0
    stripped = source.rstrip()
    while position < len(stripped):
        found = _TOKEN.match(stripped, position)
        if found is None:
            rest = stripped[position:]
            column = position + len(rest) - len(rest.lstrip()) + 1
            raise RequiredSeriesError(
                f"required series {source!r}, column {column}: expected a series name in "
                "single quotes, 'and', 'or', 'not' or a parenthesis"
            )
        kind = found.lastgroup or ""
        value = found.group(kind)
        if kind == "word":
            value = value.lower()
            if value not in ("and", "or", "not"):
                raise RequiredSeriesError(
                    f"required series {source!r}, column {found.start(kind) + 1}: unknown word "
                    f"{found.group(kind)!r} (series names go in single quotes)"
                )
        tokens.append((kind, value, found.start(kind) + 1))
        position = found.end()
    return tokens


class _Parser:
    def __init__(self, source: str, tokens: list[tuple[str, str, int]]) -> None:
        self.source = source
        self.tokens = tokens
        self.position = 0

    def fail(self, what: str) -> None:
        column = (
            self.tokens[self.position][2]
            if self.position < len(self.tokens)
            else len(self.source) + 1
        )
        raise RequiredSeriesError(f"required series {self.source!r}, column {column}: {what}")

    def peek(self) -> tuple[str, str] | None:
        if self.position < len(self.tokens):
            kind, value, _column = self.tokens[self.position]
            return kind, value
        return None

    def expression(self) -> Matcher:
        terms = [self.conjunction()]
        while self.peek() == ("word", "or"):
            self.position += 1
            terms.append(self.conjunction())
        if len(terms) == 1:
            return terms[0]
        return lambda descriptions: any(term(descriptions) for term in terms)

    def conjunction(self) -> Matcher:
        factors = [self.factor()]
        while self.peek() == ("word", "and"):
            self.position += 1
            factors.append(self.factor())
        if len(factors) == 1:
            return factors[0]
        return lambda descriptions: all(factor(descriptions) for factor in factors)

    def factor(self) -> Matcher:
        token = self.peek()
        if token == ("word", "not"):
            self.position += 1
            inner = self.factor()
            return lambda descriptions: not inner(descriptions)
        if token == ("paren", "("):
            self.position += 1
            inner = self.expression()
            if self.peek() != ("paren", ")"):
                self.fail("missing ')'")
            self.position += 1
            return inner
        if token is not None and token[0] == "name":
            self.position += 1
            wanted = token[1][1:-1].lower()
            return lambda descriptions: any(wanted in text for text in descriptions)
        self.fail("expected a series name in single quotes")
        raise AssertionError("unreachable")
