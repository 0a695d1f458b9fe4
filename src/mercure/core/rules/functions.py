"""The functions a rule may call, each with its argument counts, its cost and its limits.

Nothing here hands a Python object to the rule that it could use to reach further: every
function takes and returns plain values (text, numbers, True/False, lists). Each charges its
work (and the memory of what it builds) before it runs; see ``runtime`` for the budgets. The
text methods are in ``methods``.

Regular expressions use RE2 (the ``google-re2`` package): it matches in time linear in the
length of the text, so a pattern like ``(a+)+$`` cannot stall the router (Python's ``re``
backtracks exponentially and has no timeout). Patterns must be literals, compiled when the
rule is compiled, so a bad pattern is a configuration error with its column.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import re2

from mercure.core.rules.errors import RuleRuntimeError
from mercure.core.rules.runtime import (
    CASE_COST,
    CHAR_STEP_COST,
    ITEM_COST,
    MAX_INT_BITS,
    MAX_ROUND_DIGITS,
    MAX_TEXT_CHARS,
    REMEMBER_ITEMS,
    SET_ITEM_COST,
    VISIT_COST,
    Context,
    need_text,
    type_name,
)


@dataclass(frozen=True, slots=True)
class Function:
    """A callable name: how many positional arguments it takes and what it does."""

    name: str
    min_args: int
    max_args: int
    run: Callable[..., Any]
    doc: str = ""
    """One line for administrators: the call as written in a rule, and what it gives."""


def _int(ctx: Context, value: Any, base: Any = None) -> int:
    if isinstance(value, str):
        if len(value) > 1_000:
            raise RuleRuntimeError("int(): the text is too long for a number")
        ctx.charge(len(value))
        try:
            result = int(value) if base is None else int(value, base)
        except ValueError:
            raise RuleRuntimeError("int(): the text is not a whole number") from None
    elif base is not None:
        raise RuleRuntimeError("int(): a base needs text to convert")
    elif isinstance(value, int | float):
        result = int(value)
    else:
        raise RuleRuntimeError(f"int(): cannot convert {type_name(value)}")
    if result.bit_length() > MAX_INT_BITS:
        raise RuleRuntimeError(f"number larger than {MAX_INT_BITS} bits")
    return result


def _float(ctx: Context, value: Any) -> float:
    if isinstance(value, str):
        if len(value) > 1_000:
            raise RuleRuntimeError("float(): the text is too long for a number")
        try:
            return float(value)
        except ValueError:
            raise RuleRuntimeError("float(): the text is not a number") from None
    if isinstance(value, int | float):
        return float(value)
    raise RuleRuntimeError(f"float(): cannot convert {type_name(value)}")


def _str(ctx: Context, value: Any) -> str:
    kind = type(value)
    if kind is str:
        return value  # str() of text is the same text, not a copy
    if kind is list or kind is tuple or kind is set:
        size, ascii_only = _repr_size(ctx, value)
        need_text(size)
        # Python builds the text of each item, then the whole: twice the result at most.
        ctx.charge(CASE_COST * size, 2 * size * (1 if ascii_only else 4))
    elif kind is dict:
        size, ascii_only = _repr_size(ctx, [*value.keys(), *value.values()])
        need_text(size + 2 * len(value))  # ": " between each key and its value
        ctx.charge(CASE_COST * size, 2 * size * (1 if ascii_only else 4))
    elif kind is int:
        ctx.charge(value.bit_length(), value.bit_length())
    return str(value)


def _repr_size(ctx: Context, value: Any) -> tuple[int, bool]:
    """A bound of ``len(str(value))`` for a list, tuple or set, and whether that text is all
    ASCII; counting stops once past the text limit (the caller refuses such a value).

    A list shared by several places is measured once but counted at every place. Text counts
    4 characters per ASCII character and 10 per other one, the longest escapes (``\\x00``,
    ``\\U0010ffff``): found in constant time, and only rules printing lists of
    hundreds of thousands of characters notice the difference.
    """
    seen: dict[int, int] = {}
    ascii_only = True

    def size(items: Any) -> int:
        nonlocal ascii_only
        known = seen.get(id(items))
        if known is not None:
            return known
        ctx.charge(VISIT_COST * len(items))
        total = 5 + 2 * len(items)  # brackets, ", " between items, "set()" or "(x,)"
        for item in items:
            kind = type(item)
            if kind is str:
                if item.isascii():
                    total += 4 * len(item) + 2
                else:
                    total += 10 * len(item) + 2
                    ascii_only = False
            elif kind is int:
                total += item.bit_length() * 31 // 100 + 3  # digits (log10(2) < 0.31), sign
            elif kind is float:
                total += 25
            elif kind is list or kind is tuple or kind is set:
                total += size(item)
            else:
                total += 5  # True, False, None
            if total > MAX_TEXT_CHARS:
                break
        seen[id(items)] = total
        return total

    return size(value), ascii_only


def _len(ctx: Context, value: Any) -> int:
    if not isinstance(value, str | list | tuple | set | dict):
        raise RuleRuntimeError(f"len(): cannot measure {type_name(value)}")
    return len(value)


def _round(ctx: Context, value: Any, ndigits: Any = None) -> Any:
    if ndigits is None:
        return round(value)
    if not isinstance(ndigits, int) or abs(ndigits) > MAX_ROUND_DIGITS:
        raise RuleRuntimeError(f"round(): digits must be a whole number up to {MAX_ROUND_DIGITS}")
    return round(value, ndigits)


def _step_cost(ctx: Context, values: Any) -> int:
    """Work of going through the items (or characters) of ``values`` one by one."""
    kind = type(values)
    if kind is str:
        return CHAR_STEP_COST * len(values)  # each character becomes a text of its own
    if kind is list or kind is tuple or kind is set:
        return ITEM_COST * len(values)
    return 0


def _extreme(pick: Callable[..., Any]) -> Callable[..., Any]:
    def run(ctx: Context, *args: Any) -> Any:
        if len(args) == 1:
            (values,) = args
            if not isinstance(values, str | list | tuple | set):
                raise RuleRuntimeError(f"{pick.__name__}(): one argument must be text or a list")
            # Each item is compared with the smallest (largest) so far: at most what it weighs.
            ctx.charge(_step_cost(ctx, values) + ctx.weight(values))
            return pick(values)
        ctx.charge(ITEM_COST * len(args) + sum(ctx.weight(arg) for arg in args))
        return pick(*args)

    return run


def _truth(pick: Callable[..., Any]) -> Callable[..., Any]:
    def run(ctx: Context, values: Any) -> bool:
        if not isinstance(values, str | list | tuple | set):
            raise RuleRuntimeError(f"{pick.__name__}(): needs text or a list")
        ctx.charge(_step_cost(ctx, values))
        return bool(pick(values))

    return run


def _sum(ctx: Context, values: Any, start: Any = 0) -> Any:
    if not isinstance(values, list | tuple | set):
        raise RuleRuntimeError(f"sum(): needs a list of numbers, not {type_name(values)}")
    ctx.charge(VISIT_COST * (len(values) + 1))  # the type check below walks the list
    digits = 0
    for value in (start, *values):
        kind = type(value)
        if kind is int:
            digits += value.bit_length()
        elif kind is not float and kind is not bool:
            raise RuleRuntimeError(f"sum(): cannot add {type_name(value)}")
    ctx.charge(digits // 16)  # adding large whole numbers costs by their size
    result = sum(values, start)
    if isinstance(result, int) and result.bit_length() > MAX_INT_BITS:
        raise RuleRuntimeError(f"number larger than {MAX_INT_BITS} bits")
    return result


def _sorted(ctx: Context, values: Any) -> list[Any]:
    if not isinstance(values, str | list | tuple | set):
        raise RuleRuntimeError(f"sorted(): needs text or a list, not {type_name(values)}")
    count = len(values)
    levels = max(1, count.bit_length())
    # Merging passes over every item once per level; each comparison costs at most what
    # the lighter item weighs, so a level costs at most the whole weight (twice, to be safe).
    weight = ctx.weight(values)
    ctx.charge(_step_cost(ctx, values) + levels * (ITEM_COST * count + 2 * weight), 8 * count + 64)
    result = sorted(values)
    if count > REMEMBER_ITEMS:
        ctx.remember(result, weight if type(values) is not str else ITEM_COST * count + count)
    return result


def _container(build: type) -> Callable[..., Any]:
    """``list(x)``, ``tuple(x)``, ``set(x)`` of text (its characters) or of a list, tuple,
    set or dictionary (its keys); without an argument, an empty one."""

    def run(ctx: Context, *args: Any) -> Any:
        if not args:
            return build()
        (values,) = args
        if not isinstance(values, str | list | tuple | set | dict):
            raise RuleRuntimeError(
                f"{build.__name__}(): needs text, a list or a dictionary, not {type_name(values)}"
            )
        count = len(values)
        if build is set:
            # Hashing each item costs what it weighs; characters are new texts each.
            weight = ctx.weight(values) if type(values) is not dict else ctx.weight(list(values))
            ctx.charge(_step_cost(ctx, values) + SET_ITEM_COST * count + weight, 64 * count + 256)
            return ctx.remember(set(values), ITEM_COST * count + weight)
        ctx.charge(_step_cost(ctx, values) + ITEM_COST * count, 8 * count + 64)
        result = build(values)
        known = ctx.known_weight(values) if type(values) is not str else None
        return ctx.remember(result, known) if known is not None else result

    return run


def _rounding(pick: Callable[[float], int]) -> Callable[..., int]:
    def run(ctx: Context, value: Any) -> int:
        if type(value) not in (int, float, bool):
            raise RuleRuntimeError(f"{pick.__name__}(): needs a number, not {type_name(value)}")
        return pick(value)

    return run


def _abs(ctx: Context, value: Any) -> Any:
    return abs(value)


def _bool(ctx: Context, value: Any) -> bool:
    return bool(value)


BUILTINS: dict[str, Function] = {
    f.name: f
    for f in (
        Function("int", 1, 2, _int, "int(text[, base]): the whole number the text spells"),
        Function("float", 1, 1, _float, "float(text): the number the text spells, e.g. '2.5'"),
        Function("str", 1, 1, _str, "str(value): the value as text"),
        Function("len", 1, 1, _len, "len(value): how many characters (text) or items (list)"),
        Function("bool", 1, 1, _bool, "bool(value): False for empty text, 0 or an empty list"),
        Function("abs", 1, 1, _abs, "abs(number): the number without its sign"),
        Function("round", 1, 2, _round, "round(number[, digits]): rounded to digits decimals"),
        Function("min", 1, 8, _extreme(min), "min(a, b, ...) or min(list): the smallest"),
        Function("max", 1, 8, _extreme(max), "max(a, b, ...) or max(list): the largest"),
        Function("any", 1, 1, _truth(any), "any(list): True if any item is true"),
        Function("all", 1, 1, _truth(all), "all(list): True if every item is true"),
        Function("sum", 1, 2, _sum, "sum(list[, start]): the numbers of the list added up"),
        Function("sorted", 1, 1, _sorted, "sorted(list): a new list, smallest item first"),
        Function("floor", 1, 1, _rounding(math.floor), "floor(number): rounded down"),
        Function(
            "list", 0, 1, _container(list), "list(value): a list of the items (text: characters)"
        ),
        Function("tuple", 0, 1, _container(tuple), "tuple(value): the items as a tuple"),
        Function(
            "set",
            0,
            1,
            _container(set),
            "set(value): the distinct items, e.g. set(tags.ImageType.split('\\\\'))",
        ),
        Function("ceil", 1, 1, _rounding(math.ceil), "ceil(number): rounded up"),
    )
}
"""Built-in functions a rule may call, by name."""

REGEX_HELPERS = ("match", "search", "fullmatch")
"""Regex helpers ``name(pattern, text)``: match at the start, anywhere, or the whole text."""

REGEX_DOCS = {
    "match": "match(pattern, text): True if the regular expression matches at the start",
    "search": "search(pattern, text): True if the regular expression matches anywhere",
    "fullmatch": "fullmatch(pattern, text): True if the regular expression matches all of it",
}
"""One line per regex helper (the pattern is RE2 syntax and must be a literal)."""

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # RE2 would print every bad pattern to stderr
# The helpers only say whether there is a match: without groups to fill in, RE2 answers with
# its fast automaton instead of the slower engines that track groups (100x on some patterns).
_RE2_OPTIONS.never_capture = True

REGEX_CHAR_COST = 8
"""Work units per character of text searched by a regex helper, plus ``REGEX_STEP_COST`` per
instruction of the compiled pattern. RE2's time is linear in the text, but when its fast
automaton gives up (it does on patterns like ``(\\w{1,100}){10}z``) it steps through every
instruction for every character: up to 15 ns each, 60 us per character for that pattern
(4,000 instructions), depending on what the shared pattern object searched before. The work
cannot be interrupted, so it is charged at that rate, before it starts."""
REGEX_STEP_COST = 16


def compile_pattern(pattern: str) -> Any:
    """Compile a regex helper's pattern; ``ValueError`` with RE2's reason if it is invalid."""
    try:
        return re2.compile(pattern, options=_RE2_OPTIONS)
    except re2.error as error:
        reason = error.args[0] if error.args else "invalid pattern"
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise ValueError(str(reason)) from None


def regex_runner(helper: str, compiled: Any) -> Callable[[Context, Any], bool]:
    """The run-time part of ``match`` / ``search`` / ``fullmatch`` for a compiled pattern."""
    method = getattr(compiled, helper)
    steps = max(compiled.programsize, compiled.reverseprogramsize)
    per_char = REGEX_CHAR_COST + REGEX_STEP_COST * steps

    def run(ctx: Context, text: Any) -> bool:
        if not isinstance(text, str):
            raise RuleRuntimeError(f"{helper}(): the second argument must be text")
        # RE2 reads UTF-8: the text is encoded into a copy first.
        ctx.charge(per_char * len(text), len(text) if text.isascii() else 4 * len(text))
        try:
            return method(text) is not None
        except UnicodeError:
            raise RuleRuntimeError(f"{helper}(): the text is not valid Unicode") from None

    return run
