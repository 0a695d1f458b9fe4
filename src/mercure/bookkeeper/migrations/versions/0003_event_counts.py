"""Hourly event counts for the statistics, filled from the events already stored.

Revision ID: 0003
Revises: 0002
Create Date: 2025-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create event_counts and count the stored events into it."""
    op.create_table(
        "event_counts",
        sa.Column("hour", TIMESTAMP, nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("severity", sa.String(), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("instances", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("hour", "kind", "severity", name="pk_event_counts"),
    )
    # One INSERT … SELECT … GROUP BY on the server; the hour is written in each dialect's
    # own timestamp form (SQLite: the text form SQLAlchemy stores).
    if op.get_bind().dialect.name == "postgresql":
        hour = "date_trunc('hour', time AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
        instances = (
            "CASE WHEN kind = 'series.received' AND json_typeof(data->'instances') = 'number' "
            "THEN (data->>'instances')::numeric::int END"
        )
    else:
        hour = "substr(time, 1, 13) || ':00:00.000000'"
        instances = (
            "CASE WHEN kind = 'series.received' THEN CAST(json_extract(data, '$.instances') "
            "AS INTEGER) END"
        )
    op.execute(
        "INSERT INTO event_counts (hour, kind, severity, events, instances) "
        f"SELECT {hour}, kind, severity, count(*), coalesce(sum({instances}), 0) "
        f"FROM events GROUP BY {hour}, kind, severity"
    )


def downgrade() -> None:
    """Drop the counts (the events stay)."""
    op.drop_table("event_counts")
