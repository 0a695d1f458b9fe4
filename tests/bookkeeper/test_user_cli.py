"""``mercure user``: the first admin and every change from the command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from mercure.bookkeeper import tables
from mercure.bookkeeper.database import create_database_engine, database_url


@pytest.fixture
def site(tmp_path: Path) -> Path:
    (tmp_path / "mercure.yaml").write_text("data_dir: data\n")
    return tmp_path / "mercure.yaml"


def mercure(config: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mercure", "--config", str(config), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_first_admin_then_changes_all_audited_and_no_password_printed(site: Path) -> None:
    secret = "a long first secret"
    empty = mercure(site, "user", "list")
    assert empty.returncode == 0 and "mercure user add NAME --role admin" in empty.stdout
    added = mercure(
        site, "user", "add", "root", "--role", "admin", "--password-stdin", stdin=secret
    )
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == "user root added as admin"
    assert (
        mercure(
            site, "user", "add", "Eve", "--role", "viewer", "--password-stdin", stdin=secret
        ).returncode
        == 0
    )
    assert mercure(site, "user", "role", "eve", "operator").returncode == 0
    assert mercure(site, "user", "disable", "eve").returncode == 0
    assert (
        mercure(
            site, "user", "passwd", "eve", "--password-stdin", stdin="another long one"
        ).returncode
        == 0
    )
    listing = mercure(site, "user", "list").stdout.splitlines()
    assert listing[1].split()[:3] == ["Eve", "operator", "disabled"]
    assert listing[2].split()[:4] == ["root", "admin", "enabled", "never"]
    assert mercure(site, "user", "remove", "eve").returncode == 0

    engine = create_database_engine(database_url(None, site.parent / "data"))
    with engine.connect() as connection:
        audit = [
            (r.action, r.user.startswith("cli:"), r.object)
            for r in connection.execute(sa.select(tables.audit).order_by(tables.audit.c.time))
        ]
    engine.dispose()
    assert audit == [
        ("user.create", True, "root"),
        ("user.create", True, "Eve"),
        ("user.role", True, "Eve"),
        ("user.disable", True, "Eve"),
        ("user.password", True, "Eve"),
        ("user.remove", True, "Eve"),
    ]


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (("add", "x", "--role", "admin", "--password-stdin"), "short", "at least 12 characters"),
        (("passwd", "nobody", "--password-stdin"), "a long enough one", "no user 'nobody'"),
        (("remove", "root"), None, "last enabled admin"),
        (("add", "y", "--role", "viewer"), "", "use --password-stdin"),
    ],
)
def test_clear_errors(site: Path, args: tuple[str, ...], stdin: str | None, message: str) -> None:
    mercure(
        site,
        "user",
        "add",
        "root",
        "--role",
        "admin",
        "--password-stdin",
        stdin="a long first secret",
    )
    result = mercure(site, "user", *args, stdin=stdin)
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: ") and message in result.stderr


def test_a_user_added_with_a_temporary_password_must_change_it(site: Path) -> None:
    """--must-change-password marks the user; their own new password clears the mark."""
    added = mercure(
        site, "user", "add", "tech", "--role", "viewer", "--must-change-password",
        "--password-stdin", stdin="a temporary password",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert "a new password is asked at the first sign-in" in added.stdout
    engine = create_database_engine(database_url(None, site.parent / "data"))
    try:
        with engine.connect() as connection:
            flag = connection.execute(sa.select(tables.users.c.must_change_password)).scalar()
        assert flag is True
    finally:
        engine.dispose()
