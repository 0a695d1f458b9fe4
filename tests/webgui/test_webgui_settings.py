"""The settings pages: every section shown to every role, saved by admins only, through the
configuration editing core (validated, version-checked, comments kept, audited)."""

from __future__ import annotations

import html
import re
from typing import Any

import httpx
import pytest
import yaml
from formhtml import as_multidict, form_pairs
from webgui_harness import XSS_PAYLOADS, WebGui, assert_inert, csrf_of

from mercure.webgui.pages.settings import SECTIONS

PAGE = {"accept": "text/html"}


def section_url(key: str) -> str:
    """The page of a settings section."""
    return "/settings" if key == "general" else f"/settings/{key}"


def submit(
    client: httpx.Client, key: str, changes: dict[str, str | list[str]], **params: str
) -> httpx.Response:
    """Open a section's form, change some controls as a user would, and post it."""
    page = client.get(section_url(key), headers=PAGE, params=params)
    assert page.status_code == 200, page.text
    pairs = form_pairs(page.text, having="config_version")
    return post_pairs(client, key, pairs, changes)


def post_pairs(
    client: httpx.Client,
    key: str,
    pairs: list[tuple[str, str]],
    changes: dict[str, str | list[str]],
) -> httpx.Response:
    """Post a form's pairs with ``changes`` (a list replaces every value of that name)."""
    kept = [(n, v) for n, v in pairs if n not in changes]
    for name, value in changes.items():
        kept.extend((name, v) for v in ([value] if isinstance(value, str) else value))
    return client.post(
        section_url(key), data=as_multidict(kept), headers=PAGE, follow_redirects=False
    )


def stored(webgui: WebGui) -> dict[str, Any]:
    """The configuration file as the services read it."""
    document = yaml.safe_load(webgui.config_path.read_text())
    assert isinstance(document, dict)
    return document


def field_errors(page: str, name: str) -> list[str]:
    """The error messages shown at the control ``name``."""
    match = re.search(
        rf'data-field="{re.escape(name)}"[^>]*>(.*?)(?:<div class="field|</fieldset>)', page, re.S
    )
    assert match, f"no control {name} on the page"
    return [
        html.unescape(e) for e in re.findall(r'class="field-error"[^>]*>(.*?)<', match.group(1))
    ]


SAVES = [
    ("general", {"appliance_name": "radiology-1"}, ("appliance_name",), "radiology-1"),
    (
        "receiver",
        {"listeners[0].allowed_calling_aets": "CT1\nCT2\n"},
        ("receiver", "listeners", 0, "allowed_calling_aets"),
        ["CT1", "CT2"],
    ),
    ("router", {"series_complete_trigger": "15m"}, ("router", "series_complete_trigger"), "15m"),
    ("processing", {"max_parallel": "3"}, ("processing", "max_parallel"), 3),
    ("dispatch", {"retry_attempts": "7"}, ("dispatch", "retry_attempts"), 7),
    ("retrieve", {"studies_in_parallel": "3"}, ("retrieve", "studies_in_parallel"), 3),
    ("scale_out", {"reconcile_interval": "2m"}, ("scale_out", "reconcile_interval"), "2m"),
    ("offpeak", {"start": "21:00"}, ("offpeak", "start"), "21:00"),
    ("cleaner", {"success_retention": "2d"}, ("cleaner", "success_retention"), "2d"),
    ("bookkeeper", {"retention": "30d"}, ("bookkeeper", "retention"), "30d"),
    ("webgui", {"session_idle_timeout": "20m"}, ("webgui", "session_idle_timeout"), "20m"),
    ("notifier", {"retry_base_delay": "30s"}, ("notifier", "retry_base_delay"), "30s"),
    ("events", {"outbox_max_mb": "128"}, ("events", "outbox_max_mb"), 128),
    ("logging", {"level": "DEBUG"}, ("logging", "level"), "DEBUG"),
    ("supervisor", {"stop_timeout": "20"}, ("supervisor", "stop_timeout"), 20),
]


def test_every_section_has_a_save_case() -> None:
    """The table below covers every section of the settings pages."""
    assert {key for key, *_ in SAVES} == {section.key for section in SECTIONS}


@pytest.mark.parametrize(("key", "changes", "path", "expected"), SAVES, ids=[s[0] for s in SAVES])
def test_admin_saves_a_section_and_the_file_changes(
    webgui: WebGui,
    admin: httpx.Client,
    key: str,
    changes: dict[str, str],
    path: tuple[str | int, ...],
    expected: object,
) -> None:
    """The change is in the file, nothing else is written, the page says what changed."""
    before = stored(webgui)
    response = submit(admin, key, changes)
    assert response.status_code == 303, response.text
    after = stored(webgui)
    value: Any = after
    for part in path:
        value = value[part]
    assert value == expected
    # nothing but the change: no defaults written into the file
    section = path[0]
    others = {k: v for k, v in after.items() if k != section}
    assert others == {k: v for k, v in before.items() if k != section}
    if key not in ("general", "receiver"):
        assert after[section] == {path[1]: expected}
    page = admin.get(response.headers["location"], headers=PAGE)
    assert "saved:" in page.text
    audits = [e for e in webgui.written_events() if e.kind == "audit.config.save"]
    assert audits and audits[-1].data["user"] == "admin"
    assert audits[-1].data["object"] == f"settings.{key}"


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_viewer_and_operator_see_settings_read_only_and_cannot_save(
    webgui: WebGui, signed_in: Any, role: str
) -> None:
    """Every section is shown, with no save button and disabled controls; a post is 403."""
    client = signed_in(role)
    for section in SECTIONS:
        page = client.get(section_url(section.key), headers=PAGE)
        assert page.status_code == 200, section.key
        assert "only admins can change them" in page.text
        assert "Save " not in page.text
        pairs = form_pairs(page.text, action=section_url(section.key))
        assert {name for name, _ in pairs} == {"csrf_token", "config_version"}
    before = webgui.config_path.read_text()
    token = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
    assert token
    response = client.post(
        "/settings/router",
        data={"csrf_token": token.group(1), "series_complete_trigger": "1s", "config_version": ""},
        headers=PAGE,
    )
    assert response.status_code == 403
    assert webgui.config_path.read_text() == before


def test_invalid_value_is_shown_at_its_field_with_the_input_kept(
    webgui: WebGui, admin: httpx.Client
) -> None:
    """The validation's issue appears beside the control; nothing is saved."""
    before = webgui.config_path.read_text()
    response = submit(
        admin,
        "receiver",
        {
            "listeners[0].port": "70000",
            "listeners[0].allowed_calling_aets": "CT1\nWAY_TOO_LONG_AE_TITLE",
        },
    )
    assert response.status_code == 400
    assert webgui.config_path.read_text() == before
    assert any("65535" in e for e in field_errors(response.text, "listeners[0].port"))
    aets = field_errors(response.text, "listeners[0].allowed_calling_aets")
    assert aets and aets[0].startswith("[1]:")
    assert 'value="70000"' in response.text and "WAY_TOO_LONG_AE_TITLE" in response.text


def test_unreadable_dict_text_names_the_field(webgui: WebGui, admin: httpx.Client) -> None:
    """Text that is no `key: value` list is refused at its field, and shown again."""
    response = submit(admin, "router", {"series_complete_trigger_by_calling_aet": "MR 5m"})
    assert response.status_code == 400
    errors = field_errors(response.text, "series_complete_trigger_by_calling_aet")
    assert errors and "key: value" in errors[0]
    assert "MR 5m" in response.text


def test_save_refused_when_the_file_changed_since_it_was_opened(
    webgui: WebGui, admin: httpx.Client, signed_in: Any
) -> None:
    """Two admins open the router section; the second save is refused, its input kept."""
    other = signed_in("admin")
    mine = form_pairs(admin.get("/settings/router", headers=PAGE).text, having="config_version")
    theirs = form_pairs(other.get("/settings/router", headers=PAGE).text, having="config_version")
    assert post_pairs(other, "router", theirs, {"rescan_interval": "2m"}).status_code == 303
    response = post_pairs(admin, "router", mine, {"series_complete_trigger": "7m"})
    assert response.status_code == 409
    assert "changed since you opened it" in response.text
    assert 'value="7m"' in response.text
    assert stored(webgui)["router"] == {"rescan_interval": "2m"}
    # the page still carries the version it was opened with: saving it again is refused too
    again = form_pairs(response.text, having="config_version")
    assert post_pairs(admin, "router", again, {}).status_code == 409
    assert stored(webgui)["router"] == {"rescan_interval": "2m"}
    # opened again, it shows the other change and takes this one
    assert submit(admin, "router", {"series_complete_trigger": "7m"}).status_code == 303
    assert stored(webgui)["router"] == {"rescan_interval": "2m", "series_complete_trigger": "7m"}


def test_comments_and_order_of_a_hand_written_file_survive(
    webgui: WebGui, admin: httpx.Client
) -> None:
    """A settings save changes its lines and nothing else."""
    text = (
        "# Radiology router, managed by the PACS team\n"
        f"data_dir: {webgui.config.data_dir}  # on the SAN\n"
        "router:\n"
        "  # CT from the old scanner is slow\n"
        "  series_complete_trigger: 90   # seconds\n"
        "receiver:\n"
        "  listeners:\n"
        "    - name: main   # the port the modalities know\n"
        "      port: 11112\n"
    )
    webgui.config_path.write_text(text)
    response = submit(admin, "router", {"study_complete_trigger": "20m"})
    assert response.status_code == 303, response.text
    assert webgui.config_path.read_text() == text.replace(
        "  series_complete_trigger: 90   # seconds\n",
        "  series_complete_trigger: 90   # seconds\n  study_complete_trigger: 20m\n",
    )


def test_secrets_are_write_only(webgui: WebGui, admin: httpx.Client) -> None:
    """A stored key is never on the page and stays when the field is left empty."""
    webgui.config_path.write_text(
        webgui.config_path.read_text()
        + "bookkeeper:\n  api_key: super-secret-key-123\n"
        + "  database_url: postgresql+psycopg://m:pg-pass-456@db/mercure\n"
    )
    page = admin.get("/settings/bookkeeper", headers=PAGE)
    assert "super-secret-key-123" not in page.text and "pg-pass-456" not in page.text
    assert submit(admin, "bookkeeper", {"port": "8081"}).status_code == 303
    assert stored(webgui)["bookkeeper"]["api_key"] == "super-secret-key-123"
    refused = submit(admin, "bookkeeper", {"api_key": "${NOT_SET_ANYWHERE}"})
    assert refused.status_code == 400
    assert field_errors(refused.text, "api_key") == [
        "environment variable NOT_SET_ANYWHERE is not set"
    ]
    assert "super-secret-key-123" not in refused.text
    assert submit(admin, "bookkeeper", {"api_key:clear": "on"}).status_code == 303
    assert "api_key" not in stored(webgui)["bookkeeper"]
    page = admin.get("/settings/bookkeeper", headers=PAGE)
    assert "super-secret-key-123" not in page.text
    events = " ".join(str(e.data) + e.message for e in webgui.written_events())
    assert "super-secret-key-123" not in events and "pg-pass-456" not in events


def test_the_broker_password_is_not_on_the_scale_out_page(
    webgui: WebGui, admin: httpx.Client
) -> None:
    """The broker URL's password, like the database URL's, never reaches the page."""
    webgui.config_path.write_text(
        webgui.config_path.read_text()
        + "scale_out:\n  engine: celery\n  broker: amqp://mq:broker-pass-789@mq.example:5672//\n"
    )
    page = admin.get("/settings/scale_out", headers=PAGE)
    assert page.status_code == 200
    assert "broker-pass-789" not in page.text
    assert 'name="engine"' in page.text and 'name="broker"' in page.text
    raw = admin.get("/config", headers=PAGE)
    assert raw.status_code == 200 and "broker-pass-789" not in raw.text


def test_a_listener_is_added_and_removed(webgui: WebGui, admin: httpx.Client) -> None:
    """ "Add an item" shows an empty listener without saving; filled in, it is saved."""
    page = admin.get("/settings/receiver", headers=PAGE)
    pairs = form_pairs(page.text, having="config_version")
    added = post_pairs(admin, "receiver", pairs, {":add": "listeners", "fsync": ["off"]})
    assert added.status_code == 200
    assert 'name="listeners[1].port"' in added.text
    assert "receiver" not in stored(webgui)
    pairs = form_pairs(added.text, having="config_version")
    saved = post_pairs(
        admin,
        "receiver",
        pairs,
        {"listeners[1].name": "mr", "listeners[1].port": "11113", "listeners[1].aet": "MR_IN"},
    )
    assert saved.status_code == 303, saved.text
    receiver = stored(webgui)["receiver"]
    assert receiver["fsync"] is False
    # the first listener keeps every default: written as an empty item
    assert receiver["listeners"] == [{}, {"name": "mr", "port": 11113, "aet": "MR_IN"}]
    removed = submit(admin, "receiver", {"listeners[0]:remove": "on"})
    assert removed.status_code == 303, removed.text
    assert stored(webgui)["receiver"]["listeners"] == [
        {"name": "mr", "port": 11113, "aet": "MR_IN"}
    ]


def test_pages_say_which_settings_need_a_restart(admin: httpx.Client) -> None:
    """data_dir, a listener's port, logging: the note is at the field."""
    assert (
        "Takes effect only when the services restart" in admin.get("/settings", headers=PAGE).text
    )
    receiver = admin.get("/settings/receiver", headers=PAGE).text
    assert "restarts this listener on the new port" in receiver
    logging = admin.get("/settings/logging", headers=PAGE).text
    assert logging.count('class="field-note"') == 5


def test_unknown_section_is_not_found(admin: httpx.Client) -> None:
    """A section that does not exist is a 404 page."""
    assert admin.get("/settings/nothing", headers=PAGE).status_code == 404


def test_markup_in_the_file_stays_text(webgui: WebGui, admin: httpx.Client) -> None:
    """Values from a hand-edited file (valid or not) are shown as text on every section."""
    payload = XSS_PAYLOADS[1]
    webgui.config_path.write_text(
        yaml.safe_dump(
            {
                "appliance_name": payload,
                "receiver": {"listeners": [{"name": payload, "allowed_calling_aets": [payload]}]},
                "router": {"series_complete_trigger_by_calling_aet": {payload: 5}},
                "logging": {"level": payload},
            }
        )
    )
    for section in SECTIONS:
        page = admin.get(section_url(section.key), headers=PAGE)
        assert page.status_code == 200, section.key
        assert_inert(page.text)
        assert payload not in page.text


def test_unreadable_file_is_shown_read_only_with_the_reason(
    webgui: WebGui, admin: httpx.Client
) -> None:
    """A file that is no YAML is not overwritten from a form: the page says why."""
    webgui.config_path.write_text("router: [unclosed\n")
    page = admin.get("/settings/router", headers=PAGE)
    assert page.status_code == 200
    assert "cannot be read" in page.text and "syntax error" in page.text
    assert "Save Router" not in page.text
    response = admin.post(
        "/settings/router",
        data={"csrf_token": csrf_of(admin), "config_version": "", "rescan_interval": "5"},
        headers=PAGE,
    )
    assert response.status_code == 409
    assert webgui.config_path.read_text() == "router: [unclosed\n"


def test_switched_on_section_without_its_required_fields_is_refused_at_them(
    webgui: WebGui, admin: httpx.Client
) -> None:
    """TLS switched on without certificate and key: both fields say they are required."""
    response = submit(admin, "receiver", {"listeners[0].tls:enabled": ["off", "on"]})
    assert response.status_code == 400
    for name in ("listeners[0].tls.certificate", "listeners[0].tls.key"):
        assert field_errors(response.text, name) == ["required key is missing"], name
    assert "receiver" not in stored(webgui)


INVALID = [
    ("receiver", "max_pdu", "100"),
    ("router", "series_complete_trigger", "soon"),
    ("processing", "max_parallel", "0"),
    ("dispatch", "retry_jitter", "2"),
    ("retrieve", "max_attempts", "0"),
    ("scale_out", "broker", "http://not-a-broker"),
    ("offpeak", "start", "99:99"),
    ("cleaner", "disk_threshold_percent", "150"),
    ("bookkeeper", "port", "0"),
    ("webgui", "root_path", "mercure/"),
    ("notifier", "max_parallel", "65"),
    ("events", "outbox_max_mb", "0"),
    ("logging", "level", "LOUD"),
    ("supervisor", "services", "no-such-service"),
]
"""One invalid value per section (the general page's two fields take any text)."""


def test_invalid_value_in_each_section_is_refused_at_its_field(
    webgui: WebGui, admin: httpx.Client
) -> None:
    """Nothing is saved; the issue is at the field, the typed value on the page."""
    assert {key for key, *_ in INVALID} == {s.key for s in SECTIONS} - {"general"}
    before = webgui.config_path.read_text()
    for key, name, value in INVALID:
        response = submit(admin, key, {name: value})
        assert response.status_code == 400, (key, response.text)
        assert webgui.config_path.read_text() == before, key
        assert field_errors(response.text, name), key
        assert value in response.text, key
