"""Operators of the rule language, each refusing results that would exceed the limits.

The tables map Python's syntax-tree operator types to functions taking the evaluation
context (for the work budget) and the operands.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from typing import Any

from mercure.core.rules.errors import RuleRuntimeError
from mercure.core.rules.runtime import (
    MAX_INT_BITS,
    MAX_ITEMS,
    MAX_TEXT_CHARS,
    Context,
    type_name,
)


def _sequence_size(value: object) -> int:
    if isinstance(value, str | list | tuple):
        return len(value)
    return 0


def add(ctx: Context, a: Any, b: Any) -> Any:
    """``a + b`` that cannot build oversized text or lists."""
    size = _sequence_size(a) + _sequence_size(b)
    if size:
        ctx.charge(size)
        if isinstance(a, str):
            if size > MAX_TEXT_CHARS:
                raise RuleRuntimeError(f"text longer than {MAX_TEXT_CHARS} characters")
        elif size > MAX_ITEMS:
            raise RuleRuntimeError(f"list longer than {MAX_ITEMS} items")
    return a + b


def multiply(ctx: Context, a: Any, b: Any) -> Any:
    """``a * b`` that refuses oversized repetition or integers before computing them."""
    if isinstance(b, str | list | tuple):
        a, b = b, a
    if isinstance(a, str | list | tuple):
        if not isinstance(b, int):
            raise RuleRuntimeError(f"cannot repeat {type_name(a)} by {type_name(b)}")
        size = len(a) * max(b, 0)
        limit = MAX_TEXT_CHARS if isinstance(a, str) else MAX_ITEMS
        if size > limit:
            raise RuleRuntimeError(f"repetition would exceed {limit} characters or items")
        ctx.charge(size)
    elif (
        isinstance(a, int) and isinstance(b, int) and a.bit_length() + b.bit_length() > MAX_INT_BITS
    ):
        raise RuleRuntimeError(f"number larger than {MAX_INT_BITS} bits")
    return a * b


def power(ctx: Context, a: Any, b: Any) -> Any:
    """``a ** b`` that refuses huge integer results before computing them."""
    huge = isinstance(a, int) and isinstance(b, int) and (a.bit_length() - 1) * b > MAX_INT_BITS
    if huge:
        raise RuleRuntimeError(f"number larger than {MAX_INT_BITS} bits")
    result = a**b
    if isinstance(result, complex):
        raise RuleRuntimeError("the result is not a real number")
    return result


def modulo(ctx: Context, a: Any, b: Any) -> Any:
    """``a % b`` for numbers only: ``%`` formatting of text could build any amount of text."""
    if isinstance(a, str):
        raise RuleRuntimeError("'%' formatting of text is not allowed")
    return a % b


def contains(ctx: Context, item: Any, container: Any) -> bool:
    """``item in container``, charging the length of the text or list searched."""
    if isinstance(container, str | list | tuple):
        ctx.charge(len(container))
    elif not isinstance(container, set):
        raise RuleRuntimeError(
            f"'in' needs text or a list on its right, got {type_name(container)}"
        )
    return item in container


def number(value: Any, sign: str) -> Any:
    """The value itself if it is a number, for unary ``-`` and ``+``."""
    if isinstance(value, int | float):
        return value
    raise TypeError(f"'{sign}' needs a number, not {type_name(value)}")


PLAIN_OPERATORS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Sub: operator.sub,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.BitOr: operator.or_,
    ast.BitAnd: operator.and_,
    ast.BitXor: operator.xor,
}
"""Operators whose result is never larger than their operands allow."""

CHECKED_OPERATORS: dict[type[ast.operator], Callable[[Context, Any, Any], Any]] = {
    ast.Add: add,
    ast.Mult: multiply,
    ast.Mod: modulo,
    ast.Pow: power,
}
"""Operators that could build huge values, checked before they do."""

COMPARISONS: dict[type[ast.cmpop], Callable[[Context, Any, Any], bool]] = {
    ast.Eq: lambda ctx, a, b: a == b,
    ast.NotEq: lambda ctx, a, b: a != b,
    ast.Lt: lambda ctx, a, b: a < b,
    ast.LtE: lambda ctx, a, b: a <= b,
    ast.Gt: lambda ctx, a, b: a > b,
    ast.GtE: lambda ctx, a, b: a >= b,
    ast.In: contains,
    ast.NotIn: lambda ctx, a, b: not contains(ctx, a, b),
}
"""Comparison operators, as Python defines them (``in`` charged to the work budget)."""
