"""Events, series, tasks with their versions, rules, targets and processing results.

Revision ID: 0001
Revises:
Create Date: 2025-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create the first schema."""
    op.create_table(
        "events",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("time", TIMESTAMP, nullable=False),
        sa.Column("received_at", TIMESTAMP, nullable=False),
        sa.Column("service", sa.String(), nullable=False),
        sa.Column("instance", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("severity", sa.String(), nullable=False),
        sa.Column("task_id", sa.String(), nullable=True),
        sa.Column("series_uid", sa.String(), nullable=True),
        sa.Column("study_uid", sa.String(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
    )
    op.create_index("ix_events_time", "events", ["time"])
    op.create_index("ix_events_task_id_time", "events", ["task_id", "time"])
    op.create_index("ix_events_series_uid_time", "events", ["series_uid", "time"])
    op.create_index("ix_events_kind_time", "events", ["kind", "time"])

    op.create_table(
        "series",
        sa.Column("series_uid", sa.String(), nullable=False),
        sa.Column("study_uid", sa.String(), nullable=True),
        sa.Column("patient_id", sa.String(), nullable=True),
        sa.Column("accession", sa.String(), nullable=True),
        sa.Column("modality", sa.String(), nullable=True),
        sa.Column("series_description", sa.String(), nullable=True),
        sa.Column("study_description", sa.String(), nullable=True),
        sa.Column("sender_aet", sa.String(), nullable=True),
        sa.Column("receiver_aet", sa.String(), nullable=True),
        sa.Column("sender_address", sa.String(), nullable=True),
        sa.Column("instance_count", sa.Integer(), nullable=False),
        sa.Column("first_received", TIMESTAMP, nullable=False),
        sa.Column("last_received", TIMESTAMP, nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("series_uid", name="pk_series"),
    )
    for column in ("study_uid", "patient_id", "accession", "last_received"):
        op.create_index(f"ix_series_{column}", "series", [column])

    op.create_table(
        "tasks",
        sa.Column("task_id", sa.String(), nullable=False),
        sa.Column("parent_id", sa.String(), nullable=True),
        sa.Column("series_uid", sa.String(), nullable=True),
        sa.Column("study_uid", sa.String(), nullable=True),
        sa.Column("patient_id", sa.String(), nullable=True),
        sa.Column("accession", sa.String(), nullable=True),
        sa.Column("action", sa.String(), nullable=True),
        sa.Column("applied_rule", sa.String(), nullable=True),
        sa.Column("priority", sa.String(), nullable=True),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("state_time", TIMESTAMP, nullable=True),
        sa.Column("fail_stage", sa.String(), nullable=True),
        sa.Column("fail_reason", sa.Text(), nullable=True),
        sa.Column("fail_time", TIMESTAMP, nullable=True),
        sa.Column("document_time", TIMESTAMP, nullable=True),
        sa.Column("version_count", sa.Integer(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("task_id", name="pk_tasks"),
    )
    for column in (
        "created_at",
        "updated_at",
        "series_uid",
        "study_uid",
        "patient_id",
        "accession",
        "parent_id",
    ):
        op.create_index(f"ix_tasks_{column}", "tasks", [column])
    op.create_index("ix_tasks_state_created_at", "tasks", ["state", "created_at"])

    op.create_table(
        "task_rules",
        sa.Column("task_id", sa.String(), nullable=False),
        sa.Column("rule", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("task_id", "rule", name="pk_task_rules"),
    )
    op.create_index("ix_task_rules_rule_task_id", "task_rules", ["rule", "task_id"])

    op.create_table(
        "task_targets",
        sa.Column("task_id", sa.String(), nullable=False),
        sa.Column("target", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("state_time", TIMESTAMP, nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("task_id", "target", name="pk_task_targets"),
    )
    op.create_index("ix_task_targets_target_task_id", "task_targets", ["target", "task_id"])

    op.create_table(
        "task_versions",
        sa.Column("event_id", sa.String(), nullable=False),
        sa.Column("task_id", sa.String(), nullable=False),
        sa.Column("time", TIMESTAMP, nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_task_versions"),
    )
    op.create_index("ix_task_versions_task_id_time", "task_versions", ["task_id", "time"])

    op.create_table(
        "processing",
        sa.Column("event_id", sa.String(), nullable=False),
        sa.Column("task_id", sa.String(), nullable=False),
        sa.Column("module", sa.String(), nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=True),
        sa.Column("ended_at", TIMESTAMP, nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("log", sa.Text(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("event_id", name="pk_processing"),
    )
    op.create_index("ix_processing_task_id", "processing", ["task_id"])
    op.create_index("ix_processing_module_ended_at", "processing", ["module", "ended_at"])


def downgrade() -> None:
    """Drop everything."""
    for table in (
        "processing",
        "task_versions",
        "task_targets",
        "task_rules",
        "tasks",
        "series",
        "events",
    ):
        op.drop_table(table)
