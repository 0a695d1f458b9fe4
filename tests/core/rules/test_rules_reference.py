"""The rule language's reference, listed from the code: every helper documented, and each
listed name accepted by the compiler (and nothing the compiler accepts left out)."""

from __future__ import annotations

import pytest

from mercure.core.rules import RuleSyntaxError, compile_rule
from mercure.core.rules.functions import BUILTINS, REGEX_HELPERS
from mercure.core.rules.methods import METHODS
from mercure.core.rules.reference import helpers, search_tag_keywords, tag_keywords


def test_every_helper_has_a_one_line_doc_naming_its_call() -> None:
    """Functions, regex helpers and methods each have one line starting with the call."""
    listed = helpers()
    assert {h.kind for h in listed} == {"function", "regex", "method"}
    for helper in listed:
        assert helper.doc and "\n" not in helper.doc, helper
        call = f"{helper.name}(" if helper.kind != "method" else f".{helper.name}("
        assert helper.doc.startswith(call), helper


def test_every_listed_helper_compiles_and_an_unlisted_name_does_not() -> None:
    """What the reference lists is what a rule may call."""
    for helper in helpers():
        if helper.kind == "method":
            args = ", ".join("'x'" for _ in range(METHODS[helper.name].min_args))
            source = f"tags.Modality.{helper.name}({args})"
        elif helper.kind == "regex":
            source = f"{helper.name}('C.', tags.Modality)"
        else:
            source = f"{helper.name}(tags.Modality)"
        compile_rule(source, name="probe")
    assert {h.name for h in helpers()} == set(BUILTINS) | set(REGEX_HELPERS) | set(METHODS)
    with pytest.raises(RuleSyntaxError):
        compile_rule("tags.Modality.zfill(10)", name="probe")
    with pytest.raises(RuleSyntaxError):
        compile_rule("open(tags.Modality)", name="probe")


def test_tag_keywords_are_the_text_like_dicom_keywords_and_the_reception_facts() -> None:
    """Modality and the sender's AE title are listed; pixel data (binary) is not."""
    keywords = {tag.keyword for tag in tag_keywords()}
    assert {"Modality", "StudyDescription", "SeriesInstanceUID", "SenderAET"} <= keywords
    assert "PixelData" not in keywords
    found = search_tag_keywords("modality")
    assert found[0].keyword == "Modality"
    assert search_tag_keywords("sender")[0].keyword.startswith("Sender")
    assert search_tag_keywords("  ") == []
