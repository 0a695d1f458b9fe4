"""Turn a parsed rule into a tree of closures, accepting only whitelisted syntax.

Every node type of the Python expression grammar that is not handled by a ``_visit_*``
method below is refused with its column, so a new Python version that adds syntax cannot
widen the language by accident. The closures take a ``Context`` and return a plain value;
evaluating them never calls ``eval``/``exec`` and never looks an attribute up on a value.

Parts whose inputs are all literals are computed once here ("constant folding"): that makes
rules faster, and a part that can only fail (``9**9**9``, ``1/0``) is a compile error. Folding
runs under the budgets of one evaluation (all folds of a rule together, no wall clock, so
that whether a configuration is valid never depends on how busy the machine is): a literal
part too big to build, or needing too much work, is a compile error too, found before it
takes the memory (``str(['a' * 999999] * 100000)``).
"""

from __future__ import annotations

import ast
import builtins
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mercure.core.mercuretags import tag_number_key
from mercure.core.rules.errors import Rejected, RuleRuntimeError
from mercure.core.rules.functions import (
    BUILTINS,
    REGEX_HELPERS,
    Function,
    compile_pattern,
    regex_runner,
)
from mercure.core.rules.methods import METHODS
from mercure.core.rules.operators import (
    CHECKED_OPERATORS,
    COMPARISONS,
    PLAIN_OPERATORS,
    number,
)
from mercure.core.rules.runtime import (
    ITEM_COST,
    MAX_DEPTH,
    MAX_INT_BITS,
    MAX_KEY_CHARS,
    MAX_NODES,
    MAX_PATTERN_CHARS,
    REMEMBER_ITEMS,
    RUNTIME_ERRORS,
    SET_ITEM_COST,
    Context,
    describe,
    type_name,
    width,
)
from mercure.core.rules.source import LEGACY_MARK, ParsedRule

Evaluator = Callable[[Context], Any]

_NOT_CONSTANT = object()

FREE_WORK = 1_000
"""A comparison with a literal that weighs at most this much is not charged: with at most
``MAX_NODES`` parts, all such comparisons together stay far below the work budget."""

_FAST_COMPARISONS: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
}

_FORBIDDEN: dict[type[ast.AST], str] = {
    ast.Lambda: "lambda is not allowed",
    ast.ListComp: "comprehensions are not allowed",
    ast.SetComp: "comprehensions are not allowed",
    ast.DictComp: "comprehensions are not allowed",
    ast.GeneratorExp: "comprehensions are not allowed",
    ast.JoinedStr: "f-strings are not allowed",
    ast.FormattedValue: "f-strings are not allowed",
    ast.NamedExpr: "':=' is not allowed",
    ast.Starred: "'*' unpacking is not allowed",
    ast.Await: "'await' is not allowed",
    ast.Yield: "'yield' is not allowed",
    ast.YieldFrom: "'yield' is not allowed",
}


@dataclass(frozen=True, slots=True)
class Code:
    """A compiled part of a rule: its evaluator and, if it is a literal, its value."""

    run: Evaluator
    constant: Any = _NOT_CONSTANT

    @property
    def is_constant(self) -> bool:
        """Whether the value is known without any tags."""
        return self.constant is not _NOT_CONSTANT


def _constant(value: Any) -> Code:
    return Code(lambda ctx: value, value)


def _is_tags(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id == "tags"


class Compiler:
    """Compiles one parsed rule; ``tags`` lists the tag keywords it refers to, in order."""

    def __init__(self, parsed: ParsedRule) -> None:
        self._parsed = parsed
        self._tags: dict[str, None] = {}
        self._folding = Context({})
        self._folding.time_limit = None
        self._kept: list[Any] = []  # folded lists and sets that the evaluation will see
        self.known_weights: dict[int, tuple[Any, int]] = {}
        """After ``compile``: the weights of the folded lists and sets the rule keeps, by
        ``id`` (with the value, which keeps the ``id`` valid), so that evaluations need not
        measure them again."""

    @property
    def tags(self) -> tuple[str, ...]:
        """Tag keywords the rule refers to, each once, in order of appearance."""
        return tuple(self._tags)

    def compile(self) -> Code:
        """The rule as one ``Code``; ``Rejected`` for anything not allowed."""
        body = self._parsed.tree.body
        self._check_size(body)
        code = self._visit(body)
        self.known_weights = {id(value): (value, self._weight(body, value)) for value in self._kept}
        return code

    # -- helpers -----------------------------------------------------------------------------

    def _reject(self, node: ast.AST, reason: str) -> Rejected:
        line, column = self._parsed.position(
            getattr(node, "lineno", 1), getattr(node, "col_offset", 0)
        )
        return Rejected(reason, line, column)

    def _reject_attribute(self, node: ast.Attribute, reason: str) -> Rejected:
        """Point at the attribute name rather than at the start of ``value.name``."""
        lineno = node.end_lineno or node.lineno
        offset = (node.end_col_offset or 0) - len(node.attr.encode("utf-8"))
        if lineno == node.lineno:
            offset = max(offset, node.col_offset)
        line, column = self._parsed.position(lineno, max(offset, 0))
        return Rejected(reason, line, column)

    def _check_size(self, body: ast.expr) -> None:
        count = 0
        stack: list[tuple[ast.AST, int]] = [(body, 1)]
        while stack:
            node, depth = stack.pop()
            if isinstance(node, ast.expr):
                count += 1
                if depth > MAX_DEPTH:
                    raise self._reject(node, f"the expression is nested more than {MAX_DEPTH} deep")
                if count > MAX_NODES:
                    raise self._reject(node, f"the expression has more than {MAX_NODES} parts")
                depth += 1
            stack.extend((child, depth) for child in ast.iter_child_nodes(node))

    def _fold(self, node: ast.AST, run: Evaluator, parts: Sequence[Code]) -> Code:
        """``run`` as it is, or its value if every part is a literal (a failure is an error)."""
        if not all(part.is_constant for part in parts):
            for part in parts:
                if part.is_constant and type(part.constant) in (list, tuple, set):
                    self._kept.append(part.constant)
            return Code(run)
        try:
            value = run(self._folding)
        except RUNTIME_ERRORS as error:
            raise self._reject(node, f"this always fails ({describe(error)})") from None
        return _constant(value)

    def _weight(self, node: ast.AST, value: Any) -> int:
        """The weight of a literal value (see ``Context.weight``), measured when compiling."""
        try:
            return self._folding.weight(value)
        except RUNTIME_ERRORS as error:
            raise self._reject(node, f"this always fails ({describe(error)})") from None

    def _tag(self, keyword: str, *, any_case: bool) -> Code:
        self._tags.setdefault(keyword)

        def load(ctx: Context) -> str:
            try:
                value = ctx.tags[keyword]
            except KeyError:
                return ctx.tag_any_case(keyword) if any_case else ctx.tag(keyword)
            if type(value) is not str:
                return ctx.tag(keyword)  # reports the wrong type
            ctx.used.append(keyword)
            return value

        return Code(load)

    def _visit(self, node: ast.expr) -> Code:
        visitor = getattr(self, "_visit_" + type(node).__name__, None)
        if visitor is None:
            reason = _FORBIDDEN.get(type(node), f"{type(node).__name__} is not allowed")
            raise self._reject(node, reason)
        code: Code = visitor(node)
        return code

    def _visit_all(self, nodes: Sequence[ast.expr]) -> list[Code]:
        return [self._visit(node) for node in nodes]

    # -- leaves ------------------------------------------------------------------------------

    def _visit_Constant(self, node: ast.Constant) -> Code:
        value = node.value
        if isinstance(value, bool | str | float) or value is None:
            return _constant(value)
        if isinstance(value, int):
            if value.bit_length() > MAX_INT_BITS:
                raise self._reject(node, f"number literal larger than {MAX_INT_BITS} bits")
            return _constant(value)
        if isinstance(value, bytes):
            raise self._reject(node, "bytes literals are not allowed")
        if isinstance(value, complex):
            raise self._reject(node, "complex numbers are not allowed")
        raise self._reject(node, f"{value!r} is not allowed")

    def _visit_Name(self, node: ast.Name) -> Code:
        name = node.id
        if len(name) > 2 and name[0] == LEGACY_MARK and name[-1] == LEGACY_MARK:
            return self._tag(name[1:-1], any_case=False)
        raise self._reject(node, self._name_reason(name))

    def _name_reason(self, name: str) -> str:
        if name == "tags":
            return "write tags.Keyword or tags['Keyword'] to use a tag"
        if name in BUILTINS or name in REGEX_HELPERS:
            return f"'{name}' is a function: call it, as in {name}(...)"
        if name.startswith("_") or hasattr(builtins, name):
            return f"name '{name}' is not allowed"
        if name in ("true", "false", "none"):
            return f"unknown name '{name}' (write {name.capitalize()})"
        return f"unknown name '{name}' (a tag is written tags.{name})"

    def _visit_Attribute(self, node: ast.Attribute) -> Code:
        attr = node.attr
        if attr.startswith("_"):
            raise self._reject_attribute(node, f"attribute '{attr}' is not allowed")
        if _is_tags(node.value):
            return self._tag(attr, any_case=True)
        if attr in METHODS:
            raise self._reject_attribute(node, f"'.{attr}' is a method: call it, as in .{attr}()")
        raise self._reject_attribute(node, f"attribute '{attr}' is not allowed")

    def _visit_Subscript(self, node: ast.Subscript) -> Code:
        if _is_tags(node.value):
            key = node.slice
            if not isinstance(key, ast.Constant) or not isinstance(key.value, str):
                raise self._reject(key, "write the tag keyword in quotes, as in tags['Modality']")
            if not key.value or len(key.value) > MAX_KEY_CHARS or key.value.startswith("_"):
                raise self._reject(key, f"'{key.value[:MAX_KEY_CHARS]}' is not a tag keyword")
            # A tag number (private tags): '0019,100C' and '0019_100c' name '(0019,100c)'.
            return self._tag(tag_number_key(key.value) or key.value, any_case=False)
        container = self._visit(node.value)
        if isinstance(node.slice, ast.Slice):
            return self._slice(node, container, node.slice)
        index = self._visit(node.slice)
        get_container, get_index = container.run, index.run

        def item(ctx: Context) -> Any:
            value = get_container(ctx)
            position = get_index(ctx)
            if type(value) is dict:
                ctx.charge(2 * ctx.weight(position))  # hashing the key, comparing its match
                try:
                    return value[position]
                except KeyError:
                    raise RuleRuntimeError("the key is not in the dictionary") from None
            if not isinstance(value, str | list | tuple):
                raise TypeError(f"cannot index {type_name(value)}")
            if not isinstance(position, int):
                raise TypeError(f"an index must be a whole number, not {type_name(position)}")
            return value[position]

        return self._fold(node, item, [container, index])

    def _slice(self, node: ast.Subscript, container: Code, bounds: ast.Slice) -> Code:
        parts = [
            self._visit(part) if part is not None else _constant(None)
            for part in (bounds.lower, bounds.upper, bounds.step)
        ]
        get_container = container.run
        get_parts = [part.run for part in parts]

        def sliced(ctx: Context) -> Any:
            value = get_container(ctx)
            if not isinstance(value, str | list | tuple):
                raise TypeError(f"cannot slice {type_name(value)}")
            lower, upper, step = (get(ctx) for get in get_parts)
            for bound in (lower, upper, step):
                if bound is not None and not isinstance(bound, int):
                    raise TypeError(f"slice bounds must be whole numbers, not {type_name(bound)}")
            count = len(range(*slice(lower, upper, step).indices(len(value))))
            if type(value) is str:
                ctx.charge(count, count * width(value))
                return value[lower:upper:step]
            ctx.charge(ITEM_COST * count, 8 * count + 64)
            part = value[lower:upper:step]
            if count > REMEMBER_ITEMS:
                known = ctx.known_weight(value)
                if known is not None:  # the items left out weigh at least ITEM_COST each
                    ctx.remember(part, known - ITEM_COST * (len(value) - count))
            return part

        return self._fold(node, sliced, [container, *parts])

    # -- calls -------------------------------------------------------------------------------

    def _visit_Call(self, node: ast.Call) -> Code:
        if node.keywords:
            raise self._reject(node.keywords[0], "keyword arguments are not allowed")
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise self._reject(arg, "'*' unpacking is not allowed")
        func = node.func
        if isinstance(func, ast.Name):
            if func.id in REGEX_HELPERS:
                return self._regex_call(node, func.id)
            function = BUILTINS.get(func.id)
            if function is None:
                if func.id[:1] == LEGACY_MARK:
                    raise self._reject(func, "a tag value cannot be called")
                raise self._reject(func, f"function '{func.id}' is not allowed")
            return self._call(node, function, self._visit_all(node.args))
        if isinstance(func, ast.Attribute):
            if func.attr.startswith("_"):
                raise self._reject_attribute(func, f"attribute '{func.attr}' is not allowed")
            if _is_tags(func.value):
                raise self._reject_attribute(func, f"tags.{func.attr} is a tag, not a method")
            method = METHODS.get(func.attr)
            if method is None:
                raise self._reject_attribute(func, f"method '{func.attr}' is not allowed")
            receiver = self._visit(func.value)
            return self._call(node, method, [receiver, *self._visit_all(node.args)], receiver=1)
        raise self._reject(func, "only the listed functions and text methods can be called")

    def _call(
        self, node: ast.Call, function: Function, args: list[Code], receiver: int = 0
    ) -> Code:
        given = len(args) - receiver
        if not function.min_args <= given <= function.max_args:
            if function.min_args == function.max_args:
                expected = str(function.min_args)
            else:
                expected = f"{function.min_args} to {function.max_args}"
            raise self._reject(node, f"{function.name}() takes {expected} arguments, got {given}")
        run = function.run
        getters = [arg.run for arg in args]
        call: Evaluator
        if len(getters) == 1:
            (first,) = getters
            call = lambda ctx: run(ctx, first(ctx))  # noqa: E731 - the hot path, kept flat
        elif len(getters) == 2:
            first, second = getters
            call = lambda ctx: run(ctx, first(ctx), second(ctx))  # noqa: E731
        else:
            call = lambda ctx: run(ctx, *[get(ctx) for get in getters])  # noqa: E731
        return self._fold(node, call, args)

    def _regex_call(self, node: ast.Call, helper: str) -> Code:
        if len(node.args) != 2:
            raise self._reject(node, f"{helper}() takes 2 arguments (pattern, text)")
        pattern = node.args[0]
        if not isinstance(pattern, ast.Constant) or not isinstance(pattern.value, str):
            raise self._reject(pattern, f"the pattern of {helper}() must be a quoted text")
        if len(pattern.value) > MAX_PATTERN_CHARS:
            raise self._reject(
                pattern, f"the pattern is longer than {MAX_PATTERN_CHARS} characters"
            )
        try:
            compiled = compile_pattern(pattern.value)
        except ValueError as error:
            raise self._reject(pattern, f"invalid regular expression ({error})") from None
        run = regex_runner(helper, compiled)
        text = self._visit(node.args[1])
        get_text = text.run
        return self._fold(node, lambda ctx: run(ctx, get_text(ctx)), [text])

    # -- operators ---------------------------------------------------------------------------

    def _visit_BoolOp(self, node: ast.BoolOp) -> Code:
        parts = self._visit_all(node.values)
        getters = [part.run for part in parts]
        run: Evaluator
        if isinstance(node.op, ast.And):
            if len(getters) == 2:
                first, second = getters
                run = lambda ctx: first(ctx) and second(ctx)  # noqa: E731
            else:

                def run(ctx: Context) -> Any:
                    value = True
                    for get in getters:
                        value = get(ctx)
                        if not value:
                            return value
                    return value

        elif len(getters) == 2:
            first, second = getters
            run = lambda ctx: first(ctx) or second(ctx)  # noqa: E731
        else:

            def run(ctx: Context) -> Any:
                value = False
                for get in getters:
                    value = get(ctx)
                    if value:
                        return value
                return value

        return self._fold(node, run, parts)

    def _visit_UnaryOp(self, node: ast.UnaryOp) -> Code:
        operand = self._visit(node.operand)
        get = operand.run
        run: Evaluator
        if isinstance(node.op, ast.Not):
            run = lambda ctx: not get(ctx)  # noqa: E731
        elif isinstance(node.op, ast.USub):
            run = lambda ctx: -number(get(ctx), "-")  # noqa: E731
        elif isinstance(node.op, ast.UAdd):
            run = lambda ctx: +number(get(ctx), "+")  # noqa: E731
        else:
            raise self._reject(node, "operator '~' is not allowed")
        return self._fold(node, run, [operand])

    def _visit_BinOp(self, node: ast.BinOp) -> Code:
        op = type(node.op)
        if op is ast.MatMult:
            raise self._reject(
                node, "'@' is not an operator; a legacy tag is written @Keyword@ without spaces"
            )
        if op in (ast.LShift, ast.RShift):
            raise self._reject(node, "shift operators are not allowed")
        left, right = self._visit(node.left), self._visit(node.right)
        get_left, get_right = left.run, right.run
        run: Evaluator
        checked = CHECKED_OPERATORS.get(op)
        if checked is not None:
            run = lambda ctx: checked(ctx, get_left(ctx), get_right(ctx))  # noqa: E731
        else:
            plain = PLAIN_OPERATORS[op]
            run = lambda ctx: plain(get_left(ctx), get_right(ctx))  # noqa: E731
        return self._fold(node, run, [left, right])

    def _visit_Compare(self, node: ast.Compare) -> Code:
        operands = [node.left, *node.comparators]
        for position, op in enumerate(node.ops):
            if isinstance(op, ast.Is | ast.IsNot) and not any(
                isinstance(side, ast.Constant) and side.value in (None, True, False)
                for side in operands[position : position + 2]
            ):
                raise self._reject(
                    node, "'is' compares only with None, True or False: use == or != otherwise"
                )
        if len(node.ops) == 1 and _is_tags(node.comparators[0]):
            return self._tag_membership(node)
        left = self._visit(node.left)
        for comparator in node.comparators:
            if _is_tags(comparator):
                raise self._reject(comparator, "'in tags' cannot be chained with other comparisons")
        rights = self._visit_all(node.comparators)
        tests = [COMPARISONS[type(op)] for op in node.ops]
        get_left = left.run
        run: Evaluator
        if len(tests) == 1:
            (test,) = tests
            (right,) = rights
            get_right = right.run
            fast = self._fast_comparison(node, node.ops[0], right)
            if fast is not None:
                constant = right.constant
                run = lambda ctx: fast(get_left(ctx), constant)  # noqa: E731
            else:
                run = lambda ctx: test(ctx, get_left(ctx), get_right(ctx))  # noqa: E731
        else:
            steps = [(test, right.run) for test, right in zip(tests, rights, strict=True)]

            def run(ctx: Context) -> bool:
                value = get_left(ctx)
                for test, get in steps:
                    following = get(ctx)
                    if not test(ctx, value, following):
                        return False
                    value = following
                return True

        return self._fold(node, run, [left, *rights])

    def _fast_comparison(
        self, node: ast.Compare, op: ast.cmpop, right: Code
    ) -> Callable[[Any, Any], Any] | None:
        """For a comparison with a light literal on the right, the plain Python operator: it
        costs at most what the literal weighs, so there is nothing to charge."""
        if not right.is_constant:
            return None
        constant = right.constant
        if type(op) in (ast.In, ast.NotIn):
            # Not sets: hashing the left side costs what the left side weighs.
            if type(constant) not in (str, list, tuple):
                return None
            if self._weight(node, constant) > FREE_WORK:
                return None
            if isinstance(op, ast.In):
                return lambda item, container: item in container
            return lambda item, container: item not in container
        if self._weight(node, constant) > FREE_WORK:
            return None
        return _FAST_COMPARISONS[type(op)]

    def _tag_membership(self, node: ast.Compare) -> Code:
        """``'Keyword' in tags``: whether the series has the tag (never a missing tag)."""
        if not isinstance(node.ops[0], ast.In | ast.NotIn):
            raise self._reject(node, "tags can only be compared as 'Keyword' in tags")
        negate = isinstance(node.ops[0], ast.NotIn)
        if isinstance(node.left, ast.Constant) and isinstance(node.left.value, str):
            number = tag_number_key(node.left.value)
            key = _constant(number) if number else self._visit(node.left)
        else:
            key = self._visit(node.left)
        if key.is_constant and isinstance(key.constant, str):
            self._tags.setdefault(key.constant)
        get_key = key.run

        def present(ctx: Context) -> bool:
            keyword = get_key(ctx)
            if not isinstance(keyword, str):
                raise TypeError(f"'in tags' needs a keyword as text, not {type_name(keyword)}")
            ctx.charge(len(keyword))  # hashing it
            return (keyword in ctx.tags) is not negate

        return Code(present)

    def _visit_IfExp(self, node: ast.IfExp) -> Code:
        test, body, orelse = (self._visit(part) for part in (node.test, node.body, node.orelse))
        get_test, get_body, get_orelse = test.run, body.run, orelse.run
        return self._fold(
            node,
            lambda ctx: get_body(ctx) if get_test(ctx) else get_orelse(ctx),
            [test, body, orelse],
        )

    # -- literals of several values ----------------------------------------------------------

    def _visit_Tuple(self, node: ast.Tuple) -> Code:
        return self._collection(node, node.elts, tuple)

    def _visit_List(self, node: ast.List) -> Code:
        return self._collection(node, node.elts, list)

    def _visit_Set(self, node: ast.Set) -> Code:
        # A plain set, so that str() shows it as Python does: no part of the language can
        # change a value in place, so even a folded (shared) set stays as it was.
        return self._collection(node, node.elts, set)

    def _visit_Dict(self, node: ast.Dict) -> Code:
        for key in node.keys:
            if key is None:
                raise self._reject(node, "'**' unpacking is not allowed")
        keys = self._visit_all([key for key in node.keys if key is not None])
        values = self._visit_all(node.values)
        pairs = [(key.run, value.run) for key, value in zip(keys, values, strict=True)]
        count = len(pairs)

        def collect(ctx: Context) -> dict[Any, Any]:
            built = [(get_key(ctx), get_value(ctx)) for get_key, get_value in pairs]
            weight = sum(ctx.weight(key) + ctx.weight(value) for key, value in built)
            ctx.charge(SET_ITEM_COST * count + weight, 64 * count + 256)  # hashing each key
            return ctx.remember(dict(built), ITEM_COST * 2 * count + weight)

        return self._fold(node, collect, [*keys, *values])

    def _collection(
        self, node: ast.expr, elements: list[ast.expr], build: Callable[[Any], Any]
    ) -> Code:
        parts = self._visit_all(elements)
        getters = [part.run for part in parts]
        count = len(getters)

        def collect(ctx: Context) -> Any:
            values = [get(ctx) for get in getters]
            if build is set:
                weight = sum(ctx.weight(value) for value in values)
                ctx.charge(SET_ITEM_COST * count + weight, 64 * count + 256)  # hashing each
                return ctx.remember(set(values), ITEM_COST * count + weight)
            ctx.charge(ITEM_COST * count, 8 * count + 64)
            return build(values)

        return self._fold(node, collect, parts)
