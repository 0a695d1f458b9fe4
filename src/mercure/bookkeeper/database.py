"""Opening the bookkeeper's database: SQLite in the data folder, or PostgreSQL by URL.

SQLite runs in WAL mode (readers never wait for the writer) with a busy timeout, and
``synchronous=FULL`` because an acknowledged batch lets the sender delete its outbox segment:
a commit must survive a power cut, not only a crash. Write transactions start with
``BEGIN IMMEDIATE`` so that two writers queue on the busy timeout instead of failing when one
upgrades a read lock. PostgreSQL is reached through psycopg 3 (``postgresql+psycopg://``).
The schema is brought to the newest revision with Alembic at start-up.
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

from mercure.core.errors import PermanentError, TransientError

log = logging.getLogger(__name__)

SQLITE_FILE = Path("bookkeeper") / "bookkeeper.sqlite3"
"""Where the default SQLite database lives, relative to the data folder."""

BUSY_TIMEOUT_MS = 30_000
INSERT_PAGE_ROWS = 25
_IMMEDIATE = "mercure_immediate"
_VERSION_TABLE = "alembic_version"

# Alembic announces each of its plug-ins at INFO when imported; that is noise in service logs.
logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


class DatabaseError(TransientError):
    """The database could not be reached or answered with an error; a retry may succeed."""


class DatabaseUrlError(PermanentError):
    """``bookkeeper.database_url`` names a database this bookkeeper cannot use."""


def database_url(configured: str | None, data_dir: Path) -> str:
    """The SQLAlchemy URL to use: the configured one, else SQLite in ``data_dir``.

    A bare ``postgresql://`` URL is given the psycopg 3 driver; other drivers are refused.
    """
    if not configured:
        path = (data_dir / SQLITE_FILE).absolute()
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"
    try:
        url = sa.make_url(configured)
    except sa.exc.ArgumentError as exc:
        raise DatabaseUrlError(f"bookkeeper.database_url is not a database URL: {exc}") from None
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    if url.drivername not in ("postgresql+psycopg", "sqlite", "sqlite+pysqlite"):
        raise DatabaseUrlError(
            f"bookkeeper.database_url: unsupported driver {url.drivername!r}; "
            "use postgresql+psycopg://… or sqlite:///…"
        )
    return url.render_as_string(hide_password=False)


def create_database_engine(url: str) -> Engine:
    """An engine with this project's connection settings for SQLite or PostgreSQL."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})
        _configure_sqlite(engine)
        return engine
    # Small multi-row INSERT pages keep each statement short enough for psycopg's query cache;
    # one 500-row statement costs more in client-side parsing than 20 cached round trips.
    return sa.create_engine(
        url,
        pool_pre_ping=True,
        pool_size=8,
        max_overflow=8,
        insertmanyvalues_page_size=INSERT_PAGE_ROWS,
    )


def _configure_sqlite(engine: Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get(_IMMEDIATE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def write_connection(engine: Engine) -> Connection:
    """A connection whose transactions take the write lock at once (SQLite) when begun."""
    return engine.connect().execution_options(**{_IMMEDIATE: True})


def _alembic_config(connection: Connection) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", "mercure.bookkeeper:migrations")
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest schema revision this build ships."""
    script = ScriptDirectory(str(resources.files("mercure.bookkeeper") / "migrations"))
    head = script.get_current_head()
    assert head is not None, "the bookkeeper ships no migrations"
    return head


def current_revision(engine: Engine) -> str | None:
    """The schema revision of the database (None for an empty database)."""
    with engine.connect() as connection:
        if not sa.inspect(connection).has_table(_VERSION_TABLE):
            return None
        revision: str | None = connection.execute(
            sa.text(f"SELECT version_num FROM {_VERSION_TABLE}")
        ).scalar()
        return revision


def migrate(engine: Engine, revision: str = "head") -> None:
    """Upgrade the schema to ``revision`` (the newest by default); a no-op when it is there."""
    before = current_revision(engine)
    with write_connection(engine) as connection, connection.begin():
        command.upgrade(_alembic_config(connection), revision)
    after = current_revision(engine)
    if before != after:
        log.info("bookkeeper database schema upgraded from %s to %s", before or "empty", after)


def optimize(engine: Engine) -> None:
    """Refresh the query planner's statistics where the database does not do it itself.

    PostgreSQL's autovacuum analyzes on its own; SQLite needs ``PRAGMA optimize`` now and then
    (the service runs it after each retention pass).
    """
    if engine.dialect.name != "sqlite":
        return
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA optimize")
    except sa.exc.DBAPIError as exc:
        raise DatabaseError(f"cannot refresh the SQLite planner statistics: {exc.orig}") from exc


def describe(engine: Engine) -> str:
    """Where the database is, for logs: the URL without its password."""
    return engine.url.render_as_string(hide_password=True)
