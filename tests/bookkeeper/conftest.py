"""Fixtures of the bookkeeper tests: every database test runs on SQLite and on PostgreSQL.

PostgreSQL is a real server on 127.0.0.1:5432 (trust authentication): the session creates a
database with a unique name and drops it at the end; each test gets its own schema in it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from bookkeeper_harness import TOKEN, RunningApp, serve_app
from sqlalchemy.engine import Engine

from mercure.bookkeeper.app import create_app
from mercure.bookkeeper.database import create_database_engine, migrate
from mercure.testing.wait import wait_until

POSTGRES_HOST = "127.0.0.1"
POSTGRES_PORT = 5432
POSTGRES_USERS = ("postgres", "root")


def _admin_conninfo(user: str) -> str:
    return f"host={POSTGRES_HOST} port={POSTGRES_PORT} user={user} dbname=postgres"


def _find_admin() -> str | None:
    for user in POSTGRES_USERS:
        try:
            with psycopg.connect(_admin_conninfo(user), connect_timeout=3):
                return user
        except psycopg.OperationalError:
            continue
    return None


def _start_postgres() -> None:
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if not versions:
        return
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"],
        check=False,
        capture_output=True,
        timeout=60,
    )


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[tuple[str, str]]:
    """(user, database): a database of the real PostgreSQL server for this test session."""
    user = _find_admin()
    if user is None:
        _start_postgres()
        try:
            user = wait_until(_find_admin, timeout=30, interval=0.5)
        except AssertionError:
            pytest.fail(
                f"PostgreSQL is not reachable on {POSTGRES_HOST}:{POSTGRES_PORT} as any of "
                f"{POSTGRES_USERS}, and `pg_ctlcluster … main start` did not start it: the "
                "bookkeeper tests need the real server (apt-get install postgresql)"
            )
    name = f"mercure_test_{secrets.token_hex(6)}"
    with psycopg.connect(_admin_conninfo(user), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield user, name
    with psycopg.connect(_admin_conninfo(user), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _postgres_url(user: str, database: str, schema: str) -> str:
    return (
        f"postgresql+psycopg://{user}@{POSTGRES_HOST}:{POSTGRES_PORT}/{database}"
        f"?options=-csearch_path%3D{schema}"
    )


BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.peers)]


@contextlib.contextmanager
def _empty_database(kind: str, folder: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'bookkeeper.sqlite3'}"
        return
    user, database = request.getfixturevalue("postgres_database")
    schema = f"t_{secrets.token_hex(6)}"
    conninfo = f"host={POSTGRES_HOST} port={POSTGRES_PORT} user={user} dbname={database}"
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    try:
        yield _postgres_url(user, database, schema)
    finally:
        with psycopg.connect(conninfo, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a SQLite file, or a fresh schema in the session's PostgreSQL database."""
    with _empty_database(request.param, tmp_path, request) as url:
        yield url


@pytest.fixture(scope="module", params=BACKENDS)
def module_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Like ``database_url``, shared by the tests of one module (for read-only tests)."""
    with _empty_database(request.param, tmp_path_factory.mktemp("db"), request) as url:
        yield url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on a migrated, empty database."""
    engine = create_database_engine(database_url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def bookkeeper(engine: Engine) -> Iterator[RunningApp]:
    """The bookkeeper app with token :data:`TOKEN`, served over HTTP on 127.0.0.1."""
    yield from serve_app(create_app(engine, api_key=TOKEN))
