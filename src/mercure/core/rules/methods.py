"""The text methods a rule may call (``tags.X.upper()``), each with a plan that charges its
work and memory and refuses an oversized result before the method runs.

Only the names in ``METHODS`` can follow a ``.``, and they are looked up on ``str`` itself,
so a value can never supply its own method. ``center``, ``ljust``, ``zfill``, ``expandtabs``,
``format`` and ``join`` are not among them: the first four build any amount of text from one
number, ``format`` can read attributes, and the language has no use for ``join``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from mercure.core.rules.errors import RuleRuntimeError
from mercure.core.rules.functions import Function
from mercure.core.rules.operators import search_cost
from mercure.core.rules.runtime import (
    CASE_COST,
    CHAR_TEST_COST,
    ITEM_COST,
    MAX_ITEMS,
    PIECE_COST,
    REMEMBER_ITEMS,
    Context,
    check_result,
    need_items,
    need_text,
    type_name,
    width,
)

Plan = Callable[[Context, str, tuple[Any, ...]], tuple[Any, ...]]
"""Charges a method call on ``text`` and returns the arguments to call it with."""

_LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"
"""Where ``splitlines`` breaks (``\\r\\n`` counts once)."""


def _case(*, cheap_for_ascii: bool) -> Plan:
    def plan(ctx: Context, text: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
        size = len(text)
        need_text(size)  # case conversion never makes text shorter
        if text.isascii():
            ctx.charge(2 * size if cheap_for_ascii else CASE_COST * size, size)
        else:
            # Python converts through a buffer of three 4-byte characters per character (one
            # character can become three: 'ß'.upper() == 'SS'); the result is checked after.
            ctx.charge(CASE_COST * size, 24 * size)
        return args

    return plan


def _test(ctx: Context, text: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    ctx.charge(CHAR_TEST_COST * len(text))
    return args


def _free(ctx: Context, text: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    return args


def _strip(ctx: Context, text: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    chars = args[0] if args else None
    # Each character stripped is looked up among ``chars``.
    lookup = len(chars) // 2 if isinstance(chars, str) else 0
    ctx.charge(len(text) * (4 + lookup), len(text) * width(text))
    return args


def _affix(ctx: Context, text: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """startswith, endswith: at most the length of each choice is compared."""
    ctx.charge(ctx.weight(args[0]) + 1)
    return args


def _remove_affix(ctx: Context, text: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    ctx.charge(len(text) + ctx.weight(args[0]), len(text) * width(text))
    return args


def _search(ctx: Context, text: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """find, rfind, count: time linear in the text and the text searched for."""
    ctx.charge(len(text) + ctx.weight(args[0]))
    return args


def _partition(ctx: Context, text: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    size = len(text)
    ctx.charge(size + ctx.weight(args[0]), size * width(text) + 3 * PIECE_COST)
    return args


def _replace(ctx: Context, text: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    old, new = args[0], args[1]
    count = args[2] if len(args) > 2 else -1
    if not isinstance(old, str) or not isinstance(new, str) or not isinstance(count, int):
        return args  # str.replace refuses them at once
    length = len(text)
    ctx.charge(length + len(old))  # counting the matches, to know the result's size
    hits = text.count(old)
    if 0 <= count < hits:
        hits = count
    size = length + hits * (len(new) - len(old))
    need_text(size)
    ctx.charge(4 * (length + size), size * width(text, new))
    return args


def _split(ctx: Context, text: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """split, rsplit: at most ``MAX_ITEMS`` splits are made, whatever ``maxsplit`` says, so a
    list past the limit is refused having built one piece more than the limit allows."""
    sep = args[0] if args else None
    maxsplit = args[1] if len(args) > 1 else -1
    if not (sep is None or type(sep) is str) or not isinstance(maxsplit, int) or sep == "":
        return args  # str.split refuses them at once
    length = len(text)
    pieces = length // len(sep) + 1 if sep else (length + 1) // 2 + 1
    if 0 <= maxsplit < pieces:
        pieces = maxsplit + 1
    bytes_per_char = 1 if text.isascii() else 4
    if pieces <= MAX_ITEMS:  # the common case: the limit cannot be reached
        ctx.charge(2 * length + PIECE_COST * pieces, length * bytes_per_char + PIECE_COST * pieces)
        return args
    pieces = MAX_ITEMS + 1
    ctx.charge(2 * length + PIECE_COST * pieces, length * bytes_per_char + PIECE_COST * pieces)
    return (sep, MAX_ITEMS if maxsplit < 0 else min(maxsplit, MAX_ITEMS))


def _splitlines(ctx: Context, text: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    length = len(text)
    pieces = length
    if length > MAX_ITEMS:
        ctx.charge(len(_LINE_BREAKS) * length)
        pieces = sum(text.count(char) for char in _LINE_BREAKS) - text.count("\r\n")
        if text[-1] not in _LINE_BREAKS:
            pieces += 1
        need_items(pieces)
    ctx.charge(length + PIECE_COST * pieces, length * width(text) + PIECE_COST * pieces)
    return args


_CASE = _case(cheap_for_ascii=False)
_CASE_FAST = _case(cheap_for_ascii=True)

_METHODS: dict[str, tuple[int, int, Plan]] = {
    "upper": (0, 0, _CASE_FAST),
    "lower": (0, 0, _CASE_FAST),
    "casefold": (0, 0, _CASE_FAST),
    "title": (0, 0, _CASE),
    "capitalize": (0, 0, _CASE),
    "swapcase": (0, 0, _CASE),
    "strip": (0, 1, _strip),
    "lstrip": (0, 1, _strip),
    "rstrip": (0, 1, _strip),
    "startswith": (1, 3, _affix),
    "endswith": (1, 3, _affix),
    "split": (0, 2, _split),
    "rsplit": (0, 2, _split),
    "splitlines": (0, 1, _splitlines),
    "partition": (1, 1, _partition),
    "rpartition": (1, 1, _partition),
    "replace": (2, 3, _replace),
    "removeprefix": (1, 1, _remove_affix),
    "removesuffix": (1, 1, _remove_affix),
    "find": (1, 3, _search),
    "rfind": (1, 3, _search),
    "count": (1, 3, _search),
    "isdigit": (0, 0, _test),
    "isdecimal": (0, 0, _test),
    "isnumeric": (0, 0, _test),
    "isalpha": (0, 0, _test),
    "isalnum": (0, 0, _test),
    "isspace": (0, 0, _test),
    "isupper": (0, 0, _test),
    "islower": (0, 0, _test),
    "istitle": (0, 0, _test),
    "isascii": (0, 0, _free),
}
"""Text methods: (min args, max args, plan)."""


def method(name: str) -> Function:
    """The text method ``name`` as a ``Function`` taking the text first, or ``KeyError``."""
    low, high, plan = _METHODS[name]
    unbound = getattr(str, name)
    is_count = name == "count"
    makes_pieces = name in ("split", "rsplit", "splitlines")

    def run(ctx: Context, text: Any, *args: Any) -> Any:
        if type(text) is not str:
            if is_count and type(text) in (list, tuple) and len(args) == 1:
                # `tags.ImageType.split('\\').count('AXIAL')`: counting in a list, as in Python.
                ctx.charge(search_cost(ctx, args[0], text))
                return text.count(args[0])
            raise RuleRuntimeError(f".{name}() needs text, got {type_name(text)}")
        result = check_result(unbound(text, *plan(ctx, text, args)))
        if makes_pieces and len(result) > REMEMBER_ITEMS:
            ctx.remember(result, ITEM_COST * len(result) + len(text))
        return result

    return Function(name, low, high, run, _doc(name))


def _doc(name: str) -> str:
    """The call and the first sentence of Python's own documentation of the method (the
    methods are ``str``'s, so that is what they do)."""
    lines = (getattr(str, name).__doc__ or "").strip().splitlines()
    call = f".{name}({_parameters(name)})"
    while lines and ("->" in lines[0] or not lines[0].strip()):
        if "->" in lines[0]:  # "S.find(sub[, start[, end]]) -> int"
            call = "." + lines[0].split("->")[0].strip().removeprefix("S.")
        lines.pop(0)
    paragraph = []
    for line in lines:
        if not line.strip():
            break
        paragraph.append(line.strip())
    text = " ".join(paragraph)
    sentence = text.split(". ")[0].rstrip(".") + "."
    for python, ours in (("string S[start:end]", "the text"), ("S[start:end]", "the text")):
        sentence = sentence.replace(python, ours)
    return f"{call}: {sentence.replace(' S ', ' the text ')}"


def _parameters(name: str) -> str:
    try:
        signature = inspect.signature(getattr(str, name))
    except (TypeError, ValueError):
        return ""
    shown = []
    for parameter in list(signature.parameters.values())[1:]:
        optional = parameter.default is not inspect.Parameter.empty
        shown.append(f"[{parameter.name}]" if optional else parameter.name)
    return ", ".join(shown)


METHODS: dict[str, Function] = {name: method(name) for name in _METHODS}
"""Text methods a rule may call, by name."""
