"""The Targets page: every type created, edited and deleted over HTTP; write-only secrets;
delete refusals; Test against a real storescp and Orthanc; statistics from the bookkeeper."""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from formhtml import control_names
from webgui_harness import WebGui, csrf_of

from mercure.core.clock import utcnow
from mercure.core.config import validate_document
from mercure.core.config.targettypes import reload
from mercure.core.events import Event
from mercure.testing.peers import Orthanc, StoreSCP
from mercure.testing.ports import free_port
from mercure.testing.xnat_standin import XnatStandIn

PAGE = {"accept": "text/html"}
SECRET = "Very-Secret-Passw0rd-991"


def configure(webgui: WebGui, **sections: Any) -> None:
    """Write mercure.yaml with these sections (beside the harness's) and apply it."""
    document = yaml.safe_load(webgui.config_path.read_text())
    document.update(sections)
    webgui.config_path.write_text(yaml.safe_dump(document, sort_keys=False))
    webgui.context.apply(validate_document(document, base_dir=webgui.folder).config)


def stored(webgui: WebGui) -> dict[str, Any]:
    """The targets the file holds now."""
    targets: dict[str, Any] = yaml.safe_load(webgui.config_path.read_text()).get("targets") or {}
    return targets


def form_of(page: httpx.Response) -> dict[str, str]:
    """The hidden fields a page's form carries (version, CSRF token, stored name)."""
    found = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page.text))
    assert "config_version" in found, page.text[:2000]
    return found


def post_form(
    client: httpx.Client, page_path: str, action: str, values: dict[str, str]
) -> httpx.Response:
    """Open ``page_path`` and post its form to ``action`` with ``values``."""
    page = client.get(page_path, headers=PAGE)
    assert page.status_code == 200, page.text[:500]
    data = {**form_of(page), **values}
    return client.post(action, data=data, headers=PAGE, follow_redirects=False)


TYPES: dict[str, tuple[dict[str, str], dict[str, Any], dict[str, str]]] = {
    # type: (form values, what the file then holds, an edit)
    "dicom": (
        {"host": "pacs.example", "port": "11112", "aet_target": "PACS", "tls:enabled": "on",
         "tls.ca_certificate": "/etc/ssl/ca.pem", "tls.verify": "on"},
        {"type": "dicom", "host": "pacs.example", "port": 11112, "aet_target": "PACS",
         "tls": {"ca_certificate": "/etc/ssl/ca.pem"}},
        {"parallel_associations": "3"},
    ),
    "dicomweb": (
        {"url": "https://web.example/dicom-web", "auth": "basic", "username": "alice",
         "password": SECRET, "verify_tls": "on"},
        {"type": "dicomweb", "url": "https://web.example/dicom-web", "auth": "basic",
         "username": "alice", "password": SECRET},
        {"batch_instances": "10"},
    ),
    "sftp": (
        {"host": "sftp.example", "user": "drop", "password": SECRET, "folder": "/in"},
        {"type": "sftp", "host": "sftp.example", "user": "drop", "password": SECRET,
         "folder": "/in"},
        {"port": "2222"},
    ),
    "s3": (
        {"bucket": "images", "access_key_id": "AKIAEXAMPLE", "secret_access_key": SECRET},
        {"type": "s3", "bucket": "images", "access_key_id": "AKIAEXAMPLE",
         "secret_access_key": SECRET},
        {"prefix": "ct/"},
    ),
    "folder": ({"folder": "/srv/out", "file_filter": "*.json"},
               {"type": "folder", "folder": "/srv/out", "file_filter": "*.json"},
               {"comment": "archive copy"}),
    "rsync": (
        {"host": "rsync.example", "user": "drop", "folder": "/in", "password": SECRET,
         "run_on_complete": "on"},
        {"type": "rsync", "host": "rsync.example", "user": "drop", "folder": "/in",
         "password": SECRET, "run_on_complete": True},
        {"port": "2222"},
    ),
    "xnat": (
        {"host": "https://xnat.example", "project_id": "P1", "user": "up", "password": SECRET,
         "verify_tls": "on"},
        {"type": "xnat", "host": "https://xnat.example", "project_id": "P1", "user": "up",
         "password": SECRET},
        {"project_id": "P2"},
    ),
    "dummy": ({}, {"type": "dummy"}, {"comment": "for trying rules"}),
}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(TYPES))
def test_every_target_type_is_created_edited_and_deleted(
    webgui: WebGui, admin: httpx.Client, kind: str
) -> None:
    """An admin adds a target of each type, changes one field, deletes it; the file follows,
    secrets never come back in a page, and each save is audited."""
    values, holds, change = TYPES[kind]
    created = post_form(
        admin, f"/targets/new?type={kind}", "/targets/new", {"target_name": "t1", **values}
    )
    assert created.status_code == 303, created.text[:3000]
    assert stored(webgui) == {"t1": holds}
    page = admin.get("/targets/t1", headers=PAGE)
    assert SECRET not in page.text
    kept = {k: v for k, v in values.items() if SECRET not in v}  # secrets left empty
    saved = post_form(admin, "/targets/t1", "/targets/t1", {"target_name": "t1", **kept, **change})
    assert saved.status_code == 303, saved.text[:3000]
    [(key, typed)] = change.items()
    assert stored(webgui)["t1"][key] == (int(typed) if typed.isdigit() else typed)
    if SECRET in str(holds):
        assert SECRET in str(stored(webgui)["t1"])  # kept while the field was empty
    listing = admin.get("/targets", headers=PAGE)
    assert "t1" in listing.text and SECRET not in listing.text
    deleted = post_form(admin, "/targets/t1/delete", "/targets/t1/delete", {})
    assert deleted.status_code == 303
    assert stored(webgui) == {}
    saves = [e for e in webgui.written_events() if e.kind == "audit.config.save"]
    assert [e.data["object"] for e in saves] == ["target t1"] * 3
    assert all(SECRET not in e.model_dump_json() for e in webgui.written_events())


def test_secret_states_clear_and_env_references(
    webgui: WebGui, admin: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A secret shows as set / not set / its ${ENV} reference, is cleared only by the box,
    and is never in a page or a form value."""
    monkeypatch.setenv("WEB_PASSWORD", "from-the-environment")
    monkeypatch.setenv("TOKEN_VAR", "another-one")
    configure(
        webgui,
        targets={
            "web": {"type": "dicomweb", "url": "http://x.example/dw", "auth": "bearer",
                    "token": SECRET, "password": "${WEB_PASSWORD}"},
        },
    )  # fmt: skip
    page = admin.get("/targets/web", headers=PAGE)
    assert SECRET not in page.text
    token = re.search(r'name="token" value="([^"]*)"', page.text)
    assert token is not None and token.group(1) == ""
    assert "set from the environment variable ${WEB_PASSWORD}" in page.text
    assert ">set<" in page.text
    base = {
        "target_name": "web",
        "url": "http://x.example/dw",
        "auth": "bearer",
        "verify_tls": "on",
    }
    cleared = post_form(admin, "/targets/web", "/targets/web", {**base, "token:clear": "on"})
    assert cleared.status_code == 303, cleared.text[:2000]
    assert stored(webgui)["web"] == {
        "type": "dicomweb", "url": "http://x.example/dw", "auth": "bearer",
        "password": "${WEB_PASSWORD}",
    }  # fmt: skip
    replaced = post_form(admin, "/targets/web", "/targets/web", {**base, "token": "${TOKEN_VAR}"})
    assert replaced.status_code == 303
    assert stored(webgui)["web"]["token"] == "${TOKEN_VAR}"


def test_invalid_values_are_refused_beside_their_field(webgui: WebGui, admin: httpx.Client) -> None:
    """A port out of range is refused at its field, nothing is written, what was typed stays
    (a typed secret does not)."""
    response = post_form(
        admin,
        "/targets/new?type=sftp",
        "/targets/new",
        {"target_name": "s", "host": "h.example", "user": "u", "port": "70000", "password": SECRET},
    )
    assert response.status_code == 400
    assert stored(webgui) == {}
    assert "targets.s.port" not in response.text  # shown at the field, by its own name
    assert re.search(r'aria-invalid="true"[^>]*>|name="port" value="70000"', response.text)
    assert "less than or equal to 65535" in response.text
    assert SECRET not in response.text
    assert "type it once more" in response.text


def test_delete_is_refused_while_rules_use_the_target(webgui: WebGui, admin: httpx.Client) -> None:
    """The confirmation page and the delete itself name the rules that use the target."""
    configure(
        webgui,
        targets={"pacs": {"type": "folder", "folder": "/tmp"}},
        rules={
            "ct": {"rule": "True", "targets": ["pacs"]},
            "mr": {"rule": "True", "targets": "pacs"},
        },
    )
    confirm = admin.get("/targets/pacs/delete", headers=PAGE)
    assert "cannot be deleted" in confirm.text and "ct" in confirm.text and "mr" in confirm.text
    version = form_of(admin.get("/targets/pacs", headers=PAGE))["config_version"]
    response = admin.post(
        "/targets/pacs/delete",
        data={"csrf_token": csrf_of(admin), "config_version": version, "confirm": "pacs"},
        headers=PAGE,
        follow_redirects=True,
    )
    assert response.status_code == 200
    assert "Target pacs is used by the rules ct, mr: change them first." in response.text
    assert "pacs" in stored(webgui)


def test_rename_renames_the_target_in_its_rules(webgui: WebGui, admin: httpx.Client) -> None:
    """A new name on the form renames the target, and the rules follow."""
    configure(
        webgui,
        targets={"old": {"type": "folder", "folder": "/tmp"}},
        rules={"ct": {"rule": "True", "targets": ["old"]}},
    )
    response = post_form(admin, "/targets/old", "/targets/old", {"target_name": "new-name",
                                                                 "folder": "/tmp"})  # fmt: skip
    assert response.status_code == 303, response.text[:2000]
    document = yaml.safe_load(webgui.config_path.read_text())
    assert list(document["targets"]) == ["new-name"]
    assert document["rules"]["ct"]["targets"] == ["new-name"]


def test_a_stale_form_is_refused_as_changed_since_opened(
    webgui: WebGui, admin: httpx.Client
) -> None:
    """A form opened before someone else saved is refused; nothing is overwritten."""
    configure(webgui, targets={"a": {"type": "folder", "folder": "/tmp"}})
    old = form_of(admin.get("/targets/a", headers=PAGE))
    configure(webgui, targets={"a": {"type": "folder", "folder": "/srv"}})
    response = admin.post(
        "/targets/a", data={**old, "target_name": "a", "folder": "/var"}, headers=PAGE
    )
    assert response.status_code == 409
    assert "changed since you opened it" in response.text
    assert stored(webgui)["a"]["folder"] == "/srv"


def test_viewers_read_operators_test_and_only_admins_save(
    webgui: WebGui, signed_in: Callable[[str], httpx.Client]
) -> None:
    """Viewers get a disabled form without buttons; operators get Test but no Save, and a save
    they send anyway is refused."""
    configure(webgui, targets={"a": {"type": "folder", "folder": "/tmp"}})
    viewer, operator = signed_in("viewer"), signed_in("operator")
    page = viewer.get("/targets/a", headers=PAGE).text
    assert '<fieldset class="panel" disabled>' in page
    assert ">Save<" not in page and ">Test<" not in page
    page = operator.get("/targets/a", headers=PAGE).text
    assert ">Test<" in page and ">Save<" not in page
    refused = post_form(operator, "/targets/a", "/targets/a", {"target_name": "a", "folder": "/x"})
    assert refused.status_code == 403
    assert operator.get("/targets/new", headers=PAGE).status_code == 403
    assert stored(webgui)["a"]["folder"] == "/tmp"


def test_statistics_per_target_and_unknown_without_the_bookkeeper(
    webgui: WebGui, viewer: httpx.Client
) -> None:
    """Delivered, failed, mean time and the last error per target; "unknown" when the
    bookkeeper does not answer (the list itself still shows)."""
    configure(webgui, targets={"pacs": {"type": "dicom", "host": "h.example", "port": 104}})
    now = utcnow()

    def event(kind: str, seconds: float, task: str, **data: Any) -> Event:
        return Event(
            service="dispatcher",
            kind=kind,
            time=now - timedelta(minutes=10) + timedelta(seconds=seconds),
            task_id=task,
            data={"target": "pacs", **data},
        )

    webgui.store_events(
        [
            event("dispatch.begin", 0, "t1"),
            event("dispatch.complete", 6, "t1", instances=2),
            event("dispatch.begin", 10, "t2"),
            event("dispatch.failed", 11, "t2", final=True, reason="association <rejected>"),
        ]
    )
    page = viewer.get("/targets", headers=PAGE).text
    row = page[page.index("<tbody>") : page.index("</tbody>")]
    assert "ANY-SCP@h.example:104" in row
    assert re.search(r'<td class="num">1</td>\s*<td class="num">0</td>', row)
    assert "6.0 s" in row
    assert "association &lt;rejected&gt;" in row
    webgui.bookkeeper_down = True
    page = viewer.get("/targets", headers=PAGE).text
    assert "ANY-SCP@h.example:104" in page
    assert "unknown" in page


@pytest.mark.peers
def test_test_button_shows_each_step_against_storescp(
    webgui: WebGui, operator: httpx.Client, storescp: Callable[..., StoreSCP]
) -> None:
    """Testing the form's values (not saved) against a storescp started here: every step OK;
    a closed port fails at "TCP connect" with the address."""
    scp = storescp()
    values = {"target_name": "try", "type": "dicom", "host": "127.0.0.1", "aet_target": "SCP",
              "csrf_token": csrf_of(operator)}  # fmt: skip
    hx = {"hx-request": "true"}
    response = operator.post("/targets/test", data={**values, "port": str(scp.port)}, headers=hx)
    assert response.status_code == 200
    for step in ("resolve host", "TCP connect", "association accepted", "C-ECHO"):
        assert re.search(rf"<td[^>]*>{step}</td>\s*<td[^>]*><span[^>]*>OK</span>", response.text)
    assert f"try: OK</strong> <span>C-ECHO to SCP@127.0.0.1:{scp.port} succeeded" in response.text
    closed = free_port()
    response = operator.post("/targets/test", data={**values, "port": str(closed)}, headers=hx)
    assert "try: FAILED" in response.text
    assert re.search(
        r"<td[^>]*>TCP connect</td>\s*<td[^>]*><span[^>]*>failed</span>", response.text
    )
    assert f"127.0.0.1:{closed}" in response.text
    assert stored(webgui) == {}
    tests = [e for e in webgui.written_events() if e.kind == "audit.target.test"]
    assert [e.data["ok"] for e in tests] == [True, False]


def test_test_button_runs_the_xnat_steps_against_the_stand_in(
    webgui: WebGui, operator: httpx.Client
) -> None:
    """The Test of an xnat form (against the XNAT stand-in): login and project, each a step;
    the password typed is never shown."""
    with XnatStandIn() as standin:
        values = {"target_name": "x", "type": "xnat", "host": standin.url, "project_id": "STUDY1",
                  "user": standin.user, "password": standin.password, "verify_tls": "on",
                  "csrf_token": csrf_of(operator)}  # fmt: skip
        answer = operator.post("/targets/test", data=values, headers={"hx-request": "true"})
    assert "x: OK" in answer.text, answer.text
    for step in ("login", "project"):
        assert re.search(rf"<td[^>]*>{step}</td>\s*<td[^>]*><span[^>]*>OK</span>", answer.text)
    assert standin.password not in answer.text


@pytest.mark.peers
def test_test_uses_the_stored_secret_and_never_shows_one(
    webgui: WebGui, operator: httpx.Client, tmp_path: Path
) -> None:
    """A password left empty is the stored one (the login passes); a typed wrong one fails at
    "credentials accepted"; neither appears in any answer."""
    users = {"AuthenticationEnabled": True, "RegisteredUsers": {"alice": SECRET}}
    orthanc = Orthanc(tmp_path / "orthanc", config=users)
    orthanc.client.auth = httpx.BasicAuth("alice", SECRET)
    with orthanc:
        definition = {"type": "dicomweb", "url": orthanc.dicomweb_url, "auth": "basic",
                      "username": "alice", "password": SECRET}  # fmt: skip
        configure(webgui, targets={"web": definition})
        values = {
            "stored_name": "web",
            "target_name": "web",
            "url": orthanc.dicomweb_url,
            "auth": "basic",
            "username": "alice",
            "verify_tls": "on",
            "csrf_token": csrf_of(operator),
        }
        hx = {"hx-request": "true"}
        good = operator.post("/targets/test", data=values, headers=hx)
        assert "web: OK" in good.text, good.text
        wrong = "Typed-Wrong-Passw0rd"
        bad = operator.post("/targets/test", data={**values, "password": wrong}, headers=hx)
        assert "web: FAILED" in bad.text
        assert re.search(r"credentials accepted</td>\s*<td[^>]*><span[^>]*>failed", bad.text)
        for answer in (good, bad):
            assert SECRET not in answer.text and wrong not in answer.text


def test_an_operator_cannot_send_a_stored_secret_elsewhere(
    webgui: WebGui, signed_in: Callable[[str], httpx.Client]
) -> None:
    """An operator's test with the stored password and a changed URL is refused before any
    connection is made, naming what changed; typing the secret, or being admin, is allowed."""
    configure(
        webgui,
        targets={
            "web": {"type": "dicomweb", "url": "http://pacs.example/dw", "auth": "basic",
                    "username": "alice", "password": SECRET},
        },
    )  # fmt: skip
    operator, admin = signed_in("operator"), signed_in("admin")
    values = {"stored_name": "web", "target_name": "web", "auth": "basic", "username": "alice",
              "verify_tls": "on", "url": "http://127.0.0.1:9/elsewhere"}  # fmt: skip
    hx = {"hx-request": "true"}
    refused = operator.post(
        "/targets/test", data={**values, "csrf_token": csrf_of(operator)}, headers=hx
    )
    assert "url changed: a test with the stored password uses the saved settings" in refused.text
    assert "table" not in refused.text  # no step ran
    typed = operator.post(
        "/targets/test",
        data={**values, "password": "typed-by-hand", "csrf_token": csrf_of(operator)},
        headers=hx,
    )
    assert "web: FAILED" in typed.text and "connect" in typed.text
    allowed = admin.post("/targets/test", data={**values, "csrf_token": csrf_of(admin)}, headers=hx)
    assert "web: FAILED" in allowed.text
    assert all(SECRET not in r.text for r in (refused, typed, allowed))


def test_a_site_plugin_type_gets_a_form_from_its_model_and_a_test(
    webgui: WebGui,
    admin: httpx.Client,
    operator: httpx.Client,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A type from a separate package (tests/dispatcher/plugin_example) is in the type menu,
    its form has a control per field of its model, it saves, and Test runs its steps (in the
    `mercure test-target` child, which finds the package on its path too)."""
    example = Path(__file__).resolve().parents[1] / "dispatcher" / "plugin_example"
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(example), os.environ["PYTHONPATH"]])
                       if os.environ.get("PYTHONPATH") else str(example))  # fmt: skip
    monkeypatch.syspath_prepend(str(example))
    importlib.invalidate_caches()
    reload()
    try:
        page = admin.get("/targets/new?type=example", headers=PAGE)
        assert page.status_code == 200
        assert '<option value="example" selected>example: Drops each instance' in page.text
        assert {"folder", "label", "comment", "max_parallel_tasks"} <= control_names(page.text)
        drop = tmp_path / "drop"
        drop.mkdir()
        created = post_form(
            admin,
            "/targets/new?type=example",
            "/targets/new",
            {"target_name": "lab", "folder": str(drop), "label": "lab"},
        )
        assert created.status_code == 303, created.text[:3000]
        assert stored(webgui) == {"lab": {"type": "example", "folder": str(drop), "label": "lab"}}
        values = {"target_name": "lab", "type": "example", "folder": str(drop), "label": "lab",
                  "csrf_token": csrf_of(operator)}  # fmt: skip
        answer = operator.post("/targets/test", data=values, headers={"hx-request": "true"})
        assert "lab: OK" in answer.text, answer.text
        assert re.search(r"<td[^>]*>folder</td>\s*<td[^>]*><span[^>]*>OK</span>", answer.text)
    finally:
        monkeypatch.undo()
        for name in [m for m in sys.modules if m.startswith("mercure_target_example")]:
            del sys.modules[name]
        importlib.invalidate_caches()
        reload()
