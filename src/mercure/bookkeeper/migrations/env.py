"""Alembic environment: runs on the connection that :func:`database.migrate` hands over."""

from __future__ import annotations

from alembic import context

from mercure.bookkeeper.tables import metadata

MIGRATION_LOCK = 0x6D65726375726531
"""PostgreSQL advisory lock key: two bookkeepers starting at once migrate one after the other."""

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "the bookkeeper's migrations run from mercure (database.migrate), not from the alembic CLI"
    )
if connection.dialect.name == "postgresql":
    connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
