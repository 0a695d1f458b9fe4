"""Compiled selection rules and the results of evaluating them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mercure.core.rules.compiler import Compiler, Evaluator
from mercure.core.rules.errors import MissingTag, Rejected, RuleRuntimeError, RuleSyntaxError
from mercure.core.rules.runtime import (
    MEMORY_BUDGET,
    RUNTIME_ERRORS,
    TIME_LIMIT,
    WORK_BUDGET,
    Context,
    describe,
)
from mercure.core.rules.source import parse_rule, split_lines


@dataclass(frozen=True, slots=True)
class RuleResult:
    """The outcome of one rule for one series.

    ``value`` is True only if the rule ran to the end and its result was true. A rule that
    used a missing tag is false with ``missing_tags`` set; a rule that failed is false with
    ``error`` set (the reason, free of tag values, for an event).
    """

    value: bool
    used_tags: tuple[str, ...] = ()
    """Tags the evaluation read, in order, as keyed in the tags (``tags.modality`` reads
    ``Modality`` if only that exists)."""
    missing_tags: tuple[str, ...] = ()
    """The tag whose absence made the rule false, as the rule wrote it."""
    error: str | None = None
    """Why the rule failed while running, or None."""


class CompiledRule:
    """A selection rule compiled once (at config load) and evaluated for every series.

    Evaluating is thread-safe and never raises: a missing tag or a failure makes it false.
    """

    __slots__ = ("_known", "_run", "name", "source", "tags")

    def __init__(
        self,
        source: str,
        name: str | None,
        tags: tuple[str, ...],
        run: Evaluator,
        known: Mapping[int, tuple[Any, int]] | None = None,
    ) -> None:
        self.source = source
        """The rule text as written."""
        self.name = name
        """The rule's name in the configuration, if any (used in error messages)."""
        self.tags = tags
        """Tag keywords the rule refers to, each once, in order of appearance."""
        self._run = run
        self._known = known or None

    def evaluate(
        self, tags: Mapping[str, str], *, time_limit: float | None = TIME_LIMIT
    ) -> RuleResult:
        """Evaluate the rule against one series' tags (keyword -> text value).

        The evaluation stops, false with an error, when it needs more work or memory than its
        budgets allow or runs longer than ``time_limit`` seconds (None: no time limit).
        """
        ctx = Context(tags)
        if time_limit is not TIME_LIMIT:
            ctx.time_limit = time_limit
        if self._known is not None:
            ctx.known = self._known
        try:  # the body of _outcome, here once more to save a call on the hot path
            value = self._run(ctx)
        except MissingTag as missing:
            return RuleResult(False, _unique(ctx.used), (missing.keyword,))
        except RUNTIME_ERRORS as error:
            return RuleResult(False, _unique(ctx.used), (), describe(error))
        return RuleResult(bool(value), _unique(ctx.used) if ctx.used else ())

    def spend(
        self, tags: Mapping[str, str], *, time_limit: float | None = TIME_LIMIT
    ) -> tuple[RuleResult, int, int]:
        """``evaluate``, and the work units and bytes it charged to its budgets (for
        ``bench/bench_rules.py`` and the tests of the budgets)."""
        ctx = Context(tags)
        ctx.time_limit = time_limit
        if self._known is not None:
            ctx.known = self._known
        result = _outcome(self._run, ctx)
        return result, WORK_BUDGET - ctx.budget, MEMORY_BUDGET - ctx.memory

    def __repr__(self) -> str:
        return f"CompiledRule({self.source!r}, name={self.name!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CompiledRule):
            return NotImplemented
        return (self.source, self.name) == (other.source, other.name)

    def __hash__(self) -> int:
        return hash((self.source, self.name))

    def __reduce__(self) -> tuple[Any, ...]:
        # Closures cannot be pickled; the source is all that is needed to rebuild the rule.
        return (_recompile, (self.source, self.name))


class FailedRule(CompiledRule):
    """A rule whose expression does not compile, kept in a configuration that loads anyway
    (the rule is disabled, or a running service has no earlier version of it): it is false
    for every series, with the compile error as its reason."""

    __slots__ = ("reason",)

    def __init__(self, source: str, name: str | None, reason: str) -> None:
        def fail(ctx: Context) -> Any:
            raise RuleRuntimeError(f"the rule does not compile: {reason}")

        super().__init__(source, name, (), fail)
        self.reason = reason
        """The compile error."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (FailedRule, (self.source, self.name, self.reason))


def _outcome(run: Evaluator, ctx: Context) -> RuleResult:
    try:
        value = run(ctx)
    except MissingTag as missing:
        return RuleResult(False, _unique(ctx.used), (missing.keyword,))
    except RUNTIME_ERRORS as error:
        return RuleResult(False, _unique(ctx.used), (), describe(error))
    return RuleResult(bool(value), _unique(ctx.used) if ctx.used else ())


def _unique(names: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(names))


def _recompile(source: str, name: str | None) -> CompiledRule:
    return compile_rule(source, name=name)


def compile_rule(source: str, *, name: str | None = None) -> CompiledRule:
    """Compile a mercure selection rule; ``RuleSyntaxError`` names the rule and the column.

    Compile each rule once, when the configuration loads, and keep the ``CompiledRule``.
    """
    if not isinstance(source, str):
        raise RuleSyntaxError(
            f"the rule must be text, not {type(source).__name__}",
            source="",
            line=1,
            column=1,
            rule_name=name,
        )
    stripped = source.lstrip(" \t\f\r\n")
    skipped = source[: len(source) - len(stripped)]
    try:
        parsed = parse_rule(stripped)
        compiler = Compiler(parsed)
        code = compiler.compile()
    except Rejected as rejected:
        line, column = _unstrip(skipped, rejected.line, rejected.column)
        raise RuleSyntaxError(
            rejected.reason,
            source=source,
            line=line,
            column=column,
            rule_name=name,
            syntax=rejected.syntax,
        ) from None
    return CompiledRule(source, name, compiler.tags, code.run, compiler.known_weights)


def _unstrip(skipped: str, line: int, column: int) -> tuple[int, int]:
    """Map a position in the stripped text back to the text as written."""
    skipped_lines = split_lines(skipped)
    if line == 1:
        return len(skipped_lines), column + len(skipped_lines[-1])
    return line + len(skipped_lines) - 1, column
