"""The Notifications page: channels of each type created, edited and deleted over HTTP;
secrets write-only (never in a page, kept when left empty); templates checked on save with the
error at the field; the list shows where a channel sends without its secrets; the rule editor's
channels and triggers; roles."""

from __future__ import annotations

import http.server
import re
import threading
from collections.abc import Iterator
from typing import Any, ClassVar

import httpx
import pytest
import yaml
from test_webgui_targets import PAGE, configure, form_of, post_form
from webgui_harness import WebGui

from mercure.core.config.editing import Document, is_secret_path

TOKEN = "T0KEN-xyz-4711-webhook-path"
HOOK = f"https://chat.example.org:8443/hooks/{TOKEN}?key=q-{TOKEN}"
HEADER = "Bearer hdr-secret-0815-value"
HMAC = "hmac-secret-2718281828"
PASSWORD = "smtp-Passw0rd-3141"
APPRISE = "slack://tokA-9999/tokB-8888/tokC-7777"
SECRETS = (TOKEN, HEADER, HMAC, PASSWORD, APPRISE, "tokA-9999")


def channels(webgui: WebGui) -> dict[str, Any]:
    """The channels the file holds now."""
    found: dict[str, Any] = (
        yaml.safe_load(webgui.config_path.read_text()).get("notifications") or {}
    )
    return found


def rules(webgui: WebGui) -> dict[str, Any]:
    found: dict[str, Any] = yaml.safe_load(webgui.config_path.read_text()).get("rules") or {}
    return found


def no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


def test_channel_secrets_are_secret_paths() -> None:
    """The editing layer masks every secret of a channel (the URL, header values, the
    password, the HMAC secret, each apprise URL), and nothing else of it."""
    for path in (
        ("notifications", "chat", "url"),
        ("notifications", "chat", "headers", "Authorization"),
        ("notifications", "chat", "hmac_secret"),
        ("notifications", "mail", "password"),
        ("notifications", "push", "urls", 0),
    ):
        assert is_secret_path(path), path
    for path in (
        ("notifications", "chat", "body"),
        ("notifications", "mail", "to", 0),
        ("notifications", "mail", "host"),
        ("targets", "web", "url"),
    ):
        assert not is_secret_path(path), path
    document = Document(
        yaml.safe_dump(
            {
                "notifications": {
                    "chat": {"type": "webhook", "url": HOOK, "headers": {"A": HEADER},
                             "hmac_secret": HMAC},
                    "mail": {"type": "email", "host": "smtp", "sender": "a@b", "to": ["c@d"],
                             "password": PASSWORD},
                    "push": {"type": "apprise", "urls": [APPRISE]},
                }
            }
        ),
        "<test>",
    )  # fmt: skip
    document.mask_secrets()
    no_secret(document.dump())


@pytest.mark.parametrize(
    ("kind", "values", "holds", "shown"),
    [
        (
            "webhook",
            {"url": HOOK, "headers": f"Authorization: {HEADER}", "hmac_secret": HMAC,
             "verify_tls": "on"},
            {"type": "webhook", "url": HOOK, "headers": {"Authorization": HEADER},
             "hmac_secret": HMAC},
            "POST https://chat.example.org:8443",
        ),
        (
            "email",
            {"host": "smtp.example.org", "sender": "mercure@example.org",
             "to": "a@example.org\nb@example.org", "username": "mercure",
             "password": PASSWORD, "verify_tls": "on"},
            {"type": "email", "host": "smtp.example.org", "sender": "mercure@example.org",
             "to": ["a@example.org", "b@example.org"], "username": "mercure",
             "password": PASSWORD},
            "smtp.example.org:587 to a@example.org, b@example.org",
        ),
        (
            "apprise",
            {"urls": f"{APPRISE}\nntfy://ntfy.example.org/topic"},
            {"type": "apprise", "urls": [APPRISE, "ntfy://ntfy.example.org/topic"]},
            "slack://, ntfy://",
        ),
    ],
)  # fmt: skip
def test_each_type_is_created_edited_and_deleted(
    webgui: WebGui,
    admin: httpx.Client,
    kind: str,
    values: dict[str, str],
    holds: dict[str, Any],
    shown: str,
) -> None:
    """An admin adds a channel of each type, edits it leaving the secrets empty (kept), sees
    where it sends on the list without a secret, and deletes it."""
    created = post_form(
        admin,
        f"/notifications/new?type={kind}",
        "/notifications/new",
        {"channel_name": "ch", **values},
    )
    assert created.status_code == 303, created.text[:3000]
    assert channels(webgui) == {"ch": holds}
    page = admin.get("/notifications/ch", headers=PAGE)
    assert page.status_code == 200
    no_secret(page.text)
    kept = {k: v for k, v in values.items() if k not in ("url", "hmac_secret", "password", "urls")}
    if "headers" in kept:
        kept["headers"] = "Authorization: <secret>"
    saved = post_form(
        admin, "/notifications/ch", "/notifications/ch",
        {"channel_name": "ch", **kept, "comment": "edited"},
    )  # fmt: skip
    assert saved.status_code == 303, saved.text[:3000]
    assert channels(webgui)["ch"] == {**holds, "comment": "edited"}
    listing = admin.get("/notifications", headers=PAGE)
    assert ">ch<" in listing.text and shown in listing.text
    no_secret(listing.text)
    deleted = post_form(admin, "/notifications/ch/delete", "/notifications/ch/delete", {})
    assert deleted.status_code == 303
    assert channels(webgui) == {}
    assert all(
        secret not in e.model_dump_json() for e in webgui.written_events() for secret in SECRETS
    )


def test_a_bad_template_is_refused_at_its_field(webgui: WebGui, admin: httpx.Client) -> None:
    """check-config's template check runs on save: an unknown field is an error shown at the
    body's control, the typed template is kept, the typed secret is not sent back."""
    answer = post_form(
        admin,
        "/notifications/new?type=webhook",
        "/notifications/new",
        {
            "channel_name": "chat",
            "url": HOOK,
            "verify_tls": "on",
            "body": '{"text": "{{ no_such_field }}"}',
        },
    )
    assert answer.status_code in (400, 409, 422), answer.status_code
    no_secret(answer.text)
    field = re.search(
        r'<div class="field field-wide field-template" data-field="body">(.*?)</div>\s*</div>',
        answer.text,
        re.S,
    )
    assert field is not None, answer.text[:3000]
    assert "no_such_field" in field.group(1) and "field-error" in field.group(1)
    assert channels(webgui) == {}
    page = admin.get("/notifications/new?type=email", headers=PAGE)
    assert "patient_name" in page.text and "include_phi" in page.text  # the fields, beside


def test_rule_editor_sets_channels_and_triggers(webgui: WebGui, admin: httpx.Client) -> None:
    """The rule editor chooses channels and the triggers; the list and the channel's page
    name the rules that use it; deleting a used channel is refused; renaming follows."""
    configure(
        webgui,
        notifications={"chat": {"type": "webhook", "url": HOOK},
                       "mail": {"type": "email", "host": "smtp", "sender": "a@b.org",
                                "to": ["c@d.org"]}},
    )  # fmt: skip
    editor = admin.get("/rules/new", headers=PAGE)
    assert 'name="notification_channels"' in editor.text and ">chat<" in editor.text
    data = {
        **form_of(editor),
        "name": "notify_ct",
        "rule": "@Modality@ == 'CT'",
        "action": "notification",
        "priority": "normal",
        "notification_channels": ["chat", "mail"],
        "notification_trigger_reception": "1",
        "notification_trigger_error": "1",
        "notification_urgent_only": ["error"],
    }
    saved = admin.post("/rules/new", data=data, headers=PAGE, follow_redirects=False)
    assert saved.status_code == 303, saved.text[:3000]
    rule = rules(webgui)["notify_ct"]
    assert rule["notification_channels"] == ["chat", "mail"]
    assert rule["notification_trigger_completion"] is False
    assert rule["notification_urgent_only"] == ["error"]
    assert "notification_trigger_reception" not in rule  # the default stays unwritten
    reopened = admin.get("/rules/notify_ct/edit", headers=PAGE)
    assert re.search(r'<option value="chat" selected>', reopened.text)
    assert re.search(r'id="rule-urgent-only-error"[^>]* checked', reopened.text)
    listing = admin.get("/notifications", headers=PAGE)
    assert "<code>notify_ct</code>" in listing.text
    confirm = admin.get("/notifications/chat/delete", headers=PAGE)
    assert "notify_ct" in confirm.text
    refused = admin.post(
        "/notifications/chat/delete",
        data={**form_of(reopened), "confirm": "chat"},
        headers=PAGE,
        follow_redirects=False,
    )
    assert refused.status_code == 303 and "chat" in channels(webgui)
    renamed = post_form(
        admin,
        "/notifications/chat",
        "/notifications/chat",
        {"channel_name": "teams", "verify_tls": "on"},
    )
    assert renamed.status_code == 303, renamed.text[:3000]
    assert channels(webgui)["teams"]["url"] == HOOK
    assert rules(webgui)["notify_ct"]["notification_channels"] == ["teams", "mail"]


def test_roles(webgui: WebGui, viewer: httpx.Client, operator: httpx.Client) -> None:
    """Viewers and operators see the page and the form read-only; neither may save."""
    configure(webgui, notifications={"chat": {"type": "webhook", "url": HOOK}})
    for client in (viewer, operator):
        listing = client.get("/notifications", headers=PAGE)
        assert listing.status_code == 200 and "Add channel" not in listing.text
        page = client.get("/notifications/chat", headers=PAGE)
        assert page.status_code == 200 and ">Save<" not in page.text
        no_secret(page.text)
        form = form_of(page)
        refused = client.post(
            "/notifications/chat",
            data={**form, "channel_name": "chat", "comment": "x"},
            headers=PAGE,
            follow_redirects=False,
        )
        assert refused.status_code == 403
        assert client.get("/notifications/new", headers=PAGE).status_code == 403
    assert "comment" not in channels(webgui)["chat"]


def test_notifier_settings(webgui: WebGui, admin: httpx.Client) -> None:
    """The notifier section is a settings page."""
    saved = post_form(
        admin,
        "/settings/notifier",
        "/settings/notifier",
        {"retry_period": "12h", "max_parallel": "2", "web_url": "https://mercure.example.org"},
    )
    assert saved.status_code == 303, saved.text[:3000]
    notifier = yaml.safe_load(webgui.config_path.read_text())["notifier"]
    assert notifier == {
        "retry_period": "12h",
        "max_parallel": 2,
        "web_url": "https://mercure.example.org",
    }


# --- Test: mercure notify-test as a subprocess, to a real HTTP server on loopback ------------
class _Hook(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, str, bytes]]] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        self.received.append((self.path, self.headers.get("authorization", ""), body))
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.end_headers()
        self.wfile.write(b"1")


@pytest.fixture
def hook() -> Iterator[str]:
    """A webhook receiver on loopback; its base URL."""
    _Hook.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_operator_tests_a_saved_channel_with_its_stored_secrets(
    webgui: WebGui, operator: httpx.Client, hook: str
) -> None:
    """Test with the URL and header left empty: mercure notify-test sends the test notification
    with the stored ones; the answer shows OK and no secret; a changed destination with a
    stored secret is refused for an operator."""
    configure(
        webgui,
        notifications={
            "chat": {"type": "webhook", "url": f"{hook}/hooks/{TOKEN}",
                     "headers": {"Authorization": HEADER}}
        },
    )  # fmt: skip
    page = operator.get("/notifications/chat", headers=PAGE)
    assert 'formaction="/notifications/test"' in page.text
    form = {**form_of(page), "channel_name": "chat", "headers": "Authorization: <secret>",
            "verify_tls": "on"}  # fmt: skip
    answer = operator.post("/notifications/test", data=form, headers={**PAGE, "hx-request": "true"})
    assert answer.status_code == 200
    assert "chat: OK" in answer.text, answer.text
    no_secret(answer.text)
    assert len(_Hook.received) == 1
    path, authorization, body = _Hook.received[0]
    assert path == f"/hooks/{TOKEN}" and authorization == HEADER
    assert b"test" in body
    moved = operator.post(
        "/notifications/test",
        data={**form, "url": "http://127.0.0.1:9/elsewhere"},
        headers={**PAGE, "hx-request": "true"},
    )
    assert "Cannot test: url changed" in moved.text
    assert len(_Hook.received) == 1


def test_configuration_page_masks_channel_secrets(webgui: WebGui, admin: httpx.Client) -> None:
    """The configuration text shows every secret of every channel type as <secret>."""
    configure(
        webgui,
        notifications={
            "chat": {"type": "webhook", "url": HOOK, "headers": {"Authorization": HEADER},
                     "hmac_secret": HMAC},
            "mail": {"type": "email", "host": "smtp", "sender": "a@b.org", "to": ["c@d.org"],
                     "password": PASSWORD},
            "push": {"type": "apprise", "urls": [APPRISE]},
        },
    )  # fmt: skip
    page = admin.get("/config", headers=PAGE)
    assert page.status_code == 200
    assert "chat:" in page.text and "&lt;secret&gt;" in page.text
    no_secret(page.text)
