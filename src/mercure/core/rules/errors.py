"""Errors of the rule language.

``RuleSyntaxError`` is public: a rule that cannot be compiled (bad syntax, a forbidden
construct, a limit exceeded) is a configuration error found when the config loads.

``MissingTag`` and ``RuleRuntimeError`` (and its ``BudgetExceeded``) never leave the package:
``CompiledRule.evaluate`` turns them into a false ``RuleResult`` (a missing tag, or an error
reason for an event).
"""

from __future__ import annotations

import re

from mercure.core.errors import PermanentError

_LINES = re.compile(r"\r\n|\r|\n")


class RuleSyntaxError(PermanentError):
    """A selection rule cannot be compiled.

    ``message`` (also ``str(error)``) says what and where (``syntax error at column 12:
    invalid syntax``), ready to be printed after the key path of the rule
    (``rules.ct_head.rule: <message>``); ``rule_name`` names the rule, if it has a name.
    ``column`` and ``line`` are 1-based positions in the rule text as the user wrote it.
    """

    def __init__(
        self,
        reason: str,
        *,
        source: str,
        line: int,
        column: int,
        rule_name: str | None = None,
        syntax: bool = False,
    ) -> None:
        self.reason = reason
        self.source = source
        self.line = line
        self.column = column
        self.rule_name = rule_name
        several_lines = len(_LINES.split(source.strip())) > 1
        where = f"line {line}, column {column}" if several_lines else f"column {column}"
        if syntax:
            self.message = f"syntax error at {where}: {reason}"
        else:
            self.message = f"{reason} at {where}"
        super().__init__(self.message)

    def pointer(self) -> str:
        """The offending source line and a caret under the column, for terminal output."""
        lines = _LINES.split(self.source)
        text = lines[self.line - 1] if 0 < self.line <= len(lines) else ""
        return f"{text}\n{' ' * max(self.column - 1, 0)}^"


class Rejected(Exception):
    """Raised inside the compiler with a position in the parsed text; ``compile_rule`` maps it
    back to the text the user wrote and raises ``RuleSyntaxError``."""

    def __init__(self, reason: str, line: int, column: int, *, syntax: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.line = line
        self.column = column
        self.syntax = syntax


class MissingTag(Exception):
    """A tag the rule used is absent from the series' tags: the rule is false."""

    def __init__(self, keyword: str) -> None:
        super().__init__(keyword)
        self.keyword = keyword


class RuleRuntimeError(Exception):
    """The rule failed while it ran (bad conversion, a limit exceeded): the rule is false.

    Messages never contain tag values, since those may identify a patient.
    """


class BudgetExceeded(RuleRuntimeError):
    """The rule needs more work, memory or time than one evaluation may take: the rule is
    false, and the reason names the budget."""
