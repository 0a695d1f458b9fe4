"""The Notifications page in a real Chromium: an admin creates a webhook channel with a secret
URL (a bad template first: its error shows at the field), attaches it to a rule in the rule
editor, saves; the secret URL is in no response body of the whole session. No CSP violation or
script error. The screenshots are docs/images/webgui-notifications.png and
webgui-notification-edit.png (written there with MERCURE_UPDATE_SCREENSHOTS=1)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from browser import chromium, screenshot_folder
from test_webgui_browser import sign_in, watch
from test_webgui_targets import configure
from webgui_harness import WebGui

VIEWPORT = {"width": 1360, "height": 900}
TOKEN = "B7x9-secret-webhook-token-Qz42"
HOOK = f"https://teams.example.org/webhookb2/{TOKEN}/IncomingWebhook/abc?sig={TOKEN}"
MAIL_PASSWORD = "mail-Passw0rd-not-shown"
APPRISE = "ntfy://ntfy.example.org/mercure-secret-topic"
SECRETS = (TOKEN, MAIL_PASSWORD, "mercure-secret-topic")


@pytest.mark.slow
def test_admin_creates_a_webhook_channel_and_attaches_it_to_a_rule(
    webgui: WebGui, tmp_path: Path
) -> None:
    """Create the channel (a bad template refused at its field), choose it in a rule; no
    response body of the session holds a secret."""
    images = screenshot_folder(tmp_path)
    configure(
        webgui,
        targets={"archive": {"type": "folder", "folder": str(tmp_path)}},
        notifications={
            "it-mail": {"type": "email", "host": "smtp.example.org", "port": 587,
                        "username": "mercure", "password": MAIL_PASSWORD,
                        "sender": "mercure@example.org",
                        "to": ["pacs-admins@example.org", "it-oncall@example.org"],
                        "comment": "failures of any rule"},
            "phone-push": {"type": "apprise", "urls": [APPRISE]},
        },
        rules={
            "ct-archive": {"rule": "tags.Modality == 'CT'", "targets": ["archive"],
                           "notification_channels": ["it-mail"],
                           "notification_trigger_reception": False,
                           "notification_trigger_completion": False},
            "stroke-ai": {"rule": "tags.StudyDescription.startswith('STROKE')",
                          "targets": ["archive"], "priority": "urgent"},
        },
    )  # fmt: skip
    base = webgui.start()
    problems: list[str] = []
    leaked: list[str] = []
    seen: list[str] = []

    def inspect(route: Any) -> None:
        """Every response of the session passes here: none may hold a secret."""
        response = route.fetch(max_redirects=0)
        body = response.body().decode("utf-8", "replace")
        seen.append(route.request.url)
        leaked.extend(f"{route.request.url}: {s}" for s in SECRETS if s in body)
        route.fulfill(response=response, body=response.body())

    with chromium() as browser:
        context = browser.new_context(viewport=VIEWPORT)  # type: ignore[attr-defined]
        context.route("**/*", inspect)
        page: Any = context.new_page()
        watch(page, problems)
        sign_in(page, base, "admin")
        page.click("nav >> text=Notifications")
        page.wait_for_url(base + "/notifications")
        page.click("text=Add channel")
        page.select_option("#type-choice", "webhook")
        page.fill("#f-channel_name", "teams-stroke")
        page.fill("#f-url", HOOK)
        page.fill("#f-body", '{"text": "{{ text }} ({{ patient_nam }})"}')
        page.fill("#f-comment", "stroke team channel in Teams")
        page.click("button:has-text('Save')")
        error = page.locator("[data-field=body] .field-error")
        error.wait_for(timeout=10_000)
        assert "patient_nam" in error.inner_text(), error.inner_text()
        assert "notifications" not in (yaml.safe_load(webgui.config_path.read_text()) or {}) or (
            "teams-stroke" not in yaml.safe_load(webgui.config_path.read_text())["notifications"]
        )
        page.fill("#f-url", HOOK)  # a typed secret is never sent back: type it again
        page.fill(
            "#f-body",
            '{"text": {{ text | tojson }}, "rule": {{ rule | tojson }},'
            ' "link": {{ link | tojson }}}',
        )
        page.click("button:has-text('Save')")
        page.wait_for_url(base + "/notifications/teams-stroke")
        assert "Channel teams-stroke saved." in page.inner_text(".flash")
        saved = yaml.safe_load(webgui.config_path.read_text())["notifications"]["teams-stroke"]
        assert saved["url"] == HOOK and saved["type"] == "webhook"

        page.goto(base + "/rules/stroke-ai/edit")
        page.select_option("#rule-notification-channels", ["teams-stroke"])
        page.uncheck("#rule-notification-trigger-reception")
        page.check("#rule-urgent-only-completion")
        page.click("#save-rule")
        page.wait_for_load_state()
        rule = yaml.safe_load(webgui.config_path.read_text())["rules"]["stroke-ai"]
        assert rule["notification_channels"] == ["teams-stroke"], rule
        assert rule["notification_trigger_reception"] is False
        assert rule["notification_urgent_only"] == ["completion"]

        page.goto(base + "/notifications/teams-stroke")
        assert "stroke-ai" in page.inner_text("body")
        page.locator("[data-field=body] details").evaluate("d => d.open = true")
        page.screenshot(path=str(images / "webgui-notification-edit.png"), full_page=True)
        page.goto(base + "/notifications")
        table = page.inner_text("table.channels")
        assert "POST https://teams.example.org" in table and "stroke-ai" in table
        assert "smtp.example.org:587 to pacs-admins@example.org" in table and "ntfy://" in table
        page.screenshot(path=str(images / "webgui-notifications.png"), full_page=True)
        context.close()
    refused = "Failed to load resource: the server responded with a status of 400 (Bad Request)"
    assert [p for p in problems if refused not in p] == []  # the 400: the bad template's
    assert any(u.endswith("/notifications") for u in seen)
    assert leaked == []
