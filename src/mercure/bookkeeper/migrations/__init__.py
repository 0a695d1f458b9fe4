"""Alembic migrations of the bookkeeper's schema, run at start-up (see ``database.migrate``)."""
