"""The functions and text methods a rule may call, each with its argument counts and limits.

Nothing here hands a Python object to the rule that it could use to reach further: every
function takes and returns plain values (text, numbers, True/False, lists), and the text
methods are looked up in a fixed table, never by ``getattr`` on a value.

Regular expressions use RE2 (the ``google-re2`` package): it matches in time linear in the
length of the text, so a pattern like ``(a+)+$`` cannot stall the router (Python's ``re``
backtracks exponentially and has no timeout). Patterns must be literals, compiled when the
rule is compiled, so a bad pattern is a configuration error with its column.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import re2

from mercure.core.rules.errors import RuleRuntimeError
from mercure.core.rules.runtime import (
    MAX_INT_BITS,
    MAX_ROUND_DIGITS,
    MAX_TEXT_CHARS,
    Context,
    check_result,
    check_text,
    type_name,
)


@dataclass(frozen=True, slots=True)
class Function:
    """A callable name: how many positional arguments it takes and what it does."""

    name: str
    min_args: int
    max_args: int
    run: Callable[..., Any]


def _charge_values(ctx: Context, values: tuple[Any, ...]) -> None:
    ctx.charge(sum(len(v) for v in values if isinstance(v, str | list | tuple | set)))


def _int(ctx: Context, value: Any, base: Any = None) -> int:
    _charge_values(ctx, (value,))
    if isinstance(value, str):
        if len(value) > 1_000:
            raise RuleRuntimeError("int(): the text is too long for a number")
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
    _charge_values(ctx, (value,))
    return check_text(str(value))


def _len(ctx: Context, value: Any) -> int:
    if not isinstance(value, str | list | tuple | set):
        raise RuleRuntimeError(f"len(): cannot measure {type_name(value)}")
    return len(value)


def _round(ctx: Context, value: Any, ndigits: Any = None) -> Any:
    if ndigits is None:
        return round(value)
    if not isinstance(ndigits, int) or abs(ndigits) > MAX_ROUND_DIGITS:
        raise RuleRuntimeError(f"round(): digits must be a whole number up to {MAX_ROUND_DIGITS}")
    return round(value, ndigits)


def _extreme(pick: Callable[..., Any]) -> Callable[..., Any]:
    def run(ctx: Context, *args: Any) -> Any:
        _charge_values(ctx, args)
        if len(args) == 1 and not isinstance(args[0], str | list | tuple | set):
            raise RuleRuntimeError(f"{pick.__name__}(): one argument must be text or a list")
        return pick(*args)

    return run


def _truth(pick: Callable[..., Any]) -> Callable[..., Any]:
    def run(ctx: Context, values: Any) -> bool:
        if not isinstance(values, str | list | tuple | set):
            raise RuleRuntimeError(f"{pick.__name__}(): needs text or a list")
        ctx.charge(len(values))
        return bool(pick(values))

    return run


def _abs(ctx: Context, value: Any) -> Any:
    return abs(value)


def _bool(ctx: Context, value: Any) -> bool:
    return bool(value)


BUILTINS: dict[str, Function] = {
    f.name: f
    for f in (
        Function("int", 1, 2, _int),
        Function("float", 1, 1, _float),
        Function("str", 1, 1, _str),
        Function("len", 1, 1, _len),
        Function("bool", 1, 1, _bool),
        Function("abs", 1, 1, _abs),
        Function("round", 1, 2, _round),
        Function("min", 1, 8, _extreme(min)),
        Function("max", 1, 8, _extreme(max)),
        Function("any", 1, 1, _truth(any)),
        Function("all", 1, 1, _truth(all)),
    )
}
"""Built-in functions a rule may call, by name."""

REGEX_HELPERS = ("match", "search", "fullmatch")
"""Regex helpers ``name(pattern, text)``: match at the start, anywhere, or the whole text."""

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # RE2 would print every bad pattern to stderr


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

    def run(ctx: Context, text: Any) -> bool:
        if not isinstance(text, str):
            raise RuleRuntimeError(f"{helper}(): the second argument must be text")
        ctx.charge(len(text))
        try:
            return method(text) is not None
        except UnicodeError:
            raise RuleRuntimeError(f"{helper}(): the text is not valid Unicode") from None

    return run


# Text methods: (min args, max args). Only these names can follow a '.', and they are
# looked up on ``str`` itself, so a value can never supply its own method.
_METHOD_ARITY: dict[str, tuple[int, int]] = {
    "upper": (0, 0),
    "lower": (0, 0),
    "casefold": (0, 0),
    "title": (0, 0),
    "capitalize": (0, 0),
    "swapcase": (0, 0),
    "strip": (0, 1),
    "lstrip": (0, 1),
    "rstrip": (0, 1),
    "startswith": (1, 3),
    "endswith": (1, 3),
    "split": (0, 2),
    "rsplit": (0, 2),
    "splitlines": (0, 1),
    "partition": (1, 1),
    "rpartition": (1, 1),
    "replace": (2, 3),
    "removeprefix": (1, 1),
    "removesuffix": (1, 1),
    "find": (1, 3),
    "rfind": (1, 3),
    "count": (1, 3),
    "isdigit": (0, 0),
    "isdecimal": (0, 0),
    "isnumeric": (0, 0),
    "isalpha": (0, 0),
    "isalnum": (0, 0),
    "isspace": (0, 0),
    "isupper": (0, 0),
    "islower": (0, 0),
    "istitle": (0, 0),
    "isascii": (0, 0),
}


def _replace_size(text: str, old: Any, new: Any, count: Any = -1) -> int:
    if not isinstance(old, str) or not isinstance(new, str) or not isinstance(count, int):
        return len(text)  # str.replace itself will refuse the arguments
    growth = len(new) - len(old)
    if growth <= 0:
        return len(text)
    hits = text.count(old) if old else len(text) + 1
    if count >= 0:
        hits = min(hits, count)
    return len(text) + hits * growth


def method(name: str) -> Function:
    """The text method ``name`` as a ``Function`` taking the text first, or ``KeyError``."""
    low, high = _METHOD_ARITY[name]
    unbound = getattr(str, name)
    is_replace = name == "replace"
    is_count = name == "count"

    def run(ctx: Context, text: Any, *args: Any) -> Any:
        if is_count and type(text) in (list, tuple) and len(args) == 1:
            # `tags.ImageType.split('\\').count('AXIAL')`: counting in a list, as in Python.
            ctx.charge(len(text))
            _charge_values(ctx, args)
            return text.count(args[0])
        if type(text) is not str:
            raise RuleRuntimeError(f".{name}() needs text, got {type_name(text)}")
        ctx.charge(len(text))
        _charge_values(ctx, args)
        if is_replace and _replace_size(text, *args) > MAX_TEXT_CHARS:
            raise RuleRuntimeError(f"text longer than {MAX_TEXT_CHARS} characters")
        return check_result(unbound(text, *args))

    return Function(name, low, high, run)


METHODS: dict[str, Function] = {name: method(name) for name in _METHOD_ARITY}
"""Text methods a rule may call, by name."""
