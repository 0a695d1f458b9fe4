"""Every selection-rule example of mercure's documentation that uses only tags.

Sources (mercure-imaging/mercure): docs/usage/rules.rst (current manual), docs/usage.rst (the
older manual with @Keyword@ placeholders), docs/quickstart.rst (the catch-all rule ``True``),
tests/test_router.py (rules of its router tests) and the example in the comments of
common/rule_evaluation.py. "Expected" is what mercure gives: its Tags object raises for a
missing tag and its router treats that, and any error, as a rule that did not fire.
"""

from __future__ import annotations

import pytest

from mercure.core.rules import RuleSyntaxError, compile_rule

CINE_2CH = {"SeriesDescription": "CINE 2ch", "SliceThickness": "1.5"}
CINE = {"SeriesDescription": "CINE", "SliceThickness": "8"}
LOWER_CINE = {"SeriesDescription": "cine", "SliceThickness": "abc"}
NO_TAGS: dict[str, str] = {}


@pytest.mark.parametrize(
    ("example", "tags", "expected"),
    [
        # docs/usage/rules.rst
        ("'CINE' in tags.SeriesDescription", CINE_2CH, True),
        ("'CINE' in tags.SeriesDescription", CINE, True),
        ("'CINE' in tags.SeriesDescription", LOWER_CINE, False),
        ("'CINE' in tags.SeriesDescription", NO_TAGS, False),
        ("tags.SeriesDescription == 'CINE'", CINE_2CH, False),
        ("tags.SeriesDescription == 'CINE'", CINE, True),
        ("tags.SeriesDescription == 'CINE'", NO_TAGS, False),
        ("float(tags.SliceThickness) < 2.0", CINE_2CH, True),
        ("float(tags.SliceThickness) < 2.0", CINE, False),
        ("float(tags.SliceThickness) < 2.0", LOWER_CINE, False),
        ("float(tags.SliceThickness) < 2.0", NO_TAGS, False),
        # docs/usage.rst (legacy placeholders)
        ("'CINE' in @SeriesDescription@", CINE_2CH, True),
        ("'CINE' in @SeriesDescription@", LOWER_CINE, False),
        ("'CINE' in @SeriesDescription@", NO_TAGS, False),
        ("float(@SliceThickness@) < 2.0", CINE_2CH, True),
        ("float(@SliceThickness@) < 2.0", CINE, False),
        ("float(@SliceThickness@) < 2.0", NO_TAGS, False),
        # docs/quickstart.rst
        ("True", CINE_2CH, True),
        ("True", NO_TAGS, True),
        # tests/test_router.py
        ('@StudyDescription@ == "foo" ', {"StudyDescription": "foo"}, True),
        ('@StudyDescription@ == "foo" ', {"StudyDescription": "bar"}, False),
        ('@SeriesInstanceUID@ == "foo" ', {"SeriesInstanceUID": "foo"}, True),
        ('@SeriesInstanceUID@ == "foo" ', {"StudyDescription": "foo"}, False),
        # common/rule_evaluation.py
        (
            "('Tr' in @ManufacturerModelName@) | (@ManufacturerModelName@ == 'Trio')",
            {"ManufacturerModelName": "Trio"},
            True,
        ),
        (
            "('Tr' in @ManufacturerModelName@) | (@ManufacturerModelName@ == 'Trio')",
            {"ManufacturerModelName": "TrioTim"},
            True,
        ),
        (
            "('Tr' in @ManufacturerModelName@) | (@ManufacturerModelName@ == 'Trio')",
            {"ManufacturerModelName": "Skyra"},
            False,
        ),
    ],
)
def test_mercure_documentation_example_evaluates_as_mercure(
    example: str, tags: dict[str, str], expected: bool
) -> None:
    """The example fires exactly when it fires in mercure."""
    assert compile_rule(example).evaluate(tags).value is expected


@pytest.mark.parametrize(
    ("example", "hint"),
    [
        # docs/usage/rules.rst and docs/usage.rst write a lone '=' in three examples.
        ("tags.SeriesDescription.lower() = 'cine'", "write '==' to compare"),
        ("@SeriesDescription@ = 'CINE'", "write '==' to compare"),
        ("@SeriesDescription@.lower() = 'cine'", "write '==' to compare"),
        # docs/usage/rules.rst mentions an older %Keyword% form that mercure's code rejects.
        ("'CINE' in %SeriesDescription%", "write tags.Keyword"),
        # tests/test_router.py: mercure evaluates it and reports the error at run time.
        (" 1/0 ", "this always fails (division by zero)"),
    ],
)
def test_mercure_example_that_never_fires_in_mercure_is_a_config_error(
    example: str, hint: str
) -> None:
    """Examples that mercure cannot evaluate (it logs an error, the rule never fires) are
    refused when the configuration loads, with a hint how to fix them."""
    with pytest.raises(RuleSyntaxError) as caught:
        compile_rule(example, name="example")
    assert hint in caught.value.message
