"""The people who may sign in to the web interface, in the bookkeeper's database.

Roles, from least to most: ``viewer`` (reads everything except secrets), ``operator`` (also
requeues, discards, pauses and resumes, forces study completion), ``admin`` (also users and the
configuration). Passwords are stored as argon2id hashes (argon2-cffi); there is no default user
and no default password: the first one is made with ``mercure user add NAME --role admin``.

Every change and every sign-in is written to the audit log through the same ingest path as the
``audit.*`` events of the services, with who did it (``actor``) and from where. A password never
appears in a log line, an event, an error or an answer.
"""

from __future__ import annotations

import re
import socket
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy.engine import Engine

from mercure.bookkeeper import tables
from mercure.bookkeeper.database import write_connection
from mercure.bookkeeper.ingest import ingest
from mercure.core.clock import utcnow
from mercure.core.errors import MercureError
from mercure.core.events import Event

ROLES: Final = ("viewer", "operator", "admin")
NAME_PATTERN: Final = re.compile(r"[A-Za-z0-9._@-]{1,64}")
MIN_PASSWORD: Final = 12
MAX_PASSWORD: Final = 1024


class UserError(MercureError):
    """A user change that cannot be made; ``status`` is the HTTP status the API answers."""

    status = 422


class UnknownUserError(UserError):
    """No user of that name."""

    status = 404


class UserConflictError(UserError):
    """The name is taken, or the change would leave no enabled admin."""

    status = 409


@dataclass(frozen=True)
class UserRecord:
    """A user as the API shows it: never the hash."""

    name: str
    role: str
    disabled: bool
    session_epoch: int
    created: datetime
    updated: datetime
    last_login: datetime | None
    password_changed: datetime
    must_change_password: bool = False
    """The user must choose a new password before doing anything else (web interface)."""

    def as_dict(self) -> dict[str, Any]:
        """The record for a JSON answer."""
        return asdict(self)


def check_name(name: str) -> str:
    """The name, or :class:`UserError` saying what is wrong with it."""
    if not NAME_PATTERN.fullmatch(name):
        raise UserError("a user name is 1 to 64 letters, digits, '.', '_', '@' or '-' (no spaces)")
    return name


def check_role(role: str) -> str:
    """The role, or :class:`UserError` listing the roles."""
    if role not in ROLES:
        raise UserError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    return role


def check_password(name: str, password: str) -> str:
    """The password, or :class:`UserError` saying which rule it breaks (never the password)."""
    if len(password) < MIN_PASSWORD:
        raise UserError(f"a password has at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise UserError(f"a password has at most {MAX_PASSWORD} characters")
    if name.lower() in password.lower():
        raise UserError("a password must not contain the user name")
    return password


class UserStore:
    """Users in the bookkeeper's database (SQLite or PostgreSQL, migrated to revision 0004+)."""

    def __init__(self, engine: Engine, hasher: PasswordHasher | None = None) -> None:
        self.engine = engine
        self.hasher = hasher or PasswordHasher()
        # Unknown names are checked against this, so that they cost what a known name costs.
        self._dummy_hash = self.hasher.hash("not a password of anyone: mercure-router")

    # -- reading -------------------------------------------------------------------------

    def list(self) -> list[UserRecord]:
        """Every user, by name."""
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(tables.users).order_by(tables.users.c.name_key))
            return [_record(row) for row in rows]

    def get(self, name: str) -> UserRecord:
        """One user by name (any case); :class:`UnknownUserError` if there is none."""
        row = self._row(name)
        if row is None:
            raise UnknownUserError(f"no user {name[:64]!r}")
        return _record(row)

    def _row(self, name: str) -> Any:
        with self.engine.connect() as connection:
            query = sa.select(tables.users).where(tables.users.c.name_key == name.lower())
            return connection.execute(query).first()

    # -- signing in ----------------------------------------------------------------------

    def verify(self, name: str, password: str, remote_address: str | None) -> UserRecord | None:
        """The user if ``password`` is theirs and they are enabled, else None.

        An unknown name, a wrong password and a disabled user take the same work and give the
        same answer. The attempt is audited (``login`` or ``login_failed``).
        """
        row = self._row(name) if NAME_PATTERN.fullmatch(name) else None
        password = password[:MAX_PASSWORD]
        try:
            self.hasher.verify(row.password_hash if row is not None else self._dummy_hash, password)
            matched = row is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            matched = False
        if row is None or not matched or row.disabled:
            self._audit("login_failed", name[:64], "sign-in refused", name[:64], remote_address)
            return None
        now = utcnow()
        values: dict[str, Any] = {"last_login": now}
        if self.hasher.check_needs_rehash(row.password_hash):
            values["password_hash"] = self.hasher.hash(password)
        self._update(row.name, values)
        self._audit("login", row.name, f"{row.name} signed in", row.name, remote_address)
        return self.get(row.name)

    # -- changes -------------------------------------------------------------------------

    def create(
        self,
        name: str,
        role: str,
        password: str,
        *,
        actor: str,
        remote_address: str | None,
        must_change_password: bool = False,
    ) -> UserRecord:
        """Add a user; :class:`UserConflictError` if the name (in any case) is taken.

        ``must_change_password``: the password is a temporary one the user must replace at the
        first sign-in.
        """
        check_name(name)
        check_role(role)
        check_password(name, password)
        now = utcnow()
        row = {
            "name": name,
            "name_key": name.lower(),
            "role": role,
            "password_hash": self.hasher.hash(password),
            "disabled": False,
            "session_epoch": 1,
            "created": now,
            "updated": now,
            "last_login": None,
            "password_changed": now,
            "must_change_password": must_change_password,
        }
        try:
            with write_connection(self.engine) as connection:
                connection.execute(sa.insert(tables.users), [row])
                connection.commit()
        except sa.exc.IntegrityError:
            raise UserConflictError(f"a user {name!r} exists already") from None
        self._audit("user.create", actor, f"user {name} added as {role}", name, remote_address)
        return self.get(name)

    def set_role(
        self, name: str, role: str, *, actor: str, remote_address: str | None
    ) -> UserRecord:
        """Change a user's role; their sessions end."""
        check_role(role)
        user = self.get(name)
        if user.role == "admin" and role != "admin":
            self._keep_an_admin(user, "take the admin role from")
        self._update(user.name, {"role": role}, end_sessions=True)
        self._audit(
            "user.role", actor, f"user {user.name} is now {role}", user.name, remote_address
        )
        return self.get(user.name)

    def set_disabled(
        self, name: str, disabled: bool, *, actor: str, remote_address: str | None
    ) -> UserRecord:
        """Disable (sessions end, no sign-in) or enable a user."""
        user = self.get(name)
        if disabled and user.role == "admin":
            self._keep_an_admin(user, "disable")
        self._update(user.name, {"disabled": disabled}, end_sessions=disabled)
        action = "user.disable" if disabled else "user.enable"
        state = "disabled" if disabled else "enabled"
        self._audit(action, actor, f"user {user.name} {state}", user.name, remote_address)
        return self.get(user.name)

    def set_password(
        self,
        name: str,
        password: str,
        *,
        actor: str,
        remote_address: str | None,
        must_change_password: bool = False,
    ) -> None:
        """Set a new password; the user's sessions end.

        ``must_change_password``: it is a temporary one (an admin's reset); otherwise the user's
        own, which ends the obligation to change it.
        """
        user = self.get(name)
        check_password(user.name, password)
        values = {
            "password_hash": self.hasher.hash(password),
            "password_changed": utcnow(),
            "must_change_password": must_change_password,
        }
        self._update(user.name, values, end_sessions=True)
        self._audit(
            "user.password", actor, f"password of {user.name} set", user.name, remote_address
        )

    def remove(self, name: str, *, actor: str, remote_address: str | None) -> None:
        """Delete a user (not the last enabled admin)."""
        user = self.get(name)
        if user.role == "admin":
            self._keep_an_admin(user, "remove")
        with write_connection(self.engine) as connection:
            connection.execute(sa.delete(tables.users).where(tables.users.c.name == user.name))
            connection.commit()
        self._audit("user.remove", actor, f"user {user.name} removed", user.name, remote_address)

    # -- helpers -------------------------------------------------------------------------

    def _keep_an_admin(self, user: UserRecord, what: str) -> None:
        others = [
            u for u in self.list() if u.role == "admin" and not u.disabled and u.name != user.name
        ]
        if not user.disabled and not others:
            raise UserConflictError(
                f"cannot {what} {user.name}: it is the last enabled admin "
                "(make another admin first)"
            )

    def _update(self, name: str, values: dict[str, Any], *, end_sessions: bool = False) -> None:
        users = tables.users
        changes: dict[str, Any] = {**values, "updated": utcnow()}
        if end_sessions:
            changes["session_epoch"] = users.c.session_epoch + 1
        with write_connection(self.engine) as connection:
            connection.execute(sa.update(users).where(users.c.name == name).values(**changes))
            connection.commit()

    def _audit(
        self, action: str, actor: str, message: str, name: str, remote_address: str | None
    ) -> None:
        event = Event(
            service="bookkeeper",
            instance=socket.gethostname(),
            kind=f"audit.{action}",
            severity="warning" if action == "login_failed" else "info",
            message=message,
            data={"user": actor, "object": name, "remote_address": remote_address},
        )
        ingest(self.engine, [event])


def _record(row: Any) -> UserRecord:
    return UserRecord(
        name=row.name,
        role=row.role,
        disabled=bool(row.disabled),
        session_epoch=int(row.session_epoch),
        created=row.created,
        updated=row.updated,
        last_login=row.last_login,
        password_changed=row.password_changed,
        must_change_password=bool(row.must_change_password),
    )
