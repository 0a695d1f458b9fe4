"""Behaviour of every construct of the selection-rule language."""

from __future__ import annotations

import pickle

import pytest

from mercure.core.rules import CompiledRule, RuleResult, SeriesTags, compile_rule

TAGS = SeriesTags(
    {
        "Modality": "CT",
        "StudyDescription": "CT Head w/o contrast",
        "SeriesDescription": "CINE 2ch",
        "SliceThickness": "1.25",
        "SeriesNumber": " 3 ",
        "ImageType": "ORIGINAL\\PRIMARY\\AXIAL",
        "BodyPartExamined": "",
        "InstitutionName": "Klinikum Schädel",
        "SenderAET": "CT01",
        "ReceiverAET": "MERCURE",
        "SenderAddress": "10.0.0.5",
    }
)


def evaluate(source: str, tags: dict[str, str] = TAGS) -> RuleResult:
    return compile_rule(source).evaluate(tags)


def value(source: str, tags: dict[str, str] = TAGS) -> bool:
    result = evaluate(source, tags)
    assert result.error is None, result.error
    assert result.missing_tags == (), result.missing_tags
    return result.value


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("tags.Modality == 'CT'", True),
        ("tags.Modality == 'MR'", False),
        ("tags.Modality != 'MR'", True),
        ('tags.Modality == "CT"', True),
        ("tags['SeriesDescription'] == 'CINE 2ch'", True),
        ("tags.SenderAET == 'CT01' and tags.ReceiverAET == 'MERCURE'", True),
        ("tags.SenderAddress.startswith('10.')", True),
        ("tags.BodyPartExamined != ''", False),
        ("tags.BodyPartExamined == ''", True),
        ("tags.InstitutionName.endswith('Schädel')", True),
    ],
)
def test_tags_compare_as_text(source: str, expected: bool) -> None:
    """Tags are text values read by tags.Keyword or tags['Keyword']."""
    assert value(source) is expected


def test_legacy_placeholder_reads_the_tag() -> None:
    """@Keyword@ reads the tag like tags['Keyword'], as in older mercure rules."""
    assert value("@Modality@ == 'CT'")
    assert value("'CINE' in @SeriesDescription@")
    assert value("@SeriesDescription@.lower() == 'cine 2ch'")
    assert compile_rule("@Modality@ == 'CT'").tags == ("Modality",)


def test_legacy_placeholder_inside_a_string_is_plain_text() -> None:
    """An @Keyword@ inside quotes is literal text, not a tag."""
    rule = compile_rule("'@Modality@' == '@' + 'Modality@'")
    assert rule.tags == ()
    assert rule.evaluate(TAGS).value


def test_tag_attribute_falls_back_to_any_case_but_subscript_is_exact() -> None:
    """tags.modality finds Modality (as mercure does); tags['modality'] does not."""
    result = evaluate("tags.modality == 'CT'")
    assert result.value
    assert result.used_tags == ("Modality",)
    plain = evaluate("tags.modality == 'CT'", dict(TAGS))
    assert plain.value
    assert evaluate("tags['modality'] == 'CT'").missing_tags == ("modality",)


@pytest.mark.parametrize(
    "source",
    [
        "tags.PatientAge == '040Y'",
        "tags.PatientAge != ''",
        "not tags.PatientAge",
        "tags['PatientAge'] == ''",
        "@PatientAge@ == ''",
        "tags.PatientAge == 'x' or tags.Modality == 'CT'",
        "float(tags.PatientAge) < 2",
    ],
)
def test_any_use_of_a_missing_tag_makes_the_rule_false(source: str) -> None:
    """A rule that reads an absent tag is false, with the tag recorded and no error."""
    result = evaluate(source)
    assert result == RuleResult(False, (), ("PatientAge",), None)


def test_short_circuit_skips_a_missing_tag() -> None:
    """A missing tag that is never reached does not matter."""
    assert value("tags.Modality == 'CT' or tags.PatientAge == '040Y'")
    assert not value("tags.Modality == 'MR' and tags.PatientAge == '040Y'")


def test_tag_presence_is_tested_with_in_tags() -> None:
    """'Keyword' in tags tests presence without making the rule false."""
    assert value("'Modality' in tags")
    assert not value("'PatientAge' in tags")
    assert value("'PatientAge' not in tags or tags.PatientAge == '040Y'")
    assert compile_rule("'PatientAge' in tags").tags == ("PatientAge",)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("'HEAD' in tags.StudyDescription.upper()", True),
        ("tags.StudyDescription.lower().startswith('ct head')", True),
        ("tags.StudyDescription.casefold() == 'ct head w/o contrast'", True),
        ("tags.SeriesNumber.strip() == '3'", True),
        ("tags.SeriesNumber.lstrip() == '3 '", True),
        ("tags.SeriesNumber.rstrip() == ' 3'", True),
        ("tags.ImageType.split('\\\\') == ['ORIGINAL', 'PRIMARY', 'AXIAL']", True),
        ("tags.ImageType.rsplit('\\\\', 1)[1] == 'AXIAL'", True),
        ("tags.StudyDescription.split()[0] == 'CT'", True),
        ("tags.StudyDescription.replace(' ', '') == 'CTHeadw/ocontrast'", True),
        ("tags.StudyDescription.find('Head') == 3", True),
        ("tags.StudyDescription.rfind('o') == 13", True),
        ("tags.StudyDescription.count('t') == 2", True),
        ("tags.SeriesNumber.strip().isdigit()", True),
        ("tags.Modality.isupper() and tags.Modality.isalpha()", True),
        ("tags.StudyDescription.title() == 'Ct Head W/O Contrast'", True),
        ("tags.StudyDescription.startswith(('MR', 'CT'))", True),
        ("tags.StudyDescription.partition(' ')[2] == 'Head w/o contrast'", True),
        ("tags.StudyDescription.removeprefix('CT ') == 'Head w/o contrast'", True),
        ("tags.Modality.swapcase() == 'ct'", True),
        ("tags.StudyDescription.capitalize() == 'Ct head w/o contrast'", True),
        ("'a\\nb'.splitlines() == ['a', 'b']", True),
        ("tags.Modality.isascii()", True),
    ],
)
def test_text_methods(source: str, expected: bool) -> None:
    """The whitelisted text methods behave as Python's."""
    assert value(source) is expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("float(tags.SliceThickness) < 2", True),
        ("float(tags.SliceThickness) < 2.0", True),
        ("int(tags.SeriesNumber) == 3", True),
        ("int('ff', 16) == 255", True),
        ("1 < float(tags.SliceThickness) <= 1.25 < 2", True),
        ("1 < float(tags.SliceThickness) > 2", False),
        ("len(tags.Modality) == 2", True),
        ("min(3, 1, 2) == 1 and max([3, 1, 2]) == 3 and max('abc') == 'c'", True),
        ("abs(-7) == 7", True),
        ("round(float(tags.SliceThickness), 1) == 1.2", True),
        ("round(2.6) == 3", True),
        ("bool(tags.BodyPartExamined)", False),
        ("str(int(tags.SeriesNumber)) == '3'", True),
        ("any([False, tags.Modality == 'CT'])", True),
        ("all((True, tags.Modality == 'MR'))", False),
        ("7 // 2 == 3 and 7 / 2 == 3.5 and 7 % 2 == 1 and 2 ** 10 == 1024", True),
        ("-(-3) == +3 and 1 - 4 == -3 and 3 * 4 == 12", True),
        ("tags.Modality + '/' + tags.SenderAET == 'CT/CT01'", True),
        ("tags.Modality * 2 == 'CTCT'", True),
        ("True | False", True),
        ("True & False", False),
        ("True ^ True", False),
    ],
)
def test_numbers_and_builtins(source: str, expected: bool) -> None:
    """Numeric conversion, arithmetic and the safe builtins behave as Python's."""
    assert value(source) is expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("tags.Modality in ('CT', 'MR')", True),
        ("tags.Modality in ['MR', 'PT']", False),
        ("tags.Modality in {'CT', 'MR'}", True),
        ("tags.Modality not in ('CT',)", False),
        ("'PRIMARY' in tags.ImageType", True),
        ("'SECONDARY' not in tags.ImageType", True),
        ("'CINE' in tags.SeriesDescription and not 'LGE' in tags.SeriesDescription", True),
        ("tags.Modality == 'MR' or tags.Modality == 'CT'", True),
        ("tags.Modality == 'CT' and tags.SenderAET == 'X'", False),
        ("not tags.Modality == 'MR'", True),
        ("('Tr' in tags.Modality) | (tags.Modality == 'CT')", True),
        ("'yes' if tags.Modality == 'CT' else ''", True),
        ("tags.Modality[0] == 'C' and tags.Modality[-1] == 'T'", True),
        ("tags.StudyDescription[:7] == 'CT Head' and tags.StudyDescription[::-1][0] == 't'", True),
        ("[1, 2, 3][1:] == [2, 3]", True),
        ("True", True),
        ("False", False),
        ("None", False),
        ("1 < 2", True),
    ],
)
def test_logic_membership_and_indexing(source: str, expected: bool) -> None:
    """Boolean logic, in / not in, conditional expressions, indexing and slicing."""
    assert value(source) is expected


def test_regex_helpers_match_at_start_anywhere_or_whole() -> None:
    """match() anchors at the start, search() finds anywhere, fullmatch() needs all of it."""
    assert value("match('CT', tags.StudyDescription)")
    assert not value("match('Head', tags.StudyDescription)")
    assert value("search('(?i)head', tags.StudyDescription)")
    assert not value("fullmatch('CT Head', tags.StudyDescription)")
    assert value("fullmatch('CT Head.*', tags.StudyDescription)")
    assert value("search('Schädel$', tags.InstitutionName)")


def test_regex_with_catastrophic_pattern_finishes() -> None:
    """A pattern that backtracks exponentially in Python's re runs in linear time."""
    tags = {"SeriesDescription": "a" * 20_000 + "!"}
    assert not value("search('(a+)+$', tags.SeriesDescription) and False", tags)
    assert value("search('^(a|aa)+!$', tags.SeriesDescription)", tags)


def test_run_time_failure_is_false_with_a_reason_free_of_tag_values() -> None:
    """float('...') of text that is no number makes the rule false with a reason."""
    result = evaluate("float(tags.PatientName) > 1", {"PatientName": "Doe^Jane"})
    assert result.value is False
    assert result.used_tags == ("PatientName",)
    assert result.error == "float(): the text is not a number"
    assert "Doe" not in (result.error or "")


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("int(tags.Modality) == 1", "int(): the text is not a whole number"),
        ("tags.Modality < 1", "'<' not supported"),
        ("float(tags.SliceThickness) / (len(tags.Modality) - 2)", "float division by zero"),
        ("tags.Modality[5] == 'x'", "string index out of range"),
        ("min(tags.BodyPartExamined)", "empty"),
        ("'%s' % tags.Modality", "'%' formatting of text is not allowed"),
        ("1 in tags.Modality", "'in <string>' requires string"),
        ("'CT' in len(tags.Modality)", "'in' needs text, a list or a dictionary"),
    ],
)
def test_run_time_errors_make_the_rule_false(source: str, reason: str) -> None:
    """Each kind of run-time failure gives False and says why."""
    result = evaluate(source)
    assert result.value is False
    assert result.error is not None
    assert reason in result.error


def test_value_is_always_a_bool() -> None:
    """A rule's value is True or False even when the expression yields text or numbers."""
    for source in ("tags.Modality", "tags.BodyPartExamined", "3", "0", "[]", "tags.Modality * 0"):
        result = evaluate(source)
        assert type(result.value) is bool
    assert evaluate("tags.Modality").value is True
    assert evaluate("tags.BodyPartExamined").value is False


def test_used_tags_lists_the_tags_read_once_in_order() -> None:
    """used_tags names each tag the evaluation read, once, in order of reading."""
    rule = compile_rule(
        "tags.SenderAET == 'X' or (tags.Modality == 'CT' and tags.SenderAET != tags.Modality)"
    )
    assert rule.tags == ("SenderAET", "Modality")
    assert rule.evaluate(TAGS).used_tags == ("SenderAET", "Modality")
    short = compile_rule("tags.Modality == 'MR' and tags.SenderAET == 'CT01'")
    assert short.evaluate(TAGS).used_tags == ("Modality",)
    assert short.tags == ("Modality", "SenderAET")


def test_tag_that_is_not_text_fails_the_rule() -> None:
    """Tag values must be text; anything else makes the rule false with a reason."""
    result = evaluate("tags.SeriesNumber == 3", {"SeriesNumber": 3})  # type: ignore[dict-item]
    assert result.value is False
    assert result.error == "tag SeriesNumber is not text"


def test_series_tags_is_a_read_only_mapping() -> None:
    """SeriesTags reads like a dict but cannot be changed after it was built."""
    tags = SeriesTags({"Modality": "CT"}, standard_tags=False)
    assert tags["Modality"] == "CT"
    assert dict(tags) == {"Modality": "CT"}
    with pytest.raises(TypeError):
        tags["Modality"] = "MR"
    with pytest.raises(TypeError):
        tags.update({"Modality": "MR"})
    copy = pickle.loads(pickle.dumps(tags))
    assert isinstance(copy, SeriesTags)
    assert copy == tags


def test_leading_whitespace_and_parenthesised_lines_are_accepted() -> None:
    """Whitespace before a rule is ignored; a rule may span lines inside parentheses."""
    assert value('  @StudyDescription@ == "CT Head w/o contrast" ')
    assert value("\n(tags.Modality == 'CT'\n and tags.SenderAET == 'CT01')\n")


def test_compiled_rule_keeps_source_and_name_and_pickles() -> None:
    """A compiled rule carries its text and name, compares by them and survives pickling."""
    rule = compile_rule("tags.Modality == 'CT'", name="ct")
    assert (rule.source, rule.name) == ("tags.Modality == 'CT'", "ct")
    copy = pickle.loads(pickle.dumps(rule))
    assert isinstance(copy, CompiledRule)
    assert copy == rule
    assert hash(copy) == hash(rule)
    assert copy.evaluate(TAGS).value
    assert rule != compile_rule("tags.Modality == 'CT'", name="other")


def test_literal_parts_are_computed_once_at_compile_time() -> None:
    """A rule made only of literals has its value fixed and reads no tags."""
    rule = compile_rule("(1 + 2) * 3 == 9 and 'ab' * 2 == 'abab'")
    assert rule.tags == ()
    assert rule.evaluate({}) == RuleResult(True)


def test_backslash_sequences_in_patterns_are_kept() -> None:
    """'\\d' in a pattern means a digit, as the user intends, without a warning or error."""
    assert value("match('\\d+$', tags.SeriesNumber.strip())")
    assert value("search(r'\\bHead\\b', tags.StudyDescription)")


def test_count_works_on_a_split_list_as_in_python() -> None:
    """`.count()` on a list (e.g. split multi-values) counts items, as mercure's Python did."""
    rule = compile_rule("tags.ImageType.split('\\\\').count('AXIAL') == 1")
    assert rule.evaluate({"ImageType": "ORIGINAL\\PRIMARY\\AXIAL"}).value is True
    assert rule.evaluate({"ImageType": "ORIGINAL\\PRIMARY"}).value is False


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("sum([1, 2, 3.5]) == 6.5", True),
        ("sum([1, 2], 10) == 13", True),
        ("sorted(['b', 'a', 'c']) == ['a', 'b', 'c']", True),
        ("sorted(tags.ImageType.split('\\\\'))[0] == 'AXIAL'", True),
        ("floor(float(tags.SliceThickness)) == 2", True),
        ("ceil(float(tags.SliceThickness)) == 3", True),
        ("min([3, 1, 2]) == 1 and max(3, 1, 2) == 3", True),
        ("tags.Modality is not None", True),
        ("tags.Modality is None", False),
        ("(tags.Modality == 'CT') is True", True),
        ("{'CT': 'ct_pacs', 'MR': 'mr_pacs'}[tags.Modality] == 'ct_pacs'", True),
        ("tags.Modality in {'CT': 1, 'MR': 2}", True),
        ("tags.Modality in {'MR', 'PT'}", False),
        ("len({'a': 1, 'b': 2}) == 2", True),
        ("'AXIAL' in set(tags.ImageType.split('\\\\'))", True),
        ("list(tags.Modality) == ['C', 'T'] and tuple({'a': 1}) == ('a',)", True),
        ("len(set()) == 0 and list() == []", True),
    ],
)
def test_mercure_041_builtins_and_literals(source: str, expected: bool) -> None:
    """What mercure 0.4.1 evaluates: sum, sorted, floor/ceil, min/max, is None, dict and set."""
    tags = {"Modality": "CT", "SliceThickness": "2.5", "ImageType": "ORIGINAL\\PRIMARY\\AXIAL"}
    result = evaluate(source, tags)
    assert result.error is None
    assert result.value is expected


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("sum(tags.Modality) == 1", "sum(): needs a list of numbers, not text"),
        ("sum([tags.Modality]) == 1", "sum(): cannot add text"),
        ("floor(tags.SliceThickness) == 2", "floor(): needs a number, not text"),
        ("{'MR': 1}[tags.Modality] == 1", "the key is not in the dictionary"),
        ("sorted([tags.Modality, 1]) == []", "not supported between instances"),
        ("sorted([tags.Modality * 100000] * 100000) == []", "needs too much work"),
        ("sum([10**1200 + len(tags.Modality)] * 100000) > 0", "needs too much work"),
        ("set(tags.Modality * 100000) == set()", "needs too much work"),
        ("list(len(tags.Modality)) == []", "list(): needs text, a list or a dictionary"),
        ("({'a': 1} | {tags.Modality: 2})['MR'] == 1", "the key is not in the dictionary"),
    ],
)
def test_new_builtins_fail_the_rule_with_a_reason(source: str, reason: str) -> None:
    """Wrong types, missing keys and oversized work make the rule false, never an exception."""
    result = evaluate(source, {"Modality": "CT", "SliceThickness": "2.5"})
    assert result.value is False
    assert result.error is not None and reason in result.error


@pytest.mark.parametrize("key", ["(0019,100c)", "0019,100C", "0019_100c"])
def test_private_tag_by_number_in_any_form(key: str) -> None:
    """A private tag read through router.additional_tags is found by each form of its number."""
    tags = {"(0019,100c)": "tilt 0"}
    assert evaluate(f"tags[{key!r}] == 'tilt 0'", tags).value is True
    assert evaluate(f"{key!r} in tags", tags).value is True


def test_absent_standard_tags_are_empty_text_as_in_mercure() -> None:
    """mercure writes '' for its standard tags a series lacks; other tags stay missing."""
    tags = SeriesTags({"Modality": "CT"})
    assert compile_rule("tags.BodyPartExamined == ''").evaluate(tags).value is True
    assert compile_rule("tags.bodypartexamined == ''").evaluate(tags).value is True
    missing = compile_rule("tags.ViewPosition == ''").evaluate(tags)
    assert missing.value is False and missing.missing_tags == ("ViewPosition",)
