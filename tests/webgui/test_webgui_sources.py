"""The Sources page: both types created, edited and deleted over HTTP; write-only secrets; a
C-MOVE destination checked against the listeners; Test against a real Orthanc."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from test_webgui_targets import configure, post_form
from webgui_harness import WebGui, csrf_of

from mercure.testing.peers import Orthanc
from mercure.testing.ports import free_port
from mercure.testing.series import generate_series

PAGE = {"accept": "text/html"}
HX = {"hx-request": "true"}
SECRET = "Source-Secret-Passw0rd-17"


def stored(webgui: WebGui) -> dict[str, Any]:
    """The sources the file holds now."""
    sources: dict[str, Any] = yaml.safe_load(webgui.config_path.read_text()).get("sources") or {}
    return sources


TYPES: dict[str, tuple[dict[str, str], dict[str, Any], dict[str, str]]] = {
    # type: (form values, what the file then holds, an edit)
    "dicom": (
        {"host": "pacs.example", "port": "104", "aet_target": "PACS", "aet_source": "MERCURE",
         "retrieve_method": "c-move", "move_destination": "MERCURE"},
        {"type": "dicom", "host": "pacs.example", "aet_target": "PACS",
         "retrieve_method": "c-move", "move_destination": "MERCURE"},
        {"max_associations": "4"},
    ),
    "dicomweb": (
        {"url": "https://web.example/dicom-web", "auth": "basic", "username": "alice",
         "password": SECRET, "verify_tls": "on", "qido_url_prefix": "rs"},
        {"type": "dicomweb", "url": "https://web.example/dicom-web", "qido_url_prefix": "rs",
         "auth": "basic", "username": "alice", "password": SECRET},
        {"max_requests": "3"},
    ),
}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(TYPES))
def test_each_source_type_is_created_edited_and_deleted(
    webgui: WebGui, admin: httpx.Client, kind: str
) -> None:
    """An admin adds a source of each type, changes one field, deletes it; the file follows
    and the password never comes back in a page."""
    values, holds, change = TYPES[kind]
    created = post_form(
        admin, f"/sources/new?type={kind}", "/sources/new", {"source_name": "s1", **values}
    )
    assert created.status_code == 303, created.text[:3000]
    assert stored(webgui) == {"s1": holds}
    page = admin.get("/sources/s1", headers=PAGE)
    assert page.status_code == 200 and SECRET not in page.text
    kept = {k: v for k, v in values.items() if v != SECRET}
    saved = post_form(admin, "/sources/s1", "/sources/s1", {"source_name": "s1", **kept, **change})
    assert saved.status_code == 303, saved.text[:3000]
    [(key, typed)] = change.items()
    assert stored(webgui)["s1"][key] == int(typed)
    assert stored(webgui)["s1"].get("password") == holds.get("password")  # kept while empty
    listing = admin.get("/sources", headers=PAGE)
    assert "s1" in listing.text and SECRET not in listing.text
    deleted = post_form(admin, "/sources/s1/delete", "/sources/s1/delete", {})
    assert deleted.status_code == 303
    assert stored(webgui) == {}


def test_move_destination_must_be_a_listener(webgui: WebGui, admin: httpx.Client) -> None:
    """A C-MOVE destination that is no listener's AE title is refused, the error at the field."""
    values = {**TYPES["dicom"][0], "move_destination": "NOWHERE"}
    response = post_form(
        admin, "/sources/new?type=dicom", "/sources/new", {"source_name": "p", **values}
    )
    assert response.status_code == 400
    assert "&#39;NOWHERE&#39; is not the AE title of a listener" in response.text
    assert stored(webgui) == {}


def test_list_shows_where_and_how_without_secrets(webgui: WebGui, viewer: httpx.Client) -> None:
    """The list names each source's address and retrieve method; viewers get read-only forms."""
    configure(
        webgui,
        sources={
            "pacs": {"type": "dicom", "host": "pacs.example", "aet_target": "PACS",
                     "retrieve_method": "c-move"},
            "web": {"type": "dicomweb", "url": "https://web.example/dw", "auth": "bearer",
                    "token": SECRET},
        },
    )  # fmt: skip
    listing = viewer.get("/sources", headers=PAGE).text
    assert "PACS@pacs.example:104" in listing and "C-MOVE to MERCURE" in listing
    assert "https://web.example/dw" in listing and "WADO-RS" in listing
    assert SECRET not in listing
    page = viewer.get("/sources/web", headers=PAGE).text
    assert '<fieldset class="panel" disabled>' in page and ">Test<" not in page
    assert SECRET not in page


@pytest.fixture
def pacs(orthanc_factory: Callable[..., Orthanc], tmp_path: Path) -> Orthanc:
    """Orthanc knowing our AE title (so it answers C-FIND), with one study."""
    orthanc = orthanc_factory(modalities={"mercure": ("MERCURE", "127.0.0.1", free_port())})
    orthanc.upload(generate_series(tmp_path / "study", "tiny", 2).paths)
    return orthanc


def steps_of(html: str) -> dict[str, str]:
    """Step name -> state of a test result."""
    return dict(re.findall(r"<td[^>]*>([^<]+)</td>\s*<td[^>]*><span[^>]*>([^<]+)</span>", html))


def test_test_button_echoes_and_queries_a_dicom_source(
    webgui: WebGui, operator: httpx.Client, pacs: Orthanc
) -> None:
    """An unsaved DICOM source's Test: connect, C-ECHO, a one-study C-FIND, each OK; a closed
    port fails at connect; an AE title Orthanc does not know fails at C-FIND."""
    values = {"source_name": "try", "type": "dicom", "host": "127.0.0.1",
              "aet_target": "ORTHANC", "aet_source": "MERCURE", "retrieve_method": "c-get",
              "csrf_token": csrf_of(operator)}  # fmt: skip
    answer = operator.post(
        "/sources/test", data={**values, "port": str(pacs.dicom_port)}, headers=HX
    )
    assert "try: OK" in answer.text, answer.text
    assert steps_of(answer.text) == {"connect": "OK", "C-ECHO": "OK", "C-FIND": "OK"}
    assert "answered with 1 study" in answer.text
    stranger = operator.post(
        "/sources/test",
        data={**values, "port": str(pacs.dicom_port), "aet_source": "STRANGER"},
        headers=HX,
    )
    assert steps_of(stranger.text) == {"connect": "OK", "C-ECHO": "OK", "C-FIND": "failed"}
    closed = free_port()
    refused = operator.post("/sources/test", data={**values, "port": str(closed)}, headers=HX)
    assert steps_of(refused.text) == {"connect": "failed"}
    assert f"127.0.0.1:{closed}" in refused.text
    assert stored(webgui) == {}
    tests = [e for e in webgui.written_events() if e.kind == "audit.source.test"]
    assert [e.data["ok"] for e in tests] == [True, False, False]


@pytest.mark.peers
def test_test_uses_the_stored_secret_only_with_the_saved_settings(
    webgui: WebGui, operator: httpx.Client, tmp_path: Path
) -> None:
    """A DICOMweb source behind a login: the operator's Test with the password left empty uses
    the stored one and passes; the same with a changed URL is refused; no answer shows it."""
    users = {"AuthenticationEnabled": True, "RegisteredUsers": {"alice": SECRET}}
    orthanc = Orthanc(tmp_path / "orthanc", config=users)
    orthanc.client.auth = httpx.BasicAuth("alice", SECRET)
    with orthanc:
        definition = {"type": "dicomweb", "url": orthanc.dicomweb_url, "auth": "basic",
                      "username": "alice", "password": SECRET}  # fmt: skip
        configure(webgui, sources={"web": definition})
        values = {"source_name": "web", "stored_name": "web", "url": orthanc.dicomweb_url,
                  "auth": "basic", "username": "alice", "verify_tls": "on",
                  "csrf_token": csrf_of(operator)}  # fmt: skip
        answer = operator.post("/sources/test", data=values, headers=HX)
        assert "web: OK" in answer.text, answer.text
        assert steps_of(answer.text) == {"connect": "OK", "QIDO-RS": "OK"}
        moved = operator.post(
            "/sources/test", data={**values, "url": "http://127.0.0.1:9/dw"}, headers=HX
        )
        assert "url changed: a test with a stored secret" in moved.text
        wrong = operator.post("/sources/test", data={**values, "password": "wrong-one"}, headers=HX)
        assert steps_of(wrong.text) == {"connect": "OK", "QIDO-RS": "failed"}
        assert "refused the credentials (HTTP 401)" in wrong.text
        for text in (answer.text, moved.text, wrong.text):
            assert SECRET not in text
