"""mercure's ``users.json`` as web-interface users.

mercure keeps its users in ``users.json``: ``{"name": {"password": "<sha512-crypt hash>",
"is_admin": "True" | "False", "change_password": "True" | "False", "email": ...,
"permissions": ...}}`` (flags as strings). The hashes are not carried: mercure-router stores
argon2id hashes and never imports a password. Each user becomes a user of the same name with
the role ``admin`` (mercure admins) or ``viewer`` (the others: least privilege; raise to
``operator`` those who act on queues).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mercure.bookkeeper.users import NAME_PATTERN
from mercure.migrate.report import ImportReport
from mercure.migrate.values import MercureImportError, as_mercure_bool

_KNOWN_FIELDS = {"password", "is_admin", "change_password", "email", "permissions"}


@dataclass(frozen=True)
class ImportedUser:
    """A user to create: name and role (never a password)."""

    name: str
    role: str

    def command(self, config: str | None = None) -> str:
        """The command that creates the user (it asks for the temporary password)."""
        where = f" --config {shlex.quote(config)}" if config else ""
        return (
            f"mercure user add {shlex.quote(self.name)} --role {self.role} "
            f"--must-change-password{where}"
        )


def import_mercure_users(source: Mapping[str, Any], report: ImportReport) -> list[ImportedUser]:
    """The users of a parsed ``users.json``; every key of it goes into ``report``."""
    if not isinstance(source, Mapping):
        raise MercureImportError("users.json must hold a JSON object of users by name")
    users: list[ImportedUser] = []
    for name, fields in source.items():
        prefix = f"users.{name}"
        if not isinstance(fields, Mapping):
            report.dropped(prefix, "not an object")
            continue
        if not NAME_PATTERN.fullmatch(name):
            report.dropped(
                prefix,
                "not a valid user name here (1 to 64 letters, digits, '.', '_', '@' or '-'): "
                "add this user under another name",
            )
            continue
        admin = as_mercure_bool(fields.get("is_admin", False))
        role = "admin" if admin else "viewer"
        users.append(ImportedUser(name, role))
        for field in fields:
            where = f"{prefix}.{field}"
            if field == "password":
                report.dropped(
                    where,
                    "password hashes are not carried (mercure's are sha512-crypt, ours argon2id):"
                    " each user gets a new password",
                )
            elif field == "is_admin":
                note = "" if admin else "not admin: viewer (raise to operator for queue actions)"
                report.mapped(where, f"user {name} role {role}", note)
            elif field == "change_password":
                report.mapped(where, f"user {name}", "every imported user sets a new password")
            elif field in ("email", "permissions"):
                report.dropped(where, "users have no e-mail address or per-user permissions here")
            else:
                report.dropped(where, "not a field of mercure's users.json")
    return users
