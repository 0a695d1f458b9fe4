"""The raw configuration page and its history: masked YAML, check, save, diff, restore.

Every response of every test here is collected, and none may hold a secret of the file
(:data:`SECRETS`): the page masks them, the diff compares masked texts, a refused save sends
the typed text back masked.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from webgui_harness import WebGui, csrf_of

from mercure.core.config.editing import MASK, ConfigFile, Document
from mercure.core.config.history import CHANGES_FILE, history_dir, list_changes, list_versions
from mercure.core.config.source import ConfigSource
from mercure.webgui.pages.config import MAX_TEXT, RETYPE

PASSWORD = "hunter2-stored-secret"
NEW_PASSWORD = "brand-new-typed-secret"
SECRETS = (PASSWORD, NEW_PASSWORD)
PAGE = {"accept": "text/html"}

HAND_EDITED = """\
# Our router. Ask Jane before changing the rules.
data_dir: {data_dir}   # the big disk

router:
    series_complete_trigger: 90s   # CT01 is slow

# Targets
targets:
    pacs:
        type: dicom
        host: pacs.example.org
        aet_target: PACS
    archive:   # research copy
        type: sftp
        host: sftp.example.org
        user: mercure
        password: {password}
# Rules below
rules:
    ct:
        rule: "tags.Modality == 'CT'"
        targets:
            - pacs
"""


@pytest.fixture
def bodies() -> list[str]:
    """Every response body the test's browsers received."""
    return []


@pytest.fixture
def config(webgui: WebGui, bodies: list[str]) -> Iterator[Path]:
    """The web interface's mercure.yaml, hand-edited, with a stored secret; after the test,
    no response held a secret."""
    text = HAND_EDITED.format(data_dir=webgui.config.data_dir, password=PASSWORD)
    webgui.config_path.write_text(text)
    yield webgui.config_path
    for body in bodies:
        for secret in SECRETS:
            assert secret not in body
    for event in webgui.written_events():
        for secret in SECRETS:
            assert secret not in json.dumps(event.data, default=str)
    changes = history_dir(webgui.config_path) / CHANGES_FILE
    if changes.exists():
        for secret in SECRETS:
            assert secret not in changes.read_text()


@pytest.fixture
def browser(
    signed_in: Callable[[str], httpx.Client], bodies: list[str]
) -> Callable[[str], httpx.Client]:
    """Factory: a signed-in browser whose every response body goes into ``bodies``."""

    def make(user: str) -> httpx.Client:
        client = signed_in(user)

        def keep(response: httpx.Response) -> None:
            response.read()
            bodies.append(response.text)

        client.event_hooks["response"].append(keep)
        return client

    return make


def opened(client: httpx.Client) -> tuple[str, str]:
    """The text and version the raw configuration page shows."""
    page = client.get("/config", headers=PAGE)
    assert page.status_code == 200, page.text
    return textarea(page.text), field(page.text, "config_version")


def textarea(page: str) -> str:
    match = re.search(r"<textarea[^>]*>\n(.*?)</textarea>", page, re.S)
    assert match, page
    return html.unescape(match.group(1))


def field(page: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert match, page
    return html.unescape(match.group(1))


def save(client: httpx.Client, text: str, version: str) -> httpx.Response:
    return client.post(
        "/config",
        data={"text": text, "config_version": version, "csrf_token": csrf_of(client)},
        headers=PAGE,
        follow_redirects=False,
    )


def audits(webgui: WebGui, action: str) -> list[dict[str, object]]:
    return [e.data for e in webgui.written_events() if e.kind == f"audit.{action}"]


def test_viewer_and_operator_see_masked_yaml_without_a_form(
    config: Path, browser: Callable[[str], httpx.Client]
) -> None:
    """Read-only for viewer and operator: masked text, comments, no save or check button; a
    POST anyway is refused."""
    for role in ("viewer", "operator"):
        client = browser(role)
        page = client.get("/config", headers=PAGE)
        assert page.status_code == 200
        text = textarea(page.text)
        assert f"password: {MASK}" in text
        assert "# Our router. Ask Jane before changing the rules." in text
        assert "readonly" in page.text
        assert 'action="/config"' not in page.text and "Check</button>" not in page.text
        assert "Configuration" in page.text  # in the menu
        token = csrf_of(client)
        for path in ("/config", "/config/check", "/config/history/restore"):
            answer = client.post(path, data={"text": "x: 1", "csrf_token": token})
            assert answer.status_code == 403, path
        history = client.get("/config/history", headers=PAGE)
        assert history.status_code == 200 and "Restore</button>" not in history.text
    assert PASSWORD in config.read_text()


def test_admin_saves_and_the_services_see_it(
    webgui: WebGui, config: Path, browser: Callable[[str], httpx.Client]
) -> None:
    """A save keeps comments and the masked secret, is audited with the change, and a
    ConfigSource on the file (what every service polls) has it on its next poll."""
    source = ConfigSource(config)
    assert source.current.config.router.series_complete_trigger == 90
    admin = browser("admin")
    text, version = opened(admin)
    assert PASSWORD not in text and f"password: {MASK}" in text
    edited = text.replace("series_complete_trigger: 90s", "series_complete_trigger: 120s")
    answer = save(admin, edited, version)
    assert answer.status_code == 303, answer.text
    saved = config.read_text()
    assert "    series_complete_trigger: 120s   # CT01 is slow\n" in saved
    assert "# Our router. Ask Jane before changing the rules." in saved
    assert "    archive:   # research copy\n" in saved
    assert f"password: {PASSWORD}\n" in saved  # the mask stood for the stored secret
    page = admin.get(answer.headers["location"], headers=PAGE)
    assert 'Saved. router.series_complete_trigger: "90s" -> "120s".' in html.unescape(page.text)
    assert textarea(page.text) == edited  # the new file, masked as before
    [entry] = audits(webgui, "config.save")
    assert entry["user"] == "admin" and "router.series_complete_trigger" in str(entry["changes"])
    reloaded = source.poll()
    assert reloaded is not None
    assert reloaded.config.router.series_complete_trigger == 120
    assert webgui.context.config.router.series_complete_trigger == 120  # the webgui too
    [record] = list_changes(config)
    assert record.user == "admin" and record.version == ConfigFile.read(config).version


def test_a_secret_typed_new_is_saved_and_never_shown(
    config: Path, browser: Callable[[str], httpx.Client]
) -> None:
    admin = browser("admin")
    text, version = opened(admin)
    answer = save(admin, text.replace(MASK, NEW_PASSWORD), version)
    assert answer.status_code == 303, answer.text
    assert f"password: {NEW_PASSWORD}\n" in config.read_text()
    after = admin.get(answer.headers["location"], headers=PAGE)
    assert "targets.archive.password changed" in after.text
    assert f"password: {MASK}" in textarea(after.text)


def test_a_refused_save_sends_a_typed_secret_back_as_retype(
    config: Path, browser: Callable[[str], httpx.Client]
) -> None:
    """The typed text comes back when the save is refused, but a secret typed in it does not:
    it says to type it again, and a save of that placeholder is refused."""
    admin = browser("admin")
    text, version = opened(admin)
    typed = text.replace(MASK, NEW_PASSWORD).replace("- pacs", "- pacs2")
    answer = save(admin, typed, version)
    assert answer.status_code == 422
    shown = textarea(answer.text)
    assert f"password: {RETYPE}" in shown and "- pacs2" in shown
    assert "targets.archive.password" in answer.text
    again = save(admin, shown.replace("- pacs2", "- pacs"), version)
    assert again.status_code == 422
    assert "type the secret again" in again.text
    assert PASSWORD in config.read_text()
    # With a syntax error the text is masked line by line.
    broken = typed + "oops: [\n"
    answer = save(admin, broken, version)
    assert answer.status_code == 422 and f"password: {RETYPE}" in textarea(answer.text)


def test_a_mask_with_nothing_stored_is_refused_with_its_key_path(
    config: Path, browser: Callable[[str], httpx.Client]
) -> None:
    admin = browser("admin")
    text, version = opened(admin)
    added = text.replace(
        "# Rules below",
        f"    copy:\n        type: sftp\n        host: h\n        user: u\n"
        f"        password: '{MASK}'\n# Rules below",
    )
    before = config.read_text()
    answer = save(admin, added, version)
    assert answer.status_code == 422
    assert "targets.copy.password" in answer.text and "none is stored here" in answer.text
    assert config.read_text() == before


def test_syntax_error_names_line_and_column_and_nothing_is_saved(
    config: Path, browser: Callable[[str], httpx.Client]
) -> None:
    admin = browser("admin")
    text, version = opened(admin)
    broken = text.replace("    series_complete_trigger: 90s", "    series_complete_trigger: [90s")
    before = config.read_text()
    answer = save(admin, broken, version)
    assert answer.status_code == 422
    assert re.search(r"YAML syntax error at line \d+, column \d+", answer.text), answer.text
    assert "[90s" in textarea(answer.text)  # what was typed stays
    check = admin.post(
        "/config/check",
        data={"text": broken, "config_version": version},
        headers={"hx-request": "true", "x-csrf-token": csrf_of(admin)},
    )
    assert re.search(r"YAML syntax error at line \d+, column \d+", check.text)
    assert config.read_text() == before


def test_invalid_configuration_names_key_paths_check_and_save(
    webgui: WebGui, config: Path, browser: Callable[[str], httpx.Client]
) -> None:
    admin = browser("admin")
    text, version = opened(admin)
    bad = text.replace("- pacs", "- pacs2").replace("90s", "ninety")
    headers = {"hx-request": "true", "x-csrf-token": csrf_of(admin)}
    check = admin.post(
        "/config/check", data={"text": bad, "config_version": version}, headers=headers
    )
    assert check.status_code == 200
    assert "rules.ct.targets[0]" in check.text and "pacs2" in check.text
    assert "router.series_complete_trigger" in check.text
    assert "2 problems" in check.text and "<html" not in check.text
    good = admin.post(
        "/config/check", data={"text": text, "config_version": version}, headers=headers
    )
    assert "No problems" in good.text and "changed since" not in good.text
    before = config.read_text()
    answer = save(admin, bad, version)
    assert answer.status_code == 422
    assert "rules.ct.targets[0]" in answer.text
    assert config.read_text() == before
    assert list_versions(config) == [] and audits(webgui, "config.save") == []


def test_stale_version_is_refused_and_the_typed_text_stays(
    config: Path, browser: Callable[[str], httpx.Client]
) -> None:
    first, second = browser("admin"), browser("admin")
    text, version = opened(first)
    other_text, other_version = opened(second)
    assert save(first, text.replace("90s", "100s"), version).status_code == 303
    mine = other_text.replace("# Targets", "# Targets, typed by the second admin")
    answer = save(second, mine, other_version)
    assert answer.status_code == 409
    assert "changed since you opened it" in answer.text
    assert "last saved by admin" in answer.text
    assert "# Targets, typed by the second admin" in textarea(answer.text)
    assert field(answer.text, "config_version") == other_version  # a resend is refused again
    assert "series_complete_trigger: 100s" in config.read_text()
    check = second.post(
        "/config/check",
        data={"text": mine, "config_version": other_version},
        headers={"hx-request": "true", "x-csrf-token": csrf_of(second)},
    )
    assert "changed since you opened it" in check.text


def test_text_over_the_limit_is_refused(
    webgui: WebGui, config: Path, browser: Callable[[str], httpx.Client]
) -> None:
    admin = browser("admin")
    text, version = opened(admin)
    answer = save(admin, text + "# " + "x" * MAX_TEXT + "\n", version)  # not %-encoded
    assert answer.status_code == 413
    assert "at most 524,288 bytes" in answer.text
    assert PASSWORD in config.read_text() and list_versions(config) == []


def history_rows(page: str) -> list[str]:
    body = page.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return [html.unescape(re.sub(r"<[^>]+>", " ", row)) for row in body.split("<tr")[1:]]


def test_history_diff_view_and_restore(
    webgui: WebGui, config: Path, browser: Callable[[str], httpx.Client]
) -> None:
    """Saves and a hand edit in between show in the history with who and what; the diff of
    two versions is of masked texts; restoring an old version makes it current, recorded."""
    admin = browser("admin")
    text, version = opened(admin)
    assert save(admin, text.replace("90s", "100s"), version).status_code == 303
    config.write_text(config.read_text().replace("100s", "110s"))  # by hand
    [now] = history_rows(admin.get("/config/history", headers=PAGE).text)[:1]
    assert "current" in now and "edited outside the web interface" in now and "file time" in now
    text, version = opened(admin)
    changed = text.replace("110s", "120s").replace(MASK, NEW_PASSWORD)
    assert save(admin, changed, version).status_code == 303
    versions = [p.name for p in list_versions(config)]
    assert len(versions) == 2  # the original, the hand-edited one
    original, hand = versions

    viewer = browser("viewer")
    page = viewer.get("/config/history", headers=PAGE)
    assert page.status_code == 200
    rows = history_rows(page.text)
    assert len(rows) == 3
    assert "current" in rows[0] and "admin" in rows[0] and "edited the whole file" in rows[0]
    assert "targets.archive.password changed" in rows[0]
    assert hand in rows[1] and "edited outside the web interface" in rows[1]
    assert original in rows[2] and "edited outside the web interface" in rows[2]

    diff = viewer.get("/config/history", params={"a": original, "b": "current"}, headers=PAGE)
    assert diff.status_code == 200
    assert '<span class="diff-del">-    series_complete_trigger: 90s' in diff.text
    assert '<span class="diff-add">+    series_complete_trigger: 120s' in diff.text
    assert "password" not in re.sub(r"(?s)^.*?<pre class=\"diff\">|</pre>.*$", "", diff.text)
    same = viewer.get("/config/history", params={"a": hand, "b": hand}, headers=PAGE)
    assert "The two versions are the same" in same.text

    view = viewer.get("/config/history/view", params={"name": original}, headers=PAGE)
    assert view.status_code == 200
    assert (
        f"password: {MASK}" in html.unescape(view.text)
        and "series_complete_trigger: 90s" in view.text
    )

    current = ConfigFile.read(config)
    answer = admin.post(
        "/config/history/restore",
        data={"name": original, "config_version": current.version, "csrf_token": csrf_of(admin)},
        headers=PAGE,
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    assert config.read_text() == HAND_EDITED.format(
        data_dir=webgui.config.data_dir, password=PASSWORD
    )
    assert webgui.context.config.router.series_complete_trigger == 90
    after = admin.get(answer.headers["location"], headers=PAGE)
    assert f"Restored the version {original}" in after.text
    rows = history_rows(after.text)
    assert len(rows) == 4 and "restored" in rows[0] and original in rows[0]
    assert list_changes(config)[-1].restored_from == original
    [entry] = audits(webgui, "config.restore")
    assert entry["user"] == "admin" and entry["restored_from"] == original
    # The restore is itself in the history: restoring what it replaced undoes it.
    assert len(list_versions(config)) == 3


def test_restore_refuses_a_stale_page_and_a_version_invalid_now(
    webgui: WebGui,
    config: Path,
    browser: Callable[[str], httpx.Client],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CONFIG_PAGE_TEST_HOST", "pacs.example.org")
    admin = browser("admin")
    text, version = opened(admin)
    with_env = text.replace("host: pacs.example.org", "host: ${CONFIG_PAGE_TEST_HOST}")
    assert save(admin, with_env, version).status_code == 303
    text, version = opened(admin)
    assert save(admin, text.replace("90s", "95s"), version).status_code == 303
    env_version = list_versions(config)[-1].name
    token = csrf_of(admin)

    stale = admin.post(
        "/config/history/restore",
        data={"name": env_version, "config_version": version, "csrf_token": token},
        headers=PAGE,
    )
    assert stale.status_code == 409 and "changed since you opened it" in stale.text

    monkeypatch.delenv("CONFIG_PAGE_TEST_HOST")
    before = config.read_text()
    invalid = admin.post(
        "/config/history/restore",
        data={
            "name": env_version,
            "config_version": ConfigFile.read(config).version,
            "csrf_token": token,
        },
        headers=PAGE,
    )
    assert invalid.status_code == 422
    assert "not valid now" in invalid.text
    assert (
        "targets.pacs.host" in invalid.text and "CONFIG_PAGE_TEST_HOST is not set" in invalid.text
    )
    assert config.read_text() == before and audits(webgui, "config.restore") == []


@pytest.mark.parametrize(
    "name", ["../mercure.yaml", "mercure.yaml", CHANGES_FILE, ".lock", "/etc/passwd", "..", ""]
)
def test_names_outside_the_history_are_404(
    config: Path, browser: Callable[[str], httpx.Client], name: str
) -> None:
    admin = browser("admin")
    text, version = opened(admin)
    assert save(admin, text.replace("90s", "91s"), version).status_code == 303
    assert len(list_versions(config)) == 1
    assert admin.get("/config/history/view", params={"name": name}).status_code == 404
    assert (
        admin.get("/config/history", params={"a": name or "x", "b": "current"}).status_code == 404
    )
    current = ConfigFile.read(config)
    answer = admin.post(
        "/config/history/restore",
        data={"name": name, "config_version": current.version, "csrf_token": csrf_of(admin)},
    )
    assert answer.status_code == 404
    assert ConfigFile.read(config) == current


def test_a_file_without_secrets_or_comments_round_trips(
    webgui: WebGui, browser: Callable[[str], httpx.Client], bodies: list[str]
) -> None:
    """The harness's own file: the page shows it as it is, and a save of it unchanged is
    accepted (no change)."""
    admin = browser("admin")
    text, version = opened(admin)
    assert yaml.safe_load(text)["data_dir"] == str(webgui.config.data_dir)
    answer = save(admin, text, version)
    assert answer.status_code == 303
    assert "no change to the settings" in admin.get(answer.headers["location"]).text


def test_save_edit_shares_the_save_path(webgui: WebGui, config: Path) -> None:
    """The edit pages' save_edit, now one path with the whole-text save: comments kept,
    audited, applied; a stale version refused."""
    import asyncio
    from types import SimpleNamespace

    from starlette.requests import Request

    from mercure.webgui.configedit import EditRefused, save_edit

    scope = {"type": "http", "app": webgui.app, "headers": [], "client": ("127.0.0.1", 1)}
    request = Request(scope)
    request.state.session = SimpleNamespace(user="admin")
    version = ConfigFile.read(config).version

    def edit(document: Document) -> None:
        document.set(("router", "series_complete_trigger"), "75s")

    saved = asyncio.run(save_edit(request, edit, version=version, summary="router timing"))
    assert "    series_complete_trigger: 75s   # CT01 is slow\n" in config.read_text()
    assert saved.version == ConfigFile.read(config).version
    assert webgui.context.config.router.series_complete_trigger == 75
    [event] = [e for e in webgui.written_events() if e.kind == "audit.config.save"]
    assert event.message.startswith("router timing: router.series_complete_trigger")
    assert event.data["user"] == "admin"
    with pytest.raises(EditRefused) as refused:
        asyncio.run(save_edit(request, edit, version=version, summary="again"))
    assert refused.value.conflict and "changed since you opened it" in refused.value.message


def test_a_file_broken_by_hand_is_named_and_can_be_restored(
    webgui: WebGui, config: Path, browser: Callable[[str], httpx.Client]
) -> None:
    """A hand edit that breaks the file: a syntax error is named and the text not shown (nor
    editable); invalid settings are listed; restoring an earlier version mends it."""
    admin = browser("admin")
    text, version = opened(admin)
    assert save(admin, text.replace("90s", "80s"), version).status_code == 303
    [good] = list_versions(config)
    config.write_text(config.read_text().replace("- pacs", "- pacs9"))
    page = admin.get("/config", headers=PAGE)
    assert "The file as it is now is not valid" in page.text
    assert "rules.ct.targets[0]" in page.text and 'action="/config"' in page.text
    config.write_text(f"password: {PASSWORD}\nrouter: [\n")
    page = admin.get("/config", headers=PAGE)
    assert "cannot be read as YAML now" in page.text and "line 3" in page.text
    assert 'action="/config"' not in page.text and "readonly" in page.text
    answer = admin.post(
        "/config/history/restore",
        data={
            "name": good.name,
            "config_version": ConfigFile.read(config).version,
            "csrf_token": csrf_of(admin),
        },
        headers=PAGE,
        follow_redirects=False,
    )
    assert answer.status_code == 303
    assert config.read_text() == good.read_text()
    history = admin.get("/config/history", headers=PAGE)
    assert "edited outside the web interface" in history_rows(history.text)[1]


def test_markup_in_the_file_stays_text(
    config: Path, browser: Callable[[str], httpx.Client]
) -> None:
    """Comments, values and keys with markup in them: text on every page of the file."""
    from webgui_harness import XSS_PAYLOADS, assert_inert

    admin = browser("admin")
    text, version = opened(admin)
    hostile = text.replace("# Targets", f"# {XSS_PAYLOADS[0]} {XSS_PAYLOADS[1]}").replace(
        "aet_target: PACS", f"aet_target: PACS\n        comment: '{XSS_PAYLOADS[1]}'"
    )
    answer = save(admin, hostile, version)
    assert answer.status_code == 303, answer.text
    name = list_versions(config)[0].name
    pages = [
        admin.get("/config", headers=PAGE),
        admin.get("/config/history", params={"a": name, "b": "current"}, headers=PAGE),
        admin.get("/config/history/view", params={"name": "current"}, headers=PAGE),
        save(admin, hostile + "broken: [\n", ConfigFile.read(config).version),
    ]
    for page in pages:
        assert XSS_PAYLOADS[0] in html.unescape(page.text)
        assert_inert(page.text)
