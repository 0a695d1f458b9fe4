"""What a rule may do while it runs: the limits and the evaluation context.

A rule has no loops (comprehensions and lambdas are rejected when it is compiled), so every
part of it runs at most once per evaluation and its run time is bounded by its size. What
remains is to keep each single step small: values that would grow too large are refused
*before* they are built (``'a' * 10**9``, ``2 ** 10**9``), and operations whose cost grows
with the length of text (searching, case conversion, regular expressions) draw from a work
budget per evaluation. The operators that apply these checks are in ``operators``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mercure.core.rules.errors import MissingTag, RuleRuntimeError
from mercure.core.rules.tags import SeriesTags

MAX_SOURCE_CHARS = 10_000
"""Longest rule text accepted."""
MAX_NODES = 1_000
"""Most expression parts (names, literals, operators, calls) in one rule."""
MAX_DEPTH = 50
"""Deepest nesting of expression parts."""
MAX_TEXT_CHARS = 1_000_000
"""Longest text a rule may build (tag values themselves may be longer)."""
MAX_ITEMS = 100_000
"""Most items in a list or tuple a rule may build."""
MAX_INT_BITS = 4_096
"""Largest integer a rule may build, in bits (about 1,200 decimal digits)."""
MAX_ROUND_DIGITS = 300
"""Largest ``ndigits`` accepted by ``round``."""
MAX_PATTERN_CHARS = 1_000
"""Longest regular expression accepted by the regex helpers."""
MAX_KEY_CHARS = 128
"""Longest tag keyword accepted in ``tags['...']``."""
WORK_BUDGET = 50_000_000
"""Characters that text operations may process in one evaluation (some tens of ms)."""


class Context:
    """The state of one evaluation: the tags, the tags used so far and the remaining budget."""

    __slots__ = ("budget", "folded", "tags", "used")

    def __init__(self, tags: Mapping[str, str]) -> None:
        self.tags = tags
        self.used: list[str] = []
        self.budget = WORK_BUDGET
        self.folded: dict[str, str] | None = None

    def charge(self, units: int) -> None:
        """Take ``units`` from the work budget; fail the rule when it is spent."""
        self.budget -= units
        if self.budget < 0:
            raise RuleRuntimeError("the rule needs too much work on long text")

    def tag(self, keyword: str) -> str:
        """The value of a tag named exactly ``keyword`` (``tags['X']`` and legacy ``@X@``)."""
        try:
            value = self.tags[keyword]
        except KeyError:
            raise MissingTag(keyword) from None
        self.used.append(keyword)
        return _text(keyword, value)

    def tag_any_case(self, keyword: str) -> str:
        """The value of ``tags.keyword``: exact name first, then ignoring case, as mercure."""
        tags = self.tags
        try:
            value = tags[keyword]
        except KeyError:
            if self.folded is None:
                self.folded = folded_keys(tags)
            actual = self.folded.get(keyword.lower())
            if actual is None:
                raise MissingTag(keyword) from None
            keyword = actual
            value = tags[actual]
        self.used.append(keyword)
        return _text(keyword, value)


def folded_keys(tags: Mapping[str, str]) -> dict[str, str]:
    """Lower-cased keyword -> keyword, shared by all rules when ``tags`` is a ``SeriesTags``."""
    if isinstance(tags, SeriesTags):
        return tags.folded()
    folded: dict[str, str] = {}
    for key in tags:
        folded.setdefault(key.lower(), key)
    return folded


def _text(keyword: str, value: object) -> str:
    if type(value) is not str:
        raise RuleRuntimeError(f"tag {keyword} is not text")
    return value


def type_name(value: object) -> str:
    """A user-facing name for the type of a rule value."""
    if isinstance(value, bool):
        return "True/False"
    if isinstance(value, str):
        return "text"
    if isinstance(value, int | float):
        return "number"
    if value is None:
        return "None"
    return "list"


def check_text(value: str) -> str:
    """Refuse text longer than the limit."""
    if len(value) > MAX_TEXT_CHARS:
        raise RuleRuntimeError(f"text longer than {MAX_TEXT_CHARS} characters")
    return value


def check_result(value: Any) -> Any:
    """Refuse results (text, lists, integers) larger than the limits."""
    if isinstance(value, str):
        return check_text(value)
    if isinstance(value, list | tuple | set):
        if len(value) > MAX_ITEMS:
            raise RuleRuntimeError(f"list longer than {MAX_ITEMS} items")
    elif isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise RuleRuntimeError(f"number larger than {MAX_INT_BITS} bits")
    elif isinstance(value, complex):
        raise RuleRuntimeError("the result is not a real number")
    return value


RUNTIME_ERRORS: tuple[type[BaseException], ...] = (
    RuleRuntimeError,
    ArithmeticError,
    ValueError,
    TypeError,
    LookupError,
    RecursionError,
    MemoryError,
)
"""What a running rule may raise; each makes the rule false with a reason."""


def describe(error: BaseException) -> str:
    """A user-facing reason for a run-time failure (no tag values in it)."""
    if isinstance(error, OverflowError):
        return "number out of range"
    text = str(error)
    if isinstance(error, MemoryError) or not text:
        return type(error).__name__
    return text
