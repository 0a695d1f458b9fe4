"""A user with a temporary password (imported from mercure, or reset) must choose their own."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
from webgui_harness import PASSWORD, WebGui, sign_in

PAGE = {"accept": "text/html"}
NEW_PASSWORD = "a password of my own 7"


def test_temporary_password_leads_only_to_choosing_a_new_one(webgui: WebGui) -> None:
    """Signed in with a temporary password, every page leads to the password form until the
    user sets their own; then they sign in with it and use the interface as usual."""
    webgui.users.create(
        "imported", "admin", PASSWORD, actor="test", remote_address=None,
        must_change_password=True,
    )  # fmt: skip
    with webgui.client() as client:
        signed = sign_in(client, "imported")
        assert signed.headers["location"] == "/account/password"
        for path in ("/", "/users", "/queue"):
            page = client.get(path, headers=PAGE, follow_redirects=False)
            assert (page.status_code, page.headers["location"]) == (303, "/account/password")
        fragment = client.get("/", headers={"hx-request": "true"})
        assert fragment.status_code == 403
        assert fragment.headers["hx-redirect"] == "/account/password"
        form = client.get("/account/password", headers=PAGE)
        assert "temporary password" in form.text
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert token is not None
        differ = client.post(
            "/account/password",
            data={"password": NEW_PASSWORD, "password_again": "x", "csrf_token": token[1]},
        )
        assert differ.status_code == 400
        done = client.post(
            "/account/password",
            data={"password": NEW_PASSWORD, "password_again": NEW_PASSWORD,
                  "csrf_token": token[1]},
            follow_redirects=False,
        )  # fmt: skip
        assert done.headers["location"] == "/login?ended=1"
    assert not webgui.users.get("imported").must_change_password
    with webgui.client() as client:
        assert sign_in(client, "imported", PASSWORD).status_code == 401
        assert sign_in(client, "imported", NEW_PASSWORD).headers["location"] == "/"
        assert client.get("/users", headers=PAGE).status_code == 200


def test_a_user_without_a_temporary_password_is_not_held_back(webgui: WebGui) -> None:
    """An ordinary user goes where asked; the password page is there for them too."""
    with webgui.client() as client:
        assert sign_in(client, "viewer").headers["location"] == "/"
        assert client.get("/", headers=PAGE).status_code == 200
        form = client.get("/account/password", headers=PAGE)
        assert form.status_code == 200
        assert "temporary password" not in form.text


def test_admins_see_that_a_password_is_temporary(
    webgui: WebGui, signed_in: Callable[[str], httpx.Client]
) -> None:
    """The user's page says when their password is a temporary one."""
    webgui.users.create(
        "imported", "viewer", PASSWORD, actor="test", remote_address=None,
        must_change_password=True,
    )  # fmt: skip
    admin = signed_in("admin")
    assert "temporary: a new one is asked" in admin.get("/users/imported", headers=PAGE).text
    assert "temporary: a new one is asked" not in admin.get("/users/viewer", headers=PAGE).text
