"""Operators of the rule language, each charging its cost and refusing oversized results
before it runs (see ``runtime`` for the budgets).

The tables map Python's syntax-tree operator types to functions taking the evaluation
context and the operands.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

from mercure.core.rules.errors import RuleRuntimeError
from mercure.core.rules.runtime import (
    ITEM_COST,
    MAX_INT_BITS,
    MAX_ITEMS,
    MAX_TEXT_CHARS,
    Context,
    need_items,
    need_text,
    type_name,
    width,
)

CHEAP_SEARCH = 4_096
"""Below this bound a search of a list is charged as is, without measuring the list."""


def add(ctx: Context, a: Any, b: Any) -> Any:
    """``a + b`` that cannot build oversized text or lists."""
    kind = type(a)
    if kind is str and type(b) is str:
        size = len(a) + len(b)
        need_text(size)
        ctx.charge(size, size * width(a, b))
    elif (kind is list or kind is tuple) and type(b) is kind:
        items = len(a) + len(b)
        need_items(items)
        ctx.charge(ITEM_COST * items, 8 * items + 64)
        weight_a, weight_b = ctx.known_weight(a), ctx.known_weight(b)
        if weight_a is not None and weight_b is not None:
            return ctx.remember(a + b, weight_a + weight_b)
    return a + b


def multiply(ctx: Context, a: Any, b: Any) -> Any:
    """``a * b`` that refuses oversized repetition or integers before computing them."""
    if isinstance(b, str | list | tuple):
        a, b = b, a
    if isinstance(a, str | list | tuple):
        if not isinstance(b, int):
            raise RuleRuntimeError(f"cannot repeat {type_name(a)} by {type_name(b)}")
        times = max(b, 0)
        size = len(a) * times
        limit = MAX_TEXT_CHARS if isinstance(a, str) else MAX_ITEMS
        if size > limit:
            raise RuleRuntimeError(f"repetition would exceed {limit} characters or items")
        if isinstance(a, str):
            ctx.charge(size, size * width(a))
            return a * times
        # Every copy shares the items of ``a``: comparing or printing the result costs
        # ``times`` times what ``a`` costs, however little memory it takes.
        weight = ctx.weight(a) * times
        ctx.charge(ITEM_COST * size, 8 * size + 64)
        return ctx.remember(a * times, weight)
    if isinstance(a, int) and isinstance(b, int) and a.bit_length() + b.bit_length() > MAX_INT_BITS:
        raise RuleRuntimeError(f"number larger than {MAX_INT_BITS} bits")
    return a * b


def power(ctx: Context, a: Any, b: Any) -> Any:
    """``a ** b`` that refuses huge integer results before computing them."""
    if (
        isinstance(a, int)
        and isinstance(b, int)
        and b > 0
        and abs(a) > 1
        and b * math.log2(abs(a)) > MAX_INT_BITS
    ):
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


def compare_cost(ctx: Context, a: Any, b: Any, *, equality: bool) -> int:
    """Work of comparing ``a`` with ``b``: at most the lighter of the two, and nothing where
    Python answers at once (different types, or ``==`` of different lengths)."""
    kind = type(a)
    if kind is str:
        if type(b) is not str:
            return 0
        if equality:
            return len(a) if len(a) == len(b) else 0
        return min(len(a), len(b))
    if (kind is list or kind is tuple or kind is set or kind is dict) and type(b) is kind:
        if equality and len(a) != len(b):
            return 0
        return min(ctx.weight(a), ctx.weight(b))
    return 0


def search_cost(ctx: Context, item: Any, items: list[Any] | tuple[Any, ...]) -> int:
    """Work of comparing ``item`` with every item of a list (``in``, ``.count``): at most
    what ``item`` weighs per item, or what the list weighs if that is known and less."""
    weight = len(item) if type(item) is str else ctx.weight(item)
    bound = len(items) * (ITEM_COST + weight)
    if bound > CHEAP_SEARCH:
        known = ctx.known_weight(items)
        if known is not None:
            bound = min(bound, known)
    return bound


def contains(ctx: Context, item: Any, container: Any) -> bool:
    """``item in container``, charged before it searches."""
    kind = type(container)
    if kind is str:
        if type(item) is str:
            ctx.charge(len(container) + len(item))
    elif kind is list or kind is tuple:
        ctx.charge(search_cost(ctx, item, container))
    elif kind is set or kind is dict:
        ctx.charge(2 * ctx.weight(item))  # hashing it, and comparing it with its match
    else:
        raise RuleRuntimeError(
            f"'in' needs text, a list or a dictionary on its right, got {type_name(container)}"
        )
    return item in container


def equal(ctx: Context, a: Any, b: Any) -> bool:
    """``a == b``, charged by ``compare_cost``."""
    cost = compare_cost(ctx, a, b, equality=True)
    if cost:
        ctx.charge(cost)
    return bool(a == b)


def not_equal(ctx: Context, a: Any, b: Any) -> bool:
    """``a != b``, charged by ``compare_cost``."""
    cost = compare_cost(ctx, a, b, equality=True)
    if cost:
        ctx.charge(cost)
    return bool(a != b)


def _ordering(test: Callable[[Any, Any], Any]) -> Callable[[Context, Any, Any], bool]:
    def run(ctx: Context, a: Any, b: Any) -> bool:
        cost = compare_cost(ctx, a, b, equality=False)
        if cost:
            ctx.charge(cost)
        return bool(test(a, b))

    return run


def _set_operation(test: Callable[[Any, Any], Any]) -> Callable[[Context, Any, Any], Any]:
    def run(ctx: Context, a: Any, b: Any) -> Any:
        kind = type(a)
        if (kind is set or kind is dict) and type(b) is kind:  # dict | dict merges
            # Items with equal hashes are compared: at most what both sets weigh.
            items = len(a) + len(b)
            ctx.charge(ctx.weight(a) + ctx.weight(b), 64 * items + 256)
        return test(a, b)

    return run


def number(value: Any, sign: str) -> Any:
    """The value itself if it is a number, for unary ``-`` and ``+``."""
    if isinstance(value, int | float):
        return value
    raise TypeError(f"'{sign}' needs a number, not {type_name(value)}")


PLAIN_OPERATORS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
}
"""Operators on numbers only (Python refuses them on text, lists and sets), whose result is
never much larger than their operands."""

CHECKED_OPERATORS: dict[type[ast.operator], Callable[[Context, Any, Any], Any]] = {
    ast.Add: add,
    ast.Mult: multiply,
    ast.Mod: modulo,
    ast.Pow: power,
    ast.Sub: _set_operation(operator.sub),
    ast.BitOr: _set_operation(operator.or_),
    ast.BitAnd: _set_operation(operator.and_),
    ast.BitXor: _set_operation(operator.xor),
}
"""Operators that could build huge values, checked before they do."""

COMPARISONS: dict[type[ast.cmpop], Callable[[Context, Any, Any], bool]] = {
    ast.Eq: equal,
    ast.NotEq: not_equal,
    ast.Lt: _ordering(operator.lt),
    ast.LtE: _ordering(operator.le),
    ast.Gt: _ordering(operator.gt),
    ast.GtE: _ordering(operator.ge),
    ast.In: contains,
    ast.NotIn: lambda ctx, a, b: not contains(ctx, a, b),
    # Only with None, True or False on one side (the compiler checks): identity of singletons.
    ast.Is: lambda ctx, a, b: a is b,
    ast.IsNot: lambda ctx, a, b: a is not b,
}
"""Comparison operators, as Python defines them, each charged before it compares."""
