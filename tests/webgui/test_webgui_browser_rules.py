"""The rules page in a real Chromium: an admin types a bad expression and sees the error under
its column (nothing saved), creates a rule routing CT to a folder target through the form,
tests it against a series waiting in incoming/ before saving, and saves it. No CSP violation
or script error anywhere. Screenshots: docs/images/webgui-rules.png (the list) and
webgui-rule-editor.png (the editor with the error and the tester), written there with
MERCURE_UPDATE_SCREENSHOTS=1."""

from __future__ import annotations

from pathlib import Path

import pytest
from browser import chromium, screenshot_folder
from test_webgui_browser import sign_in, watch
from test_webgui_browser_admin import VIEWPORT
from test_webgui_rules import put_in_incoming, saved_rules, use_config
from test_webgui_search import series_events
from webgui_harness import WebGui

from mercure.testing.series import generate_series

CONFIG = """\
data_dir: {data}
webgui: {{}}
targets:
  pacs: {{type: dicom, host: 10.20.30.40, port: 104, aet_target: PACS}}
  research: {{type: folder, folder: {folder}}}
modules:
  anonymizer: {{runner: command, command: ["true"]}}
  lung-ai: {{runner: command, command: ["true"]}}
rules:
  # The night shift's rules
  mr_to_pacs:
    rule: "tags.Modality == 'MR'"
    targets: pacs
  lung_ai:
    rule: "tags.Modality == 'CT' and 'CHEST' in tags.BodyPartExamined.upper()"
    action: process
    processing_module: [anonymizer, lung-ai]
    targets: pacs
    priority: urgent
  rest:
    rule: "True"
    action: discard
    fallback: true
"""


@pytest.mark.slow
def test_admin_writes_tests_and_saves_a_rule(webgui: WebGui, tmp_path: Path) -> None:
    """Bad expression: error at its column, not saved; then a working rule, tested against a
    waiting CT series, saved, and in the list."""
    use_config(webgui, CONFIG.format(data=webgui.folder / "data", folder=tmp_path / "research"))
    webgui.store_events(
        [
            event
            for n in range(3)
            for event in series_events(
                n,
                name="DOE^JANE",
                accession=f"A{n}",
                study=f"1.9.{n}",
                modality="MR",
                rule="mr_to_pacs",
            )
        ]
    )
    series = generate_series(
        tmp_path / "ct",
        "tiny",
        2,
        modality="CT",
        series_description="CHEST 1.0 B31f",
        tags={"BodyPartExamined": "CHEST"},
    )
    uid = put_in_incoming(webgui, series, sender="CT_ER1")
    base = webgui.start()
    images = screenshot_folder(tmp_path)
    problems: list[str] = []
    with chromium() as browser:
        page = browser.new_page(viewport=VIEWPORT)  # type: ignore[attr-defined]
        watch(page, problems)
        sign_in(page, base, "admin")
        page.click("header nav >> text=Rules")
        page.wait_for_url(base + "/rules")
        page.click("#new-rule")
        page.wait_for_url(base + "/rules/new")

        page.fill("#rule-name", "ct_research")
        page.fill("#rule-expression", "")
        page.type("#rule-expression", "tags.Modality = 'CT'", delay=20)
        error = page.wait_for_selector("#rule-check-result[data-valid=false]")
        assert error.get_attribute("data-column") == "15"
        assert "'=' does not compare" in error.inner_text()
        caret = page.inner_text("#rule-check pre.caret")
        assert caret.splitlines()[1] == " " * 14 + "^"
        page.check("input[name=targets][value=research]")
        with page.expect_navigation():
            page.click("#save-rule")
        assert page.get_attribute("#rule-expression", "aria-invalid") == "true"
        assert page.get_attribute("#rule-check-result", "data-column") == "15"
        assert "ct_research" not in saved_rules(webgui)
        page.select_option("#test-series", f"incoming:{uid}")
        page.click("#run-test")
        page.wait_for_selector("#tester-expression")
        page.screenshot(path=str(images / "webgui-rule-editor.png"), full_page=True)

        page.fill("#rule-expression", "tags.Modality == 'CT'")
        page.press("#rule-expression", "End")  # the check follows keystrokes
        page.wait_for_selector("#rule-check-result[data-valid=true]")
        page.click("#run-test")
        page.wait_for_selector("#tester-expression[data-value=true]")
        decision = page.inner_text("#tester-decision")
        assert "send to research" in decision
        assert "process with anonymizer \u203a lung-ai, then send to pacs" in decision
        assert "ct_research" not in saved_rules(webgui)  # testing saves nothing

        # An uploaded file instead of a series: sent by htmx with the editor's fields; one
        # too big for the tester is stopped in the browser with the reason.
        page.select_option("#test-series", "")
        page.set_input_files("#test-file", str(series.paths[0]))
        page.click("#run-test")
        page.wait_for_selector("#tester-source:has-text('uploaded file IM00001.dcm')")
        assert page.get_attribute("#tester-expression", "data-value") == "true"
        big = {"name": "big.dcm", "mimeType": "application/dicom", "buffer": b"\0" * (2 << 20)}
        page.set_input_files("#test-file", big)
        page.click("#run-test")
        page.wait_for_selector("#tester-problem:has-text('big.dcm is 2048 KiB')")

        page.click("#save-rule")
        page.wait_for_url(base + "/rules")
        assert "Rule ct_research created" in page.inner_text(".flash")
        assert saved_rules(webgui)["ct_research"] == {
            "rule": "tags.Modality == 'CT'",
            "targets": ["research"],
        }
        assert "ct_research" in webgui.context.config.rules
        row = page.inner_text("tr[data-rule=ct_research]")
        assert "research" in row and "route" in row
        assert page.inner_text("tr[data-rule=mr_to_pacs] td.num").strip() == "3"
        page.screenshot(path=str(images / "webgui-rules.png"), full_page=True)
    # The refused save answers 422 (the form again, with the error), which Chromium logs.
    refused = "Failed to load resource: the server responded with a status of 422"
    assert [p for p in problems if refused not in p] == []
    assert len(problems) == 1
    for name in ("webgui-rules.png", "webgui-rule-editor.png"):
        assert (images / name).stat().st_size < 500_000  # the editor with its function table
