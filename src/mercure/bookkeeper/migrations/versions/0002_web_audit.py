"""The web audit log: who did what in the web interface.

Revision ID: 0002
Revises: 0001
Create Date: 2025-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Add the audit table and fill it from audit events already stored."""
    audit = op.create_table(
        "audit",
        sa.Column("event_id", sa.String(), nullable=False),
        sa.Column("time", TIMESTAMP, nullable=False),
        sa.Column("user", sa.String(), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("object", sa.String(), nullable=True),
        sa.Column("remote_address", sa.String(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_audit"),
    )
    op.create_index("ix_audit_time", "audit", ["time"])
    op.create_index("ix_audit_user_time", "audit", ["user", "time"])
    _backfill(audit)


def _backfill(audit: sa.Table) -> None:
    # Audit events that arrived before this revision are already in `events`: project them,
    # so that upgrading never loses part of the audit trail. Self-contained on purpose: a
    # migration must behave the same whatever the application code looks like later.
    events = sa.table(
        "events",
        sa.column("id", sa.String()),
        sa.column("time", TIMESTAMP),
        sa.column("kind", sa.String()),
        sa.column("message", sa.Text()),
        sa.column("data", sa.JSON()),
    )
    connection = op.get_bind()
    query = sa.select(events).where(events.c.kind.like("audit.%"))
    rows = []
    for row in connection.execute(query):
        data = dict(row.data or {})
        rows.append(
            {
                "event_id": row.id,
                "time": row.time,
                "user": str(data.pop("user", None) or "unknown"),
                "action": row.kind[len("audit.") :],
                "object": data.pop("object", None),
                "remote_address": data.pop("remote_address", None),
                "message": row.message,
                "details": data,
            }
        )
    if rows:
        op.bulk_insert(audit, rows)


def downgrade() -> None:
    """Drop the audit table (the audit events stay in `events`)."""
    op.drop_table("audit")
