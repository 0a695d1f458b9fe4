"""The users page: admins list, add, re-role, disable, enable, set passwords and remove users
through the bookkeeper (audited with the admin and their address); refusals are messages;
the changed user's sessions end at once; nobody locks themselves out."""

from __future__ import annotations

import html
import re
from collections.abc import Callable

import httpx
import pytest
from markupsafe import escape
from webgui_harness import PASSWORD, XSS_PAYLOADS, WebGui, assert_inert, csrf_of, sign_in

from mercure.bookkeeper import tables
from mercure.bookkeeper.users import UnknownUserError

PAGE = {"accept": "text/html"}
NEW_PASSWORD = "a much better passphrase 2026"


def post(client: httpx.Client, path: str, **data: str) -> httpx.Response:
    """Send a form of the page as the browser does (with the session's CSRF token)."""
    return client.post(
        path, data={"csrf_token": csrf_of(client), **data}, headers=PAGE, follow_redirects=False
    )


def audit_rows(webgui: WebGui, action: str) -> list[dict[str, object]]:
    """The bookkeeper's audit rows of one action."""
    with webgui.engine.connect() as connection:
        query = tables.audit.select().where(tables.audit.c.action == action)
        return [dict(row) for row in connection.execute(query).mappings()]


def alert(page: str) -> str:
    """The page's error message, as text."""
    match = re.search(r'class="banner bad" role="alert">(.*?)</p>', page, re.S)
    assert match, "no error message on the page"
    return html.unescape(match.group(1))


def signed_in_ok(client: httpx.Client) -> bool:
    """Whether the client's session still works (a page, not the sign-in redirect)."""
    return client.get("/", headers=PAGE, follow_redirects=False).status_code == 200


def test_lists_every_user_with_role_state_and_times(webgui: WebGui, admin: httpx.Client) -> None:
    """Name, role, state, created, last sign-in, password changed; the admin's own row says so."""
    webgui.users.set_disabled("viewer", True, actor="test", remote_address=None)
    page = admin.get("/users", headers=PAGE)
    assert page.status_code == 200
    body = re.search(r"<tbody>(.*?)</tbody>", page.text, re.S)
    assert body is not None
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", body.group(1), re.S)
    text = [" ".join(html.unescape(re.sub(r"<[^>]+>", " ", row)).split()) for row in rows]
    assert [t.split()[0] for t in text] == ["admin", "operator", "viewer"]
    assert text[0].startswith("admin (you) admin enabled")
    assert text[2].startswith("viewer viewer disabled")
    assert "never" in text[1]  # the operator never signed in
    assert text[0].count("-") >= 6  # created, last sign-in, password changed are dates


def test_adding_a_user_who_can_then_sign_in(webgui: WebGui, admin: httpx.Client) -> None:
    """The new user exists with its role, the audit names the admin and address, and they
    can sign in with the initial password."""
    answer = post(
        admin,
        "/users",
        name="night.shift",
        role="operator",
        password=PASSWORD,
        password_again=PASSWORD,
    )
    assert answer.status_code == 303
    page = admin.get(answer.headers["location"], headers=PAGE).text
    assert "night.shift was added. They can sign in now." in page
    assert webgui.users.get("night.shift").role == "operator"
    [row] = [r for r in audit_rows(webgui, "user.create") if r["object"] == "night.shift"]
    assert row["user"] == "admin" and row["remote_address"] == "127.0.0.1"
    assert PASSWORD not in str(row)
    with webgui.client() as browser:
        assert sign_in(browser, "night.shift").status_code == 303


@pytest.mark.parametrize(
    ("fields", "status", "message"),
    [
        ({"name": "Viewer"}, 409, "Could not add 'Viewer': a user 'Viewer' exists already."),
        (
            {"password": "short", "password_again": "short"},
            422,
            "Could not add 'newbie': a password has at least 12 characters.",
        ),
        (
            {"password": "newbie-1234567", "password_again": "newbie-1234567"},
            422,
            "Could not add 'newbie': a password must not contain the user name.",
        ),
        ({"password_again": "something else entirely"}, 400, "The two passwords differ"),
        ({"name": "with space"}, 422, "a user name is 1 to 64 letters"),
        ({"name": "x" * 65}, 400, "A user name is 1 to 64 letters"),
        ({"name": ""}, 400, "Enter a user name."),
        ({"role": "root"}, 400, "Choose a role: viewer, operator, admin."),
    ],
)
def test_refused_additions_say_why(
    webgui: WebGui, admin: httpx.Client, fields: dict[str, str], status: int, message: str
) -> None:
    """Duplicate names, weak passwords, typos: a message on the page, the form kept (without
    the passwords), nothing added."""
    before = [u.name for u in webgui.users.list()]
    data = {"name": "newbie", "role": "operator", "password": PASSWORD, "password_again": PASSWORD}
    answer = post(admin, "/users", **{**data, **fields})
    assert answer.status_code == status
    assert message in alert(answer.text)
    assert [u.name for u in webgui.users.list()] == before
    assert 'value="operator" selected' in answer.text or fields.get("role") == "root"
    for secret in (data["password"], fields.get("password", "-"), fields.get("password_again")):
        if secret and len(secret) > 4:
            assert f'value="{secret}"' not in answer.text


def test_changing_a_role_ends_that_users_sessions(
    webgui: WebGui, admin: httpx.Client, signed_in: Callable[[str], httpx.Client]
) -> None:
    """The operator becomes a viewer: audited, and their open browser is signed out at once."""
    operator = signed_in("operator")
    answer = post(admin, "/users/operator/role", role="viewer")
    assert answer.status_code == 303
    assert "The role of operator was changed" in admin.get(answer.headers["location"]).text
    assert webgui.users.get("operator").role == "viewer"
    [row] = audit_rows(webgui, "user.role")
    assert (row["user"], row["object"], row["remote_address"]) == (
        "admin",
        "operator",
        "127.0.0.1",
    )
    assert not signed_in_ok(operator)
    same = post(admin, "/users/operator/role", role="viewer")
    assert same.status_code == 400
    assert "operator is viewer already; nothing was changed." in alert(same.text)


def test_disabling_and_enabling(
    webgui: WebGui, admin: httpx.Client, signed_in: Callable[[str], httpx.Client]
) -> None:
    """Disabled: sessions end and sign-in fails; enabled: sign-in works again; both audited."""
    viewer = signed_in("viewer")
    answer = post(admin, "/users/viewer/disable")
    assert answer.status_code == 303
    assert webgui.users.get("viewer").disabled
    assert not signed_in_ok(viewer)
    with webgui.client() as browser:
        assert sign_in(browser, "viewer").status_code == 401
    page = admin.get(answer.headers["location"], headers=PAGE).text
    assert "viewer was disabled: they cannot sign in" in page and "Enable viewer" in page

    assert post(admin, "/users/viewer/enable").status_code == 303
    assert not webgui.users.get("viewer").disabled
    with webgui.client() as browser:
        assert sign_in(browser, "viewer").status_code == 303
    assert [r["user"] for r in audit_rows(webgui, "user.disable")] == ["admin"]
    assert [r["user"] for r in audit_rows(webgui, "user.enable")] == ["admin"]


def test_resetting_a_password(
    webgui: WebGui, admin: httpx.Client, signed_in: Callable[[str], httpx.Client]
) -> None:
    """The new password works, the old one no longer, the user's sessions end; audited."""
    operator = signed_in("operator")
    mismatch = post(
        admin, "/users/operator/password", password=NEW_PASSWORD, password_again="other"
    )
    assert mismatch.status_code == 400
    assert "The two passwords differ" in alert(mismatch.text)
    weak = post(admin, "/users/operator/password", password="abc", password_again="abc")
    assert weak.status_code == 422
    assert "Could not set the password of operator: a password has at least 12" in alert(weak.text)
    assert signed_in_ok(operator)

    answer = post(
        admin, "/users/operator/password", password=NEW_PASSWORD, password_again=NEW_PASSWORD
    )
    assert answer.status_code == 303
    assert "The password of operator was set" in admin.get(answer.headers["location"]).text
    assert not signed_in_ok(operator)
    with webgui.client() as browser:
        assert sign_in(browser, "operator").status_code == 401
        assert sign_in(browser, "operator", NEW_PASSWORD).status_code == 303
    [row] = audit_rows(webgui, "user.password")
    assert row["user"] == "admin" and row["object"] == "operator"


def test_own_password_signs_the_admin_in_again(webgui: WebGui, admin: httpx.Client) -> None:
    """An admin may set their own password; this session ends too, the new password works."""
    answer = post(
        admin, "/users/admin/password", password=NEW_PASSWORD, password_again=NEW_PASSWORD
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?ended=1"
    assert not signed_in_ok(admin)
    assert sign_in(admin, "admin", NEW_PASSWORD).status_code == 303


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("/users/admin/role", {"role": "viewer"}),
        ("/users/ADMIN/disable", {}),
        ("/users/admin/remove", {"confirm": "admin"}),
    ],
)
def test_an_admin_cannot_lock_themselves_out(
    webgui: WebGui, admin: httpx.Client, path: str, data: dict[str, str]
) -> None:
    """Own role, disabling and removing oneself are refused with the reason, even with a
    second admin there; the session goes on."""
    webgui.add_user("admin2", "admin")
    answer = post(admin, path, **data)
    assert answer.status_code == 409
    assert "your own account here" in alert(answer.text)
    user = webgui.users.get("admin")
    assert user.role == "admin" and not user.disabled
    assert signed_in_ok(admin)
    page = admin.get("/users/admin", headers=PAGE).text
    assert "Change role" not in page and "Disable admin" not in page and "Remove admin" not in page


def test_the_last_enabled_admin_is_kept(webgui: WebGui, admin: httpx.Client) -> None:
    """Disabled on the server a moment ago (within the session's re-check time), the admin
    tries to disable the only other admin: the bookkeeper refuses, the page says why."""
    webgui.add_user("admin2", "admin")
    webgui.users.set_disabled("admin", True, actor="cli:root", remote_address=None)
    answer = post(admin, "/users/admin2/disable")
    assert answer.status_code == 409
    assert "cannot disable admin2: it is the last enabled admin" in alert(answer.text)
    assert not webgui.users.get("admin2").disabled


def test_removing_needs_the_confirmation_step(
    webgui: WebGui, admin: httpx.Client, signed_in: Callable[[str], httpx.Client]
) -> None:
    """Remove leads to a confirmation page; a post without it is refused; confirmed, the
    user is gone, their sessions end, the removal is audited."""
    viewer = signed_in("viewer")
    page = admin.get("/users/viewer", headers=PAGE).text
    link = re.search(r'<a href="([^"]+)" role="button" class="danger">Remove viewer', page)
    assert link is not None and link.group(1) == "/users/viewer/remove"
    confirm = admin.get(link.group(1), headers=PAGE)
    assert confirm.status_code == 200
    assert "Remove user viewer?" in confirm.text
    assert 'name="confirm" value="viewer"' in confirm.text
    assert 'href="/users/viewer"' in confirm.text  # cancel

    unconfirmed = post(admin, "/users/viewer/remove")
    assert unconfirmed.status_code == 400
    assert "needs the confirmation step" in alert(unconfirmed.text)
    assert webgui.users.get("viewer").name == "viewer"
    assert signed_in_ok(viewer)

    answer = post(admin, "/users/viewer/remove", confirm="viewer")
    assert answer.status_code == 303
    assert "viewer was removed." in admin.get(answer.headers["location"]).text
    with pytest.raises(UnknownUserError):
        webgui.users.get("viewer")
    assert not signed_in_ok(viewer)
    [row] = audit_rows(webgui, "user.remove")
    assert (row["user"], row["object"], row["remote_address"]) == ("admin", "viewer", "127.0.0.1")
    gone = admin.get("/users/viewer", headers=PAGE)
    assert gone.status_code == 404 and "There is no user 'viewer'" in alert(gone.text)


def test_viewers_and_operators_may_not_manage_users(
    webgui: WebGui, viewer: httpx.Client, operator: httpx.Client
) -> None:
    """403 on every users route, reading and changing; nothing changes; no menu entry."""
    for client in (viewer, operator):
        for path in ("/users", "/users/viewer", "/users/viewer/remove"):
            answer = client.get(path, headers=PAGE)
            assert answer.status_code == 403, path
            assert "This needs the admin role" in answer.text
        changes = [
            ("/users", {"name": "intruder", "role": "admin", "password": PASSWORD * 2}),
            ("/users/admin/role", {"role": "viewer"}),
            ("/users/admin/disable", {}),
            ("/users/admin/password", {"password": NEW_PASSWORD, "password_again": NEW_PASSWORD}),
            ("/users/admin/remove", {"confirm": "admin"}),
        ]
        for path, data in changes:
            assert post(client, path, **data).status_code == 403, path
        assert ">Users</a>" not in client.get("/", headers=PAGE).text
    assert [u.name for u in webgui.users.list()] == ["admin", "operator", "viewer"]
    admin = webgui.users.get("admin")
    assert admin.role == "admin" and not admin.disabled
    assert audit_rows(webgui, "user.role") == []


def test_bookkeeper_down_is_a_message_not_a_failure(webgui: WebGui, admin: httpx.Client) -> None:
    """Without the bookkeeper the list says so and a change is refused with the reason."""
    webgui.bookkeeper_down = True
    page = admin.get("/users", headers=PAGE)
    assert page.status_code == 200
    assert "The users are kept by the bookkeeper, which does not answer now" in page.text
    answer = post(
        admin, "/users", name="late", role="viewer", password=PASSWORD, password_again=PASSWORD
    )
    assert answer.status_code == 503
    assert "Could not add 'late'" in alert(answer.text)
    assert "The change may not have been made" in alert(answer.text)
    webgui.bookkeeper_down = False
    with pytest.raises(UnknownUserError):
        webgui.users.get("late")


def test_hostile_text_on_the_users_pages_stays_text(webgui: WebGui, admin: httpx.Client) -> None:
    """Markup in a refused name, in a user path and in the success message is text."""
    for payload in XSS_PAYLOADS:
        answers = [
            post(
                admin,
                "/users",
                name=payload,
                role="viewer",
                password=PASSWORD,
                password_again=PASSWORD,
            ),
            admin.get(f"/users/{payload}", headers=PAGE),
            admin.get(f"/users/{payload}/remove", headers=PAGE),
            post(admin, f"/users/{payload}/disable"),
            admin.get("/users", params={"done": "added", "name": payload}, headers=PAGE),
            admin.get("/users/viewer", params={"done": "role", "name": payload}, headers=PAGE),
        ]
        for answer in answers:
            assert answer.status_code < 500
            assert_inert(answer.text)
            assert payload not in answer.text
        assert str(escape(payload)) in answers[0].text  # the refusal names it, as text
