"""From rule text to a Python syntax tree, with positions the user can find in their text.

Two mercure habits are handled here, before parsing:

* leading whitespace is ignored (Python's ``eval``, which mercure used, strips it too);
* legacy ``@Keyword@`` placeholders. mercure replaced them textually by the tag's value; here
  both ``@`` become a marker letter so that ``@Modality@`` parses as one name of the same
  length (every column stays where the user wrote it) which the compiler reads as
  ``tags['Modality']``. Placeholders inside string literals are left alone.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
import warnings
from dataclasses import dataclass

from mercure.core.rules.errors import Rejected
from mercure.core.rules.runtime import MAX_SOURCE_CHARS

LEGACY_MARK = "\u01c2"
"""Stands for the ``@`` around a legacy tag name; a letter, so ``ǂModalityǂ`` is one name."""

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_LEGACY_PERCENT = re.compile(r"%[A-Za-z][A-Za-z0-9]*%")


@dataclass(frozen=True)
class ParsedRule:
    """A parsed rule and what is needed to turn tree positions into user columns."""

    tree: ast.Expression
    lines: list[str]

    def position(self, lineno: int, byte_offset: int) -> tuple[int, int]:
        """1-based (line, column in characters) of a byte offset on a line, as ``ast`` gives."""
        return lineno, char_column(self.lines, lineno, byte_offset)


def char_column(lines: list[str], lineno: int, byte_offset: int) -> int:
    """Turn the UTF-8 byte offset that ``ast`` reports into a 1-based character column."""
    if not 0 < lineno <= len(lines):
        return 1
    encoded = lines[lineno - 1].encode("utf-8", "surrogatepass")
    return len(encoded[: max(byte_offset, 0)].decode("utf-8", "replace")) + 1


def split_lines(text: str) -> list[str]:
    """Lines as Python's tokenizer counts them (``\\r\\n``, ``\\r`` and ``\\n`` end a line)."""
    return _LINE_BREAK.split(text)


def parse_rule(text: str) -> ParsedRule:
    """Parse rule text (already stripped of leading whitespace); raise ``Rejected`` if invalid.

    Positions in ``Rejected`` refer to ``text``.
    """
    if not text.strip():
        raise Rejected("the rule is empty", 1, 1, syntax=True)
    if len(text) > MAX_SOURCE_CHARS:
        raise Rejected(f"the rule is longer than {MAX_SOURCE_CHARS} characters", 1, 1)
    lines = split_lines(text)
    _reject_unusable_characters(text)
    marked = _mark_legacy_tags(text)
    try:
        with warnings.catch_warnings():
            # '\d' in a regex pattern is what the user means; Python only warns about it, and
            # a warnings-as-errors setting must not turn that into a syntax error.
            warnings.simplefilter("ignore")
            tree = ast.parse(marked, mode="eval")
    except SyntaxError as error:
        raise _syntax_error(error, lines) from None
    except (RecursionError, MemoryError):
        raise Rejected("the expression is nested too deeply", 1, 1) from None
    return ParsedRule(tree, lines)


def _position(text: str, index: int) -> tuple[int, int]:
    line, start = 1, 0
    for match in _LINE_BREAK.finditer(text, 0, index):
        line, start = line + 1, match.end()
    return line, index - start + 1


def _reject_unusable_characters(text: str) -> None:
    for index, char in enumerate(text):
        if char == "\x00" or "\ud800" <= char <= "\udfff":
            line, column = _position(text, index)
            raise Rejected(f"character {char!r} cannot be used in a rule", line, column)
        if char == LEGACY_MARK:
            line, column = _position(text, index)
            raise Rejected(f"character {LEGACY_MARK!r} is not allowed", line, column)


def _mark_legacy_tags(text: str) -> str:
    """Turn each ``@Keyword@`` outside string literals into ``ǂKeywordǂ``."""
    if "@" not in text:
        return text
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError):
        return text  # the parser will report the problem with a better message
    starts = [0]
    for match in _LINE_BREAK.finditer(text):
        starts.append(match.end())
    chars = list(text)
    index = 0
    while index + 2 < len(tokens):
        first, name, last = tokens[index : index + 3]
        if (
            first.type == tokenize.OP
            and first.string == "@"
            and name.type == tokenize.NAME
            and last.type == tokenize.OP
            and last.string == "@"
            and first.end == name.start
            and name.end == last.start
            and not name.string.startswith("_")
        ):
            for token in (first, last):
                row, col = token.start
                chars[starts[row - 1] + col] = LEGACY_MARK
            index += 3
        else:
            index += 1
    return "".join(chars)


def _syntax_error(error: SyntaxError, lines: list[str]) -> Rejected:
    line = error.lineno if error.lineno and 0 < error.lineno <= len(lines) else len(lines)
    text = lines[line - 1]
    column = error.offset if error.offset and error.offset > 0 else len(text) + 1
    column = min(column, len(text) + 1)
    reason = error.msg or "invalid syntax"
    at = text[column - 1 : column + 1]
    before = text[column - 2 : column - 1] if column > 1 else ""
    if at[:1] == "=" and at[1:2] != "=" and before not in ("=", "!", "<", ">"):
        reason = "'=' does not compare; write '==' to compare two values"
    elif _LEGACY_PERCENT.search(text):
        reason += " (the old %Keyword% form is not supported: write tags.Keyword)"
    elif isinstance(error, IndentationError):
        reason = "a rule on several lines must be enclosed in parentheses"
    return Rejected(reason, line, column, syntax=True)
