"""The Modules page: both runners created, edited and deleted over HTTP; settings checked as
JSON and against the module's schema; write-only environment values; delete refusals; image
presence on a real container engine (Podman's Docker API)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from test_webgui_targets import PAGE, configure, csrf_of, form_of, post_form
from webgui_harness import WebGui

from mercure.testing.podman import PodmanService, podman_available

SECRET = "module-token-4711-secret"
IMAGE = "localhost/mercure-webgui-test:1"


def modules(webgui: WebGui) -> dict[str, Any]:
    """The modules the file holds now."""
    found: dict[str, Any] = yaml.safe_load(webgui.config_path.read_text()).get("modules") or {}
    return found


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodmanService]:
    """Podman's Docker API with one small image built locally."""
    if not podman_available():
        pytest.skip("podman, runc and busybox-static are needed (scripts/install.sh --test)")
    folder = tmp_path_factory.mktemp("podman")
    with PodmanService(folder) as service:
        service.build_module_image(IMAGE, "#!/bin/sh\nexit 0\n", folder / "image")
        yield service


@pytest.mark.parametrize(
    ("runner", "values", "holds"),
    [
        (
            "docker",
            {"image": "localhost/seg:1", "timeout": "15m", "memory_limit_mb": "512",
             "command": "/run.sh\n--fast", "volumes": "/srv/models:/models",
             "settings": '{"threshold": 0.5}', "environment": f"TOKEN={SECRET}"},
            {"runner": "docker", "settings": {"threshold": 0.5},
             "environment": {"TOKEN": SECRET}, "timeout": "15m", "image": "localhost/seg:1",
             "command": ["/run.sh", "--fast"], "memory_limit_mb": 512,
             "volumes": [{"source": "/srv/models", "target": "/models"}]},
        ),
        (
            "command",
            {"command": "/usr/local/bin/anon\n--keep-dates", "timeout": "60",
             "environment": f"TOKEN={SECRET}"},
            {"runner": "command", "environment": {"TOKEN": SECRET}, "timeout": 60.0,
             "command": ["/usr/local/bin/anon", "--keep-dates"]},
        ),
    ],
)  # fmt: skip
def test_both_runners_are_created_edited_and_deleted(
    webgui: WebGui, admin: httpx.Client, runner: str, values: dict[str, str], holds: dict[str, Any]
) -> None:
    """An admin adds a module of each runner, edits it with the environment left masked (the
    value is kept), deletes it; no page shows the environment value."""
    if runner == "docker":
        configure(webgui, processing={"volume_root": "/srv"})
    created = post_form(
        admin, f"/modules/new?runner={runner}", "/modules/new", {"module_name": "m", **values}
    )
    assert created.status_code == 303, created.text[:3000]
    assert modules(webgui) == {"m": holds}
    page = admin.get("/modules/m", headers=PAGE)
    assert SECRET not in page.text
    shown = re.search(r'<textarea id="f-environment"[^>]*>([^<]*)<', page.text)
    assert shown is not None and shown.group(1) == "TOKEN=&lt;secret&gt;"
    edited = {**values, "environment": "TOKEN=<secret>\nMODE=${HOME}", "comment": "edited"}
    saved = post_form(admin, "/modules/m", "/modules/m", {"module_name": "m", **edited})
    assert saved.status_code == 303, saved.text[:3000]
    assert modules(webgui)["m"]["environment"] == {"TOKEN": SECRET, "MODE": "${HOME}"}
    assert modules(webgui)["m"]["comment"] == "edited"
    listing = admin.get("/modules", headers=PAGE)
    assert ">m<" in listing.text and SECRET not in listing.text
    deleted = post_form(admin, "/modules/m/delete", "/modules/m/delete", {})
    assert deleted.status_code == 303
    assert modules(webgui) == {}
    assert all(SECRET not in e.model_dump_json() for e in webgui.written_events())


def test_settings_are_checked_as_json_and_against_the_schema(
    webgui: WebGui, admin: httpx.Client
) -> None:
    """Settings that are not a JSON object, or break the module's settings_schema, are refused
    at the settings field; a schema that is no JSON Schema at its own field."""
    schema = '{"type": "object", "properties": {"threshold": {"type": "number", "maximum": 1}}}'
    base = {"module_name": "seg", "command": "/bin/true", "settings_schema": schema}

    def save(**values: str) -> httpx.Response:
        return post_form(admin, "/modules/new?runner=command", "/modules/new", {**base, **values})

    not_json = save(settings="{threshold: 1")
    assert not_json.status_code == 400
    assert "not JSON: Expecting property name enclosed in double quotes" in not_json.text
    too_big = save(settings='{"threshold": 2}')
    assert too_big.status_code == 400
    field = too_big.text[too_big.text.index('id="f-settings"') :]
    assert field.index("threshold: 2 is greater than the maximum of 1") < 2000
    bad_schema = save(settings="{}", settings_schema='{"type": "nothing"}')
    assert "not a JSON Schema" in bad_schema.text
    assert modules(webgui) == {}
    good = save(settings='{"threshold": 0.25}')
    assert good.status_code == 303, good.text[:2000]
    assert modules(webgui)["seg"]["settings"] == {"threshold": 0.25}


def test_delete_refused_and_rename_followed_by_rules(webgui: WebGui, admin: httpx.Client) -> None:
    """A module a rule uses is not deleted (the rule is named); a rename renames it there."""
    configure(
        webgui,
        modules={"anon": {"runner": "command", "command": ["/bin/true"]}},
        rules={"ct": {"rule": "True", "action": "process", "processing_module": "anon"}},
    )
    version = form_of(admin.get("/modules/anon", headers=PAGE))["config_version"]
    refused = admin.post(
        "/modules/anon/delete",
        data={"csrf_token": csrf_of(admin), "config_version": version, "confirm": "anon"},
        headers=PAGE,
        follow_redirects=True,
    )
    assert "Module anon is used by the rule ct: change it first." in refused.text
    assert "anon" in modules(webgui)
    renamed = post_form(
        admin,
        "/modules/anon",
        "/modules/anon",
        {"module_name": "deid", "command": "/bin/true", "timeout": "3600"},
    )
    assert renamed.status_code == 303, renamed.text[:2000]
    document = yaml.safe_load(webgui.config_path.read_text())
    assert list(document["modules"]) == ["deid"]
    assert document["rules"]["ct"]["processing_module"] == "deid"


def test_only_admins_change_modules(
    webgui: WebGui, signed_in: Callable[[str], httpx.Client]
) -> None:
    """Viewers and operators see a disabled form without Save; their saves are refused."""
    configure(webgui, modules={"anon": {"runner": "command", "command": ["/bin/true"]}})
    for role in ("viewer", "operator"):
        client = signed_in(role)
        page = client.get("/modules/anon", headers=PAGE).text
        assert '<fieldset class="panel" disabled>' in page and ">Save<" not in page
        refused = post_form(client, "/modules/anon", "/modules/anon", {"module_name": "anon"})
        assert refused.status_code == 403
    assert modules(webgui) == {"anon": {"runner": "command", "command": ["/bin/true"]}}


@pytest.mark.peers
def test_image_presence_on_the_container_engine(
    webgui: WebGui, viewer: httpx.Client, podman: PodmanService, tmp_path: Path
) -> None:
    """Against Podman's Docker API: a built image is present, another missing; an engine that
    does not answer is "engine unreachable", quickly."""
    configure(
        webgui,
        processing={"docker_url": podman.url},
        modules={
            "built": {"runner": "docker", "image": IMAGE},
            "absent": {"runner": "docker", "image": "localhost/not-built:9"},
            "local": {"runner": "command", "command": ["/bin/true"]},
        },
    )
    page = viewer.get("/modules", headers=PAGE).text

    def state(name: str) -> str:
        row = page[page.index(f"<strong>{name}</strong>") :]
        row = row[: row.index("</tr>")]
        found = re.search(r'class="image-(\w+)"', row)
        return found.group(1) if found else "none"

    assert (state("built"), state("absent"), state("local")) == ("present", "missing", "none")
    configure(webgui, processing={"docker_url": f"unix://{tmp_path / 'no-engine.sock'}"})
    started = time.monotonic()
    page = viewer.get("/modules", headers=PAGE).text
    assert time.monotonic() - started < 8
    assert state("built") == "unreachable" and "engine unreachable" in page
