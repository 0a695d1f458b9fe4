"""The selection-rule language: mercure-compatible expressions, compiled once, run safely.

::

    rule = compile_rule("tags.Modality == 'CT' and 'HEAD' in tags.StudyDescription.upper()",
                        name="ct_head")
    tags = SeriesTags(tags_from_file)     # once per series, shared by all rules
    result = rule.evaluate(tags)          # RuleResult(value, used_tags, missing_tags, error)

Rules are parsed with Python's own parser and then accepted only if every part is on a
whitelist; they run in an interpreter of their own (closures over the syntax tree), never
through ``eval``. docs/rules.md describes the language for administrators.

Beside the language: :mod:`.decision` (which rules fire for a series and what the router does
then), :mod:`.ruletest` (the rule test of ``mercure rule-test`` and the web interface's
tester), :mod:`.reference` (the functions, methods and tag keywords, listed from the code) and
:mod:`.required` (a study rule's required series).
"""

from mercure.core.rules.errors import RuleSyntaxError
from mercure.core.rules.rule import CompiledRule, FailedRule, RuleResult, compile_rule
from mercure.core.rules.tags import SeriesTags

__all__ = [
    "CompiledRule",
    "FailedRule",
    "RuleResult",
    "RuleSyntaxError",
    "SeriesTags",
    "compile_rule",
]
