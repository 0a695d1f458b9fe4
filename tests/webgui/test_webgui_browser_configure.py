"""Configuring a running router in the browser, end to end (`mercure run`, every service).

An administrator of a router that sends MR to an archive adds a DICOM target pointing at a
running Orthanc and presses Test; writes a rule `tags.Modality == 'CT'` through the form, tests
it against the CT series that storescu sent a minute ago (discarded then: no rule wanted it),
and saves it. The next CT series goes to Orthanc: the running services took the new
configuration without a restart. A viewer and an operator see every configuration page
read-only, and a save sent anyway is refused. No response of the whole session holds a secret
of the configuration.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from browser import chromium
from test_webgui_browser import watch
from test_webgui_browser_system import add_user, all_up, running_router
from webgui_harness import PASSWORD

from mercure.testing.installation import API_KEY, MercureProcess
from mercure.testing.peers import Orthanc
from mercure.testing.peers.dcmtk import storescu
from mercure.testing.series import generate_series
from mercure.testing.wait import wait_until

SECRETS = ("dicomweb-Passw0rd-e2e-41f7", API_KEY)
"""Secrets the configuration holds: none may appear in any answer to the browser."""


def installation(tmp_path: Path) -> contextlib.AbstractContextManager[tuple[MercureProcess, str]]:
    """`mercure run`: MR goes to a folder; a DICOMweb target with a password nobody uses."""
    return running_router(
        tmp_path,
        targets={
            "archive": {"type": "folder", "folder": str(tmp_path / "archive")},
            "cloud": {
                "type": "dicomweb",
                "url": "https://dicomweb.example.org/dicom-web",
                "auth": "basic",
                "username": "mercure",
                "password": SECRETS[0],
            },
        },
        rules={"mr_archive": {"rule": "tags.Modality == 'MR'", "targets": ["archive"]}},
    )


CONFIG_PAGES = ("/rules", "/rules/ct_to_orthanc/edit", "/targets", "/targets/orthanc",
                "/targets/cloud", "/modules", "/settings", "/settings/receiver",
                "/settings/bookkeeper", "/config", "/config/history")  # fmt: skip


LISTS = ("/rules", "/targets", "/modules", "/config/history")


def sign_in_as(page: Any, url: str, name: str) -> None:
    """The sign-in form, filled and sent."""
    page.goto(url + "/login")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_url(url + "/")


def editable(page: Any) -> int:
    """Text fields of the page's forms that a user can type into."""
    return int(
        page.locator(
            "main form[method=post] :is(input[type=text], input[type=number], textarea)"
            ":not([readonly]):not([disabled]):not(fieldset[disabled] *)"
        ).count()
    )


def record_bodies(page: Any, bodies: list[tuple[str, bytes]]) -> None:
    """Keep the body of every answer the page gets (documents, fragments, scripts)."""

    def on_response(response: Any) -> None:
        with contextlib.suppress(Exception):  # redirects and aborted requests have no body
            bodies.append((response.url, response.body()))

    page.on("response", on_response)


@pytest.mark.slow
@pytest.mark.peers
def test_target_and_rule_made_in_the_browser_route_the_next_series(
    tmp_path: Path, orthanc: Orthanc
) -> None:
    """Target with Test, rule with the tester, saved; the next CT series is in Orthanc."""
    with installation(tmp_path) as (mercure, url):
        wait_until(lambda: all_up(mercure), timeout=60, interval=0.2, message="all services up")
        add_user(mercure.config_path, "admin", "admin")
        assert mercure.listen_port is not None
        first = generate_series(tmp_path / "first", "tiny", 3, modality="CT", seed=1)
        storescu(mercure.listen_port, first.folder, calling_aet="CT01", called_aet="MERCURE")
        discarded = mercure.config_path.parent / "data" / "discard"
        wait_until(
            lambda: any(discarded.iterdir()) if discarded.is_dir() else False,
            timeout=60,
            interval=0.2,
            message="the first CT series discarded (no rule wants CT yet)",
        )

        problems: list[str] = []
        bodies: list[tuple[str, bytes]] = []
        with chromium() as browser:
            page: Any = browser.new_page(viewport={"width": 1360, "height": 900})  # type: ignore[attr-defined]
            watch(page, problems)
            record_bodies(page, bodies)
            sign_in_as(page, url, "admin")

            # A DICOM target at Orthanc, tested before it is saved.
            page.click("header nav >> text=Targets")
            page.click("text=Add target")
            page.select_option("#type-choice", "dicom")
            page.click("text=Choose")
            page.fill("#f-target_name", "orthanc")
            page.fill("#f-host", "127.0.0.1")
            page.fill("#f-port", str(orthanc.dicom_port))
            page.fill("#f-aet_target", orthanc.aet)
            page.click("button:has-text('Test')")
            page.wait_for_selector("#test-result .summary", timeout=40_000)
            assert "orthanc: OK" in page.inner_text("#test-result")
            page.click("button:has-text('Save')")
            page.wait_for_url(url + "/targets/orthanc")

            # The rule, checked as typed and tested against the series received before.
            page.click("header nav >> text=Rules")
            page.wait_for_url(url + "/rules")
            page.click("#new-rule")
            # Loaded (htmx set up) before typing: a keystroke before that checks nothing.
            page.wait_for_url(url + "/rules/new")
            page.fill("#rule-name", "ct_to_orthanc")
            page.fill("#rule-expression", "tags.Modality == 'CT")
            page.press("#rule-expression", "End")
            page.wait_for_selector("#rule-check-result[data-valid=false]")
            page.type("#rule-expression", "'")
            page.wait_for_selector("#rule-check-result[data-valid=true]")
            page.check("input[name=targets][value=orthanc]")
            page.select_option("#test-series", f"recorded:{first.series_uid}")
            page.click("#run-test")
            page.wait_for_selector("#tester-expression[data-value=true]")
            assert "send to orthanc" in page.inner_text("#tester-decision")
            page.click("#save-rule")
            page.wait_for_url(url + "/rules")
            assert "Rule ct_to_orthanc created" in page.inner_text(".flash")

            # Every configuration page once more, for the secrets check below.
            for path in CONFIG_PAGES:
                page.goto(url + path)
                if path not in LISTS:
                    assert editable(page) > 0, f"{path} is not editable for an admin"

            # A viewer and an operator see the same pages read-only, and cannot save.
            for role in ("viewer", "operator"):
                add_user(mercure.config_path, role, role)
                context = browser.new_context()  # type: ignore[attr-defined]
                other: Any = context.new_page()
                watch(other, problems)
                record_bodies(other, bodies)
                sign_in_as(other, url, role)
                for path in CONFIG_PAGES:
                    other.goto(url + path)
                    main = other.locator("main")
                    saves = main.locator(
                        "button:has-text('Save'), button:has-text('Create'), "
                        "button:has-text('Restore'), button:has-text('Delete')"
                    )
                    assert saves.count() == 0, f"{role} is offered a save on {path}"
                    if role == "viewer":
                        assert editable(other) == 0, f"{path} is editable for a viewer"
                token = other.locator("input[name=csrf_token]").first.get_attribute("value")
                answer = other.request.post(
                    url + "/rules/ct_to_orthanc/disable", form={"csrf_token": token}
                )
                assert answer.status == 403, f"{role} disabled a rule: {answer.status}"
                context.close()

        rules = yaml.safe_load(mercure.config_path.read_text())["rules"]
        assert rules["ct_to_orthanc"] == {"rule": "tags.Modality == 'CT'", "targets": ["orthanc"]}

        # The next CT series goes to Orthanc: no service was restarted.
        second = generate_series(tmp_path / "second", "tiny", 4, modality="CT", seed=2)
        storescu(mercure.listen_port, second.folder, calling_aet="CT01", called_aet="MERCURE")
        wait_until(
            lambda: second.sop_instance_uids <= orthanc.sop_instance_uids(),
            timeout=60,
            interval=0.5,
            message="the second CT series in Orthanc",
        )
        assert not first.sop_instance_uids & orthanc.sop_instance_uids()

    assert problems == []
    assert len(bodies) > 20
    for address, body in bodies:
        for secret in SECRETS:
            assert secret.encode() not in body, f"{address} answered a secret of the configuration"
