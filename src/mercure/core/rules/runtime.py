"""What a rule may do while it runs: the limits, the budgets and the evaluation context.

A rule has no loops (comprehensions and lambdas are rejected when it is compiled), so every
part of it runs at most once per evaluation. What remains is to keep each step small and the
sum of the steps bounded, and to know the cost of a step *before* it is taken:

* sizes: no text longer than ``MAX_TEXT_CHARS``, no list longer than ``MAX_ITEMS``, no
  integer larger than ``MAX_INT_BITS`` is ever built; a step that would build one is refused;
* work: every step whose cost grows with its operands (copying, comparing, searching, case
  conversion, splitting, regular expressions, walking a list) first charges its cost, in units
  of about a nanosecond of the slowest such work, to ``WORK_BUDGET``;
* memory: every step that builds text or lists first charges the bytes it may allocate to
  ``MEMORY_BUDGET``, which bounds what one evaluation can hold at once;
* time: a wall-clock limit per evaluation (``TIME_LIMIT``), looked at between steps, catches
  whatever the accounting underestimates on a slow or busy machine.

Lists may share their items (``[x] * 1000`` holds one ``x`` a thousand times), so the cost of
comparing or printing a list is not its length: ``Context.weight`` gives a bound for it,
remembered per list for the evaluation. The operators and functions that apply all this are
in ``operators``, ``functions`` and ``methods``; ``describe`` turns failures into reasons.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from mercure.core.rules.errors import BudgetExceeded, MissingTag, RuleRuntimeError
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

WORK_BUDGET = 25_000_000
"""Work units one evaluation may spend; a unit is about a nanosecond of the slowest kind of
work on a small server, so the budget is some tens of milliseconds at most."""
MEMORY_BUDGET = 16 * 2**20
"""Bytes of text and lists one evaluation may build (counted before building, freed or not)."""
TIME_LIMIT = 0.050
"""Seconds one evaluation may run (wall clock), looked at between steps."""

# Costs in work units, measured with bench/bench_rules.py --costs on a 2-core server. A unit
# per character is the rate of copying, comparing and searching text.
ITEM_COST = 16
"""Per list item that a loop in C passes over (comparing, counting, copying, hashing)."""
CASE_COST = 12
"""Per character of case conversion other than ASCII upper/lower/casefold."""
CHAR_TEST_COST = 8
"""Per character of the ``is...`` tests."""
CHAR_STEP_COST = 32
"""Per character when text is taken one character at a time (min, max, any, all)."""
PIECE_COST = 64
"""Per new text object (a piece of ``split``): work units, and bytes of memory."""
VISIT_COST = 100
"""Per item when the evaluator itself walks a list (to measure it or bound its str())."""
REMEMBER_ITEMS = 64
"""Lists longer than this built by splitting or slicing are remembered with a bound of their
weight, so that comparing them never needs a walk through them."""
SET_ITEM_COST = 160
"""Per item put into a new set (hashing, growing the table)."""

CLOCK_STEP = 100_000
"""Work units between two looks at the clock. The clock is first read when a rule has spent
this much, so an ordinary rule (a few hundred units) never pays for reading it; the time
before that first look is at most this much work, well under a millisecond."""

_CONTAINERS = (list, tuple, set)
_NO_SIZES: Mapping[int, tuple[Any, int]] = {}


class Context:
    """The state of one evaluation: the tags, the tags used so far, the budgets left, and
    the weights of the lists measured so far (see ``weight``)."""

    # Class attributes are the starting values: an evaluation sets only what differs, which
    # makes starting one (for every rule and series) half as costly as setting them all. The
    # two set every time are slots, the fastest to read.
    __slots__ = ("__dict__", "tags", "used")
    budget: int = WORK_BUDGET
    memory: int = MEMORY_BUDGET
    next_clock: int = WORK_BUDGET - CLOCK_STEP
    time_limit: float | None = TIME_LIMIT
    deadline: float | None = None
    known: Mapping[int, tuple[Any, int]] = _NO_SIZES
    sizes: dict[int, tuple[Any, int]] | None = None
    folded: dict[str, str] | None = None

    def __init__(self, tags: Mapping[str, str]) -> None:
        self.tags = tags
        self.used: list[str] = []

    def charge(self, work: int, memory: int = 0) -> None:
        """Take ``work`` units and ``memory`` bytes from the budgets, before the step that
        needs them; fail the rule if either is spent or its time is up."""
        self.budget -= work
        if memory:
            self.memory -= memory
            if self.memory < 0:
                raise BudgetExceeded(
                    f"the rule would build more than {MEMORY_BUDGET // 2**20} MB of text and lists"
                )
        if self.budget < self.next_clock:
            self._checkpoint()

    def _checkpoint(self) -> None:
        if self.budget < 0:
            raise BudgetExceeded(f"the rule needs too much work (more than {WORK_BUDGET:,} units)")
        self.next_clock = self.budget - CLOCK_STEP
        if self.time_limit is None:
            return
        now = time.perf_counter()
        if self.deadline is None:
            self.deadline = now + self.time_limit
        elif now > self.deadline:
            raise BudgetExceeded(f"the rule ran longer than {self.time_limit * 1000:g} ms")

    def weight(self, value: Any) -> int:
        """A bound of the work of comparing ``value`` with anything, or of searching it.

        Text weighs its length; a list, tuple or set ``ITEM_COST`` per item plus what its
        items weigh (an item shared by several places counts at every place). Lists built
        by ``*`` are remembered with their weight when they are built; others are measured
        once per evaluation, at ``VISIT_COST`` per item.
        """
        kind = type(value)
        if kind is str:
            return len(value)
        if kind is list or kind is tuple or kind is set:
            known = self.known_weight(value)
            return self._measure(value) if known is None else known
        if kind is dict:
            known = self.known_weight(value)
            if known is None:
                known = self._measure([*value.keys(), *value.values()])
                self.remember(value, known)
            return known
        return 1

    def known_weight(self, value: Any) -> int | None:
        """The weight of a list remembered earlier in this evaluation (or at compile time)."""
        key = id(value)
        entry = self.sizes.get(key) if self.sizes is not None else None
        if entry is None:
            entry = self.known.get(key)
        if entry is not None and entry[0] is value:
            return entry[1]
        return None

    def remember(self, value: Any, weight: int) -> Any:
        """Record the weight of a list just built (it stays alive until the evaluation ends,
        so that its ``id`` cannot be reused by another value)."""
        if self.sizes is None:
            self.sizes = {}
        self.sizes[id(value)] = (value, weight)
        return value

    def _measure(self, value: Iterable[Any]) -> int:
        items = len(value)  # type: ignore[arg-type]
        self.charge(VISIT_COST * items)
        total = ITEM_COST * items
        if self.sizes is None:
            self.sizes = {}
        sizes = self.sizes
        for item in value:
            kind = type(item)
            if kind is str:
                total += len(item)
            elif kind is list or kind is tuple or kind is set:
                entry = sizes.get(id(item))
                total += entry[1] if entry is not None and entry[0] is item else self.weight(item)
            else:
                total += 1
        sizes[id(value)] = (value, total)
        return total

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
    if isinstance(value, dict):
        return "dictionary"
    return "list"


def check_text(value: str) -> str:
    """Refuse text longer than the limit."""
    need_text(len(value))
    return value


def need_text(length: int) -> None:
    """Refuse to build text of ``length`` characters if that passes the limit."""
    if length > MAX_TEXT_CHARS:
        raise RuleRuntimeError(f"text longer than {MAX_TEXT_CHARS} characters")


def need_items(count: int) -> None:
    """Refuse to build a list of ``count`` items if that passes the limit."""
    if count > MAX_ITEMS:
        raise RuleRuntimeError(f"list longer than {MAX_ITEMS} items")


def width(*texts: str) -> int:
    """Bytes per character of text made from ``texts``: 1 if they are all ASCII, else up to 4
    (Python stores text with 1, 2 or 4 bytes per character; ``isascii`` costs nothing)."""
    for text in texts:
        if not text.isascii():
            return 4
    return 1


def check_result(value: Any) -> Any:
    """Refuse results (text, lists, integers) larger than the limits."""
    if isinstance(value, str):
        return check_text(value)
    if isinstance(value, list | tuple | set | dict):
        need_items(len(value))
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
