"""mercure's rule expressions evaluate as in mercure 0.4.1: the table in
tests/core/data/mercure_rules_corpus.yaml (selection rules, required series, config errors)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from mercure.core.rules import RuleSyntaxError, SeriesTags, compile_rule
from mercure.core.rules.required import parse_required_series

CORPUS_FILE = Path(__file__).parents[1] / "data" / "mercure_rules_corpus.yaml"
CORPUS: dict[str, Any] = yaml.safe_load(CORPUS_FILE.read_text(encoding="utf-8"))


def _label(row: dict[str, Any]) -> str:
    return f"{row['source']}: {row['expression'].strip()} @ {row.get('tags', row.get('series'))}"


@pytest.mark.parametrize("row", CORPUS["selection"], ids=_label)
def test_selection_rule_fires_as_in_mercure(row: dict[str, Any]) -> None:
    """The rule is true exactly when mercure routes the series with it."""
    tags = SeriesTags(CORPUS["tag_sets"][row["tags"]])
    result = compile_rule(row["expression"]).evaluate(tags)
    assert result.value is row["expected"], result.error


@pytest.mark.parametrize("row", CORPUS["required_series"], ids=_label)
def test_required_series_complete_the_study_as_in_mercure(row: dict[str, Any]) -> None:
    """study_trigger_series: substrings ignoring case, and/or/parentheses, nothing on no series."""
    required = parse_required_series(row["expression"])
    assert required.satisfied_by(row["series"]) is row["expected"]


@pytest.mark.parametrize("row", CORPUS["config_errors"], ids=_label)
def test_expression_mercure_can_never_evaluate_is_refused_on_load(row: dict[str, Any]) -> None:
    """mercure logs an error each time and never fires the rule; we refuse it with a hint."""
    with pytest.raises(RuleSyntaxError) as caught:
        compile_rule(row["expression"], name="corpus")
    assert row["reason"] in caught.value.message


def test_corpus_covers_every_tag_set_and_section() -> None:
    """Each tag set is used, so a typo in a row's tag-set name cannot go unnoticed."""
    used = {row["tags"] for row in CORPUS["selection"]}
    assert used == set(CORPUS["tag_sets"])
    assert len(CORPUS["selection"]) >= 45 and CORPUS["required_series"]
