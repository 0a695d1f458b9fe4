"""Users of the web interface in the bookkeeper's database (SQLite and PostgreSQL)."""

from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from sqlalchemy.engine import Engine

from mercure.bookkeeper import tables
from mercure.bookkeeper.users import (
    UnknownUserError,
    UserConflictError,
    UserError,
    UserStore,
)

PASSWORD = "correct horse battery"
CHEAP = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
"""Fast hashes for these tests; the product uses argon2-cffi's defaults."""


@pytest.fixture
def store(engine: Engine) -> UserStore:
    return UserStore(engine, CHEAP)


def _audit(engine: Engine) -> list[tuple[str, str, str | None, str | None]]:
    with engine.connect() as connection:
        rows = connection.execute(sa.select(tables.audit).order_by(tables.audit.c.time))
        return [(r.action, r.user, r.object, r.remote_address) for r in rows]


def test_a_user_signs_in_with_the_right_password_only(store: UserStore, engine: Engine) -> None:
    created = store.create("Alice", "admin", PASSWORD, actor="cli:root", remote_address=None)
    assert (created.name, created.role, created.disabled) == ("Alice", "admin", False)
    assert created.last_login is None

    assert store.verify("alice", "wrong password here", "10.0.0.9") is None
    assert store.verify("nobody", PASSWORD, "10.0.0.9") is None
    signed_in = store.verify("alice", PASSWORD, "10.0.0.9")
    assert signed_in is not None and signed_in.last_login is not None
    assert _audit(engine) == [
        ("user.create", "cli:root", "Alice", None),
        ("login_failed", "alice", "alice", "10.0.0.9"),
        ("login_failed", "nobody", "nobody", "10.0.0.9"),
        ("login", "Alice", "Alice", "10.0.0.9"),
    ]


def test_the_hash_is_argon2id_and_never_in_a_record(store: UserStore, engine: Engine) -> None:
    record = store.create("bob", "viewer", PASSWORD, actor="t", remote_address=None)
    with engine.connect() as connection:
        stored = connection.execute(sa.select(tables.users.c.password_hash)).scalar_one()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert "password_hash" not in record.as_dict()


class RecordingHasher(PasswordHasher):
    """The cheap hasher, noting which hashes it checked."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=64, parallelism=1)
        self.checked: list[str] = []

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        self.checked.append(str(hash))
        return super().verify(hash, password)


def test_unknown_names_cost_a_hash_check_too(engine: Engine) -> None:
    hasher = RecordingHasher()
    store = UserStore(engine, hasher)
    assert store.verify("ghost", PASSWORD, None) is None
    assert store.verify("not a valid name", PASSWORD, None) is None
    assert hasher.checked == [store._dummy_hash, store._dummy_hash]


@pytest.mark.parametrize(
    ("name", "role", "password", "message"),
    [
        ("has space", "viewer", PASSWORD, "1 to 64 letters"),
        ("x" * 65, "viewer", PASSWORD, "1 to 64 letters"),
        ("carol", "root", PASSWORD, "unknown role 'root'"),
        ("carol", "viewer", "short", "at least 12"),
        ("carol", "viewer", "my name is carol!", "must not contain the user name"),
        ("carol", "viewer", "x" * 1025, "at most 1024"),
    ],
)
def test_bad_users_are_refused_with_the_reason(
    store: UserStore, name: str, role: str, password: str, message: str
) -> None:
    with pytest.raises(UserError, match=message):
        store.create(name, role, password, actor="t", remote_address=None)


def test_names_are_unique_whatever_their_case(store: UserStore) -> None:
    store.create("Dave", "viewer", PASSWORD, actor="t", remote_address=None)
    with pytest.raises(UserConflictError, match="exists already"):
        store.create("dave", "viewer", PASSWORD, actor="t", remote_address=None)


def test_changes_that_must_end_sessions_raise_the_epoch(store: UserStore) -> None:
    store.create("root", "admin", PASSWORD, actor="t", remote_address=None)
    store.create("erin", "viewer", PASSWORD, actor="t", remote_address=None)
    epoch = store.get("erin").session_epoch
    assert (
        store.set_role("erin", "operator", actor="root", remote_address=None).session_epoch
        == epoch + 1
    )
    store.set_password("erin", "another long secret", actor="root", remote_address=None)
    assert store.get("erin").session_epoch == epoch + 2
    assert store.verify("erin", PASSWORD, None) is None
    assert store.verify("erin", "another long secret", None) is not None
    disabled = store.set_disabled("erin", True, actor="root", remote_address=None)
    assert disabled.disabled and disabled.session_epoch == epoch + 3
    assert store.verify("erin", "another long secret", None) is None
    assert not store.set_disabled("erin", False, actor="root", remote_address=None).disabled
    store.remove("erin", actor="root", remote_address=None)
    with pytest.raises(UnknownUserError):
        store.get("erin")


def test_the_last_enabled_admin_stays(store: UserStore) -> None:
    store.create("first", "admin", PASSWORD, actor="t", remote_address=None)
    for change in (
        lambda: store.remove("first", actor="t", remote_address=None),
        lambda: store.set_disabled("first", True, actor="t", remote_address=None),
        lambda: store.set_role("first", "viewer", actor="t", remote_address=None),
    ):
        with pytest.raises(UserConflictError, match="last enabled admin"):
            change()
    store.create("second", "admin", PASSWORD, actor="t", remote_address=None)
    store.set_role("first", "viewer", actor="t", remote_address=None)
    assert [(u.name, u.role) for u in store.list()] == [("first", "viewer"), ("second", "admin")]


def test_no_password_in_logs_or_the_audit_log(
    store: UserStore, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    store.create("frank", "viewer", PASSWORD, actor="t", remote_address=None)
    store.verify("frank", PASSWORD, None)
    store.verify("frank", "not the password", None)
    with engine.connect() as connection:
        stored = " ".join(str(row) for row in connection.execute(sa.select(tables.audit)))
        stored += " ".join(str(row) for row in connection.execute(sa.select(tables.events)))
    for text in (caplog.text, stored):
        assert PASSWORD not in text and "not the password" not in text


def test_a_temporary_password_must_be_replaced_by_the_users_own(store: UserStore) -> None:
    """must_change_password holds until a password is set without it (the user's own)."""
    created = store.create(
        "imported", "viewer", PASSWORD, actor="cli:root", remote_address=None,
        must_change_password=True,
    )  # fmt: skip
    assert created.must_change_password
    assert store.verify("imported", PASSWORD, None) is not None
    assert store.get("imported").must_change_password
    store.set_password(
        "imported", "temporary again 1", actor="cli:root", remote_address=None,
        must_change_password=True,
    )  # fmt: skip
    assert store.get("imported").must_change_password
    store.set_password("imported", "my own password 2", actor="imported", remote_address=None)
    assert not store.get("imported").must_change_password
    assert not store.create("other", "viewer", PASSWORD, actor="t", remote_address=None)\
        .must_change_password  # fmt: skip
