"""The rules page: the list with hits, the editor (every field, read-only below admin), live
validation, the tester, and every refusal; saves go into mercure.yaml through the editing core
(comments kept, audited, applied at once)."""

from __future__ import annotations

import html
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from test_webgui_search import series_events
from webgui_harness import WebGui, assert_inert, csrf_of

from mercure.core.config import parse_document, validate_document
from mercure.core.config.models import Rule
from mercure.core.dicomtags import tags_from_dicom
from mercure.testing.series import GeneratedSeries, generate_series

PAGE = {"accept": "text/html"}
CONFIG = """\
data_dir: {data}
webgui: {{}}
# Where series go.
targets:
  pacs: {{type: folder, folder: out/pacs}}
  archive: {{type: folder, folder: out/archive}}
modules:
  anon: {{runner: command, command: ["true"], settings: {{keep: [PatientAge]}}}}
  seg: {{runner: command, command: ["true"]}}
rules:
  # CT to the PACS, always
  ct:
    rule: "tags.Modality == 'CT'"
    targets: pacs   # one target, written as a name
  mr_seg:
    rule: "tags.Modality == 'MR'"
    action: process
    processing_module: [anon, seg]
    targets: archive
  study_mr:
    rule: "tags.BodyPartExamined == 'HEAD'"
    targets: archive
    action_trigger: study
    disabled: true
"""


def use_config(webgui: WebGui, text: str | None = None) -> str:
    """Write mercure.yaml and make it the configuration in force; its text."""
    text = text if text is not None else CONFIG.format(data=webgui.folder / "data")
    webgui.config_path.write_text(text)
    loaded = validate_document(parse_document(text, "x.yaml"), base_dir=webgui.folder)
    webgui.context.apply(loaded.config)
    return text


@pytest.fixture
def configured(webgui: WebGui) -> WebGui:
    """The web interface with the rules, targets and modules of CONFIG."""
    use_config(webgui)
    return webgui


def version_of(page: str) -> str:
    """The config_version a form carries."""
    match = re.search(r'name="config_version" value="([^"]+)"', page)
    assert match, "no config_version in the page"
    return match.group(1)


LIST_CHECKBOXES = ("targets", "notification_urgent_only", "dynamic_routing_allowed_targets")
"""The editor's repeated checkboxes: the checked ones are sent as a list."""


def editor_fields(client: httpx.Client, path: str) -> dict[str, object]:
    """What the editor at ``path`` would send unchanged (hidden fields included)."""
    page = client.get(path, headers=PAGE).text
    fields: dict[str, object] = {"config_version": version_of(page)}
    form = page.split('id="rule-form"', 1)[1].split("</form>", 1)[0]
    for tag in re.findall(r"<input[^>]*>", form):
        named = re.search(r'name="([^"]+)"', tag)
        valued = re.search(r'value="([^"]*)"', tag)
        if named is None or valued is None:
            continue
        name, value = named.group(1), html.unescape(valued.group(1))
        if name in LIST_CHECKBOXES:
            if 'type="checkbox"' in tag and "checked" in tag:
                fields.setdefault(name, [])
                fields[name].append(value)  # type: ignore[union-attr]
        elif 'type="checkbox"' not in tag:
            fields[name] = value
    for name, value in re.findall(r'<textarea name="([^"]+)"[^>]*>([^<]*)</textarea>', form):
        fields[name] = html.unescape(value)
    for name, body in re.findall(r'<select name="([^"]+)"[^>]*>(.*?)</select>', form, re.S):
        chosen = re.findall(r'<option value="([^"]*)" selected', body)
        if name in ("processing_module", "notification_channels"):
            fields.setdefault(name, [])
            fields[name] += [html.unescape(v) for v in chosen if v]  # type: ignore[operator]
        elif chosen:
            fields[name] = html.unescape(chosen[0])
    for name in LIST_CHECKBOXES:
        fields.setdefault(name, [])
    flags = [f for f in Rule.model_fields if f.startswith("notification_trigger_")]
    for flag in ("fallback", "disabled", "processing_retain_images", "dynamic_routing", *flags):
        if re.search(rf'name="{flag}"[^>]*checked', form):
            fields[flag] = "1"
        else:
            fields.pop(flag, None)
    return fields


def post(client: httpx.Client, path: str, data: dict[str, object]) -> httpx.Response:
    """A form post with the session's CSRF token, as the browser sends it."""
    return client.post(
        path, data={**data, "csrf_token": csrf_of(client)}, headers=PAGE, follow_redirects=True
    )


def saved_rules(webgui: WebGui) -> dict[str, dict[str, object]]:
    """The rules in mercure.yaml now."""
    return parse_document(webgui.config_path.read_text(), "x.yaml").get("rules") or {}


def audits(webgui: WebGui) -> list[dict[str, object]]:
    """The config.save audit events the web interface emitted (data and message)."""
    return [
        {**e.data, "message": e.message}
        for e in webgui.written_events()
        if e.kind == "audit.config.save"
    ]


def error_of(page: str, field: str) -> str:
    """The message shown beside a field."""
    match = re.search(rf'id="error-{field}"[^>]*>([^<]*)<', page)
    return html.unescape(match.group(1)) if match else ""


# --- the list ------------------------------------------------------------------------------
def test_the_list_shows_each_rule_with_what_it_does_and_its_hits(
    configured: WebGui, viewer: httpx.Client
) -> None:
    """Every rule in order with state, action, targets, module chain; hits of the last day
    from the bookkeeper; viewers get no buttons that change anything."""
    configured.store_events(
        series_events(1, name="A", accession="A1", study="1.9.1", rule="ct")
        + series_events(2, name="B", accession="A2", study="1.9.2", rule="ct")
    )
    page = viewer.get("/rules", headers=PAGE)
    assert page.status_code == 200
    names = re.findall(r'<tr class="[^"]*" data-rule="([^"]+)"', page.text)
    assert names == ["ct", "mr_seg", "study_mr"]
    row = page.text.split('data-rule="ct"', 1)[1].split("</tr>", 1)[0]
    assert "pacs" in row and "route" in row and '<td class="num">2' in row
    mr = page.text.split('data-rule="mr_seg"', 1)[1].split("</tr>", 1)[0]
    assert "anon</span> &rsaquo; <span" in mr and ">0" in mr
    assert "disabled" in page.text.split('data-rule="study_mr"', 1)[1].split("</tr>", 1)[0]
    assert "New rule" not in page.text and "Delete" not in page.text


def test_the_list_works_while_the_bookkeeper_is_down(
    configured: WebGui, admin: httpx.Client
) -> None:
    """Hits are 'unknown', the banner says why, everything else is there."""
    configured.bookkeeper_down = True
    page = admin.get("/rules", headers=PAGE)
    assert page.status_code == 200
    assert page.text.count(">unknown<") == 3
    assert "cannot be reached" in page.text
    assert "New rule" in page.text and "Duplicate" in page.text


# --- the editor -----------------------------------------------------------------------------
def test_the_editor_has_a_control_for_every_field_of_a_rule(
    configured: WebGui, admin: httpx.Client
) -> None:
    """name="<field>" for each field of the Rule model, plus the name and the version."""
    for path in ("/rules/new", "/rules/mr_seg/edit"):
        page = admin.get(path, headers=PAGE).text
        for field in [*Rule.model_fields, "name", "config_version"]:
            assert f'name="{field}"' in page, (path, field)
    page = admin.get("/rules/mr_seg/edit", headers=PAGE).text
    assert re.search(
        r'<select name="processing_module" id="module-0".*?value="anon" selected', page, re.S
    )
    assert re.search(
        r'<select name="processing_module" id="module-1".*?value="seg" selected', page, re.S
    )
    assert '"keep": ["PatientAge"]' in html.unescape(page)  # the module's own settings shown


def test_viewers_and_operators_see_the_editor_read_only_and_cannot_save(
    configured: WebGui, signed_in: Callable[[str], httpx.Client]
) -> None:
    """No save button, read-only controls; their POSTs are refused and nothing changes."""
    before = configured.config_path.read_text()
    for role in ("viewer", "operator"):
        client = signed_in(role)
        page = client.get("/rules/ct/edit", headers=PAGE)
        assert page.status_code == 200
        assert 'id="save-rule"' not in page.text and 'id="read-only"' in page.text
        assert re.search(r'<textarea name="rule" id="rule-expression"[^>]*readonly', page.text)
        fields = editor_fields(client, "/rules/ct/edit")
        for path in ("/rules/ct/edit", "/rules/new", "/rules/ct/disable", "/rules/ct/delete"):
            response = post(client, path, {**fields, "confirm": "ct"})
            assert response.status_code == 403, (role, path)
    assert configured.config_path.read_text() == before


def test_creating_a_rule_saves_it_audited_and_in_force_at_once(
    configured: WebGui, admin: httpx.Client
) -> None:
    """The new rule is in mercure.yaml after the others, comments kept; the audit names the
    admin; the web interface's configuration has it without a reload."""
    fields = editor_fields(admin, "/rules/new")
    fields.update(name="us", rule="tags.Modality == 'US'", targets=["archive"], priority="urgent")
    response = post(admin, "/rules/new", fields)
    assert response.status_code == 200, response.text
    assert "Rule us created" in response.text
    text = configured.config_path.read_text()
    assert "# CT to the PACS, always" in text and "# one target, written as a name" in text
    rules = saved_rules(configured)
    assert list(rules) == ["ct", "mr_seg", "study_mr", "us"]
    assert rules["us"] == {
        "rule": "tags.Modality == 'US'",
        "targets": ["archive"],
        "priority": "urgent",
    }
    assert configured.context.config.rules["us"].priority == "urgent"
    [entry] = audits(configured)
    assert entry["user"] == "admin" and entry["object"] == "rule us"
    assert "rule us created" in str(entry["message"])


def test_saving_an_untouched_rule_changes_nothing_in_the_file(
    configured: WebGui, admin: httpx.Client
) -> None:
    """What the editor shows and sends back is the rule as written, defaults left out."""
    before = configured.config_path.read_text()
    for name in ("ct", "mr_seg", "study_mr"):
        response = post(admin, f"/rules/{name}/edit", editor_fields(admin, f"/rules/{name}/edit"))
        assert response.status_code == 200 and f"Rule {name} saved" in response.text
    assert configured.config_path.read_text() == before


def test_editing_and_renaming_keeps_the_position_and_the_comments(
    configured: WebGui, admin: httpx.Client
) -> None:
    """A new name renames in place; one target stays written as a name; settings are JSON."""
    fields = editor_fields(admin, "/rules/ct/edit")
    fields.update(
        name="ct_pacs",
        rule="tags.Modality == 'CT' and tags.SenderAET != 'TEST'",
        series_complete_trigger="90s",
        comment="from the ED scanners",
    )
    response = post(admin, "/rules/ct/edit", fields)
    assert "Rule ct_pacs saved (renamed from ct)" in response.text
    rules = saved_rules(configured)
    assert list(rules) == ["ct_pacs", "mr_seg", "study_mr"]
    assert rules["ct_pacs"]["targets"] == "pacs"
    assert rules["ct_pacs"]["series_complete_trigger"] == "90s"
    assert "# CT to the PACS, always" in configured.config_path.read_text()
    assert configured.context.config.rules["ct_pacs"].series_complete_trigger == 90.0
    fields = editor_fields(admin, "/rules/mr_seg/edit")
    fields["processing_settings"] = '{"threshold": 0.7}'
    fields["processing_module"] = ["seg"]
    post(admin, "/rules/mr_seg/edit", fields)
    rules = saved_rules(configured)
    assert rules["mr_seg"]["processing_settings"] == {"threshold": 0.7}
    assert rules["mr_seg"]["processing_module"] == ["seg"]


def test_list_form_settings_are_saved_per_module(configured: WebGui, admin: httpx.Client) -> None:
    """mercure's list form of processing_settings (one object per module) is accepted."""
    fields = editor_fields(admin, "/rules/mr_seg/edit")
    fields["processing_settings"] = '[{"threshold": 0.7}]'
    fields["processing_module"] = ["seg"]
    post(admin, "/rules/mr_seg/edit", fields)
    assert saved_rules(configured)["mr_seg"]["processing_settings"] == [{"threshold": 0.7}]


def test_duplicate_opens_a_copy_under_a_free_name(configured: WebGui, admin: httpx.Client) -> None:
    """Duplicate is the editor of a new rule, filled from the original."""
    page = admin.get("/rules/new?copy=mr_seg", headers=PAGE).text
    assert 'value="mr_seg copy"' in page and "tags.Modality == &#39;MR&#39;" in page
    fields = editor_fields(admin, "/rules/new?copy=mr_seg")
    assert post(admin, "/rules/new", fields).status_code == 200
    rules = saved_rules(configured)
    assert Rule.model_validate(rules["mr_seg copy"]) == Rule.model_validate(rules["mr_seg"])


# --- refusals ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"targets": []}, "action", "action 'route' needs at least one target"),
        ({"action": "process"}, "action", "action 'process' needs processing_module"),
        ({"rule": "tags.Modality = 'CT'"}, "rule", "'=' does not compare"),
        ({"rule": ""}, "rule", "the rule is empty"),
        ({"processing_settings": "{threshold: 1}"}, "processing_settings", "Not valid JSON"),
        ({"processing_settings": "[1]"}, "processing_settings", "JSON object"),
        ({"name": "../etc"}, "name", "A name is 1 to 64"),
        ({"name": "mr_seg"}, "name", "There is a rule 'mr_seg' already"),
        ({"series_complete_trigger": "soon"}, "series_complete_trigger", "invalid duration"),
        (
            {
                "action_trigger": "study",
                "study_trigger_condition": "received_series",
                "study_trigger_series": "'T1' and (",
            },
            "study_trigger_series",
            "column 11",
        ),
        (
            {"action_trigger": "study", "study_trigger_condition": "received_series"},
            "study_trigger_series",
            "required when study_trigger_condition is 'received_series'",
        ),
        ({"priority": "asap"}, "priority", "Choose one of"),
    ],
)
def test_a_save_that_would_not_work_is_refused_beside_its_field(
    configured: WebGui, admin: httpx.Client, change: dict[str, object], field: str, message: str
) -> None:
    """Nothing is written; the reason is shown next to the field, the form keeps the input."""
    before = configured.config_path.read_text()
    fields = {**editor_fields(admin, "/rules/ct/edit"), **change}
    response = post(admin, "/rules/ct/edit", fields)
    assert response.status_code == 422
    assert message in error_of(response.text, field) or (
        field == "rule" and message in html.unescape(response.text)
    ), response.text[:3000]
    assert configured.config_path.read_text() == before
    assert audits(configured) == []


def test_a_bad_expression_is_shown_with_a_caret_under_its_column(
    configured: WebGui, admin: httpx.Client
) -> None:
    """The save is refused; the check under the field points at the column."""
    fields = {**editor_fields(admin, "/rules/ct/edit"), "rule": "tags.Modality = 'CT'"}
    page = post(admin, "/rules/ct/edit", fields).text
    assert 'data-valid="false" data-line="1" data-column="15"' in page
    assert "tags.Modality = &#39;CT&#39;\n" + " " * 14 + "^" in page


def test_a_rule_referencing_a_missing_target_is_refused(
    configured: WebGui, admin: httpx.Client
) -> None:
    """A target that is not configured (a crafted form) is refused by the validation."""
    fields = {**editor_fields(admin, "/rules/ct/edit"), "targets": ["pacs", "nowhere"]}
    response = post(admin, "/rules/ct/edit", fields)
    assert response.status_code == 422
    assert "unknown target 'nowhere'" in error_of(response.text, "targets")


def test_a_form_opened_before_another_save_is_refused_as_changed(
    configured: WebGui, admin: httpx.Client
) -> None:
    """Two admins: the second save from a stale form says the file changed since."""
    stale = editor_fields(admin, "/rules/ct/edit")
    fresh = {**editor_fields(admin, "/rules/ct/edit"), "comment": "first"}
    assert post(admin, "/rules/ct/edit", fresh).status_code == 200
    response = post(admin, "/rules/ct/edit", {**stale, "comment": "second"})
    assert response.status_code == 409
    assert "changed since" in response.text
    assert "second" in response.text  # the input is still in the form
    assert saved_rules(configured)["ct"]["comment"] == "first"


# --- disable, enable, delete ---------------------------------------------------------------
def test_disable_and_enable_from_the_list(configured: WebGui, admin: httpx.Client) -> None:
    """disabled: true is written, and removed again when enabled; both audited."""
    version = version_of(admin.get("/rules", headers=PAGE).text)
    response = post(admin, "/rules/ct/disable", {"config_version": version})
    assert "Rule ct disabled" in response.text
    assert saved_rules(configured)["ct"]["disabled"] is True
    assert configured.context.config.rules["ct"].disabled
    version = version_of(response.text)
    response = post(admin, "/rules/ct/enable", {"config_version": version})
    assert "Rule ct enabled" in response.text
    assert "disabled" not in saved_rules(configured)["ct"]
    assert [a["object"] for a in audits(configured)] == ["rule ct", "rule ct"]


def test_delete_asks_first_and_warns_about_studies_being_collected(
    configured: WebGui, admin: httpx.Client
) -> None:
    """The confirmation page names the studies collecting for the rule; without the
    confirmation nothing is deleted; with it the rule is gone from the file."""
    (configured.data.root / "studies" / "1.2.3.4#study_mr").mkdir(parents=True)
    page = admin.get("/rules/study_mr/delete", headers=PAGE)
    assert page.status_code == 200
    assert "1 study is being collected for this rule" in page.text
    version = version_of(page.text)
    response = post(admin, "/rules/study_mr/delete", {"config_version": version})
    assert "not deleted: confirm it" in response.text
    assert "study_mr" in saved_rules(configured)
    response = post(
        admin, "/rules/study_mr/delete", {"config_version": version, "confirm": "study_mr"}
    )
    assert "Rule study_mr deleted" in response.text
    assert list(saved_rules(configured)) == ["ct", "mr_seg"]
    assert admin.get("/rules/study_mr/edit", headers=PAGE).status_code == 404


# --- live validation and reference ---------------------------------------------------------
def test_the_check_answers_valid_or_the_error_at_its_column(
    configured: WebGui, viewer: httpx.Client
) -> None:
    """The fragment the expression field asks for as you type (any role may check)."""
    token = {"x-csrf-token": csrf_of(viewer), "hx-request": "true"}
    good = viewer.post("/rules/check", data={"rule": "tags.Modality == 'CT'"}, headers=token)
    assert good.status_code == 200 and 'data-valid="true"' in good.text
    bad = viewer.post(
        "/rules/check", data={"rule": "(tags.Modality == 'CT' and\n  tags.X ===1)"}, headers=token
    )
    assert 'data-valid="false" data-line="2" data-column="12"' in bad.text
    assert "line 2, column 12" in bad.text
    assert "  tags.X ===1)\n" + " " * 11 + "^" in html.unescape(bad.text)
    forbidden = viewer.post("/rules/check", data={"rule": "__import__('os')"}, headers=token)
    assert 'data-valid="false"' in forbidden.text


def test_the_reference_lists_tags_and_helpers_from_the_code(
    configured: WebGui, viewer: httpx.Client
) -> None:
    """Helpers with their one-line docs on the editor; keyword search as a fragment."""
    page = viewer.get("/rules/new", headers=PAGE).text
    assert "<code>fullmatch(pattern, text)</code>" in page
    assert "<code>.startswith(prefix[, start[, end]])</code>" in page
    found = viewer.get("/rules/tags?q=bodypart", headers={"hx-request": "true"}).text
    assert "tags.BodyPartExamined" in found
    assert "No tag keyword" in viewer.get("/rules/tags?q=zzzz", headers={"hx-request": "true"}).text


# --- the tester ------------------------------------------------------------------------------
def put_in_incoming(webgui: WebGui, series: GeneratedSeries, sender: str = "CT7") -> str:
    """A series waiting in incoming/ as the receiver leaves it (files and tags.json)."""
    folder = webgui.data.root / "incoming" / series.series_uid
    folder.mkdir(parents=True)
    for path in series.paths:
        shutil.copy(path, folder / path.name)
    tags = {**tags_from_dicom(series.paths[0]), "SenderAET": sender}
    (folder / "tags.json").write_text(json.dumps(tags))
    return series.series_uid


def run_tester(
    client: httpx.Client,
    fields: dict[str, object],
    *,
    source: str = "",
    upload: tuple[str, bytes] | None = None,
) -> str:
    """What the tester shows (the editor's fields, a series or an upload), as htmx asks."""
    data = {**fields, "test_series": source}
    files = {"test_file": upload} if upload else {"test_file": ("", b"")}
    response = client.post(
        "/rules/test",
        data=data,
        files=files,
        headers={"x-csrf-token": csrf_of(client), "hx-request": "true"},
    )
    assert response.status_code == 200, response.text
    return response.text


def test_the_tester_runs_the_unsaved_rule_and_all_rules_against_a_waiting_series(
    configured: WebGui, viewer: httpx.Client, tmp_path: Path
) -> None:
    """The edited expression replaces the saved one; the decision is the router's."""
    uid = put_in_incoming(configured, generate_series(tmp_path / "mr", "tiny", 2, modality="MR"))
    page = viewer.get("/rules/ct/edit", headers=PAGE).text
    assert f'value="incoming:{uid}"' in page
    fields = {**editor_fields(viewer, "/rules/ct/edit"), "original": "ct"}
    shown = run_tester(
        viewer, {**fields, "rule": "tags.SenderAET == 'CT7'"}, source=f"incoming:{uid}"
    )
    assert 'id="tester-expression" data-value="true"' in shown
    assert "<code>SenderAET</code></td><td><code>CT7</code>" in shown
    decision = shown.split('id="tester-decision"', 1)[1]
    assert "send to <strong>pacs</strong>" in decision
    assert (
        "process with <strong>anon &rsaquo; seg</strong>, then send to <strong>archive</strong>"
        in (decision)
    )
    assert "<small>(edited)</small>" in shown
    assert "ct" in saved_rules(configured) and saved_rules(configured)["ct"]["rule"] == (
        "tags.Modality == 'CT'"
    )  # nothing saved


def test_the_tester_reads_an_uploaded_file_header_and_names_a_broken_one(
    configured: WebGui, admin: httpx.Client, tmp_path: Path
) -> None:
    """An upload is read in memory; a non-DICOM file, an oversized one and no source at all
    each get a clear message."""
    series = generate_series(tmp_path / "ct", "tiny", 1, modality="CT")
    fields = editor_fields(admin, "/rules/new")
    shown = run_tester(admin, fields, upload=("scan.dcm", series.paths[0].read_bytes()))
    assert "uploaded file scan.dcm" in shown and 'data-value="true"' in shown
    assert "send to <strong>pacs</strong>" in shown
    broken = run_tester(admin, fields, upload=("notes.txt", b"this is not DICOM" * 20))
    assert 'id="tester-problem"' in broken and "notes.txt: not a readable DICOM file" in broken
    big = admin.post(
        "/rules/test",
        files={"test_file": ("big.dcm", b"\0" * (1000 << 10))},
        data=fields,
        headers={"x-csrf-token": csrf_of(admin), "hx-request": "true"},
    )
    assert "big.dcm is larger than 960 KiB" in big.text
    assert "Choose a series, or a DICOM file" in run_tester(admin, fields)
    assert not list((configured.data.root).rglob("scan.dcm"))


def test_the_tester_uses_series_the_bookkeeper_recorded(
    configured: WebGui, viewer: httpx.Client
) -> None:
    """A routed series (no longer in incoming/) is tested with the tags the bookkeeper kept;
    an incomplete rule is named, and judged without it."""
    configured.store_events(
        series_events(5, name="X", accession="A5", study="1.9.5", modality="MR")
    )
    page = viewer.get("/rules/new", headers=PAGE).text
    assert 'value="recorded:1.2.3.5"' in page
    fields = {**editor_fields(viewer, "/rules/new"), "name": "new", "rule": "tags.Modality == 'MR'"}
    shown = run_tester(viewer, fields, source="recorded:1.2.3.5")
    assert 'data-value="true"' in shown
    assert 'id="tester-incomplete"' in shown and "needs at least one target" in shown
    assert "process with <strong>anon &rsaquo; seg</strong>" in shown


def test_the_tester_never_reads_outside_incoming(configured: WebGui, viewer: httpx.Client) -> None:
    """A crafted series id with a path in it is no series."""
    fields = editor_fields(viewer, "/rules/new")
    for crafted in ("incoming:..", "incoming:../studies", "incoming:/etc", "nowhere:1.2"):
        shown = run_tester(viewer, fields, source=crafted)
        assert 'id="tester-problem"' in shown, crafted


def test_markup_in_a_rule_and_in_tags_stays_text(
    configured: WebGui, admin: httpx.Client, tmp_path: Path
) -> None:
    """A comment and an expression with markup, and tags with markup, are shown as text."""
    payload = "<script>alert(1)</script>"
    fields = editor_fields(admin, "/rules/ct/edit")
    fields.update(comment=payload, rule=f"tags.StudyDescription != '{payload}'")
    assert post(admin, "/rules/ct/edit", fields).status_code == 200
    for path in ("/rules", "/rules/ct/edit", "/rules/ct/delete"):
        page = admin.get(path, headers=PAGE).text
        assert payload not in page
        assert_inert(page)
    series = generate_series(
        tmp_path / "x", "tiny", 1, modality="CT", series_description='"><img src=x onerror=1>'
    )
    shown = run_tester(admin, fields, upload=("x.dcm", series.paths[0].read_bytes()))
    assert "<img" not in shown
    assert_inert(shown)


def test_a_broken_file_shows_the_rules_in_force_and_saves_nothing(
    configured: WebGui, admin: httpx.Client
) -> None:
    """A hand edit half done (a YAML syntax error): the pages show the configuration in force
    and say why; a save is refused with the reason, and the file is left as it is."""
    fields = editor_fields(admin, "/rules/ct/edit")
    broken = configured.config_path.read_text() + "rules: [\n"
    configured.config_path.write_text(broken)
    page = admin.get("/rules", headers=PAGE)
    assert page.status_code == 200 and 'id="config-problem"' in page.text
    assert 'data-rule="mr_seg"' in page.text
    editor = admin.get("/rules/ct/edit", headers=PAGE)
    assert editor.status_code == 200 and "tags.Modality == &#39;CT&#39;" in editor.text
    response = post(admin, "/rules/ct/edit", {**fields, "comment": "x"})
    assert response.status_code in (409, 422) and 'id="save-problem"' in response.text
    assert configured.config_path.read_text() == broken


def test_dynamic_routing_and_its_allowed_targets_are_saved(
    configured: WebGui, admin: httpx.Client
) -> None:
    """The editor's dynamic routing box writes dynamic_routing and the checked targets."""
    fields = editor_fields(admin, "/rules/new")
    fields.update(
        name="ai",
        rule="tags.Modality == 'CT'",
        targets=["archive"],
        dynamic_routing="1",
        dynamic_routing_allowed_targets=["archive"],
    )
    response = post(admin, "/rules/new", fields)
    assert response.status_code == 200, response.text
    saved = saved_rules(configured)["ai"]
    assert saved["dynamic_routing"] is True
    assert saved["dynamic_routing_allowed_targets"] == ["archive"]
    reopened = editor_fields(admin, "/rules/ai/edit")
    assert reopened["dynamic_routing"] == "1"
    assert reopened["dynamic_routing_allowed_targets"] == ["archive"]
