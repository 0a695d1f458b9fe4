"""The bookkeeper's tables (SQLAlchemy Core), the same on SQLite and PostgreSQL.

The migrations in ``migrations/versions`` create exactly these; a test compares the two.
``events`` is the raw record, one row per event id (which is what makes ingest idempotent);
the other tables are projections of it kept up to date in the same transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    false,
)
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always returned timezone-aware.

    SQLite has no time zones, so values are stored there as naive UTC in SQLAlchemy's fixed
    ``YYYY-MM-DD HH:MM:SS.ffffff`` form, which also makes them compare correctly as text.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        result: datetime = value.astimezone(UTC)
        return result


SEARCH_KEY = String().with_variant(String(collation="C"), "postgresql")
"""Text compared byte by byte (SQLite does that anyway), for prefix searches by range."""

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

events = Table(
    "events",
    metadata,
    # Event id: what makes a retry harmless.
    Column("id", String, primary_key=True),
    # When the event happened.
    Column("time", UTCDateTime, nullable=False),
    # When the bookkeeper stored it.
    Column("received_at", UTCDateTime, nullable=False),
    Column("service", String, nullable=False),
    Column("instance", String, nullable=False),
    Column("kind", String, nullable=False),
    Column("severity", String, nullable=False),
    Column("task_id", String),
    Column("series_uid", String),
    Column("study_uid", String),
    Column("message", Text, nullable=False),
    # Event data without `task` and `log`.
    Column("data", JSON, nullable=False),
    Index(None, "time"),
    Index(None, "task_id", "time"),
    Index(None, "series_uid", "time"),
    Index(None, "kind", "time"),
)

series = Table(
    "series",
    metadata,
    Column("series_uid", String, primary_key=True),
    Column("study_uid", String),
    Column("patient_id", String),
    Column("patient_name", String),
    # patient_name folded for a case-insensitive prefix search (projection.name_key); byte
    # order on PostgreSQL too, so that a prefix is one index range whatever the collation.
    Column("patient_name_key", SEARCH_KEY),
    Column("accession", String),
    # DICOM's YYYYMMDD, so that a date range is a string range.
    Column("study_date", String),
    Column("modality", String),
    Column("series_description", String),
    Column("study_description", String),
    Column("sender_aet", String),
    Column("receiver_aet", String),
    Column("sender_address", String),
    Column("instance_count", Integer, nullable=False),
    Column("first_received", UTCDateTime, nullable=False),
    Column("last_received", UTCDateTime, nullable=False),
    # Tags of the series' first instance.
    Column("tags", JSON, nullable=False),
    Index(None, "study_uid"),
    Index(None, "patient_id"),
    Index(None, "accession"),
    Index(None, "last_received"),
    Index(None, "patient_name_key"),
    Index(None, "study_date"),
)

tasks = Table(
    "tasks",
    metadata,
    Column("task_id", String, primary_key=True),
    # The task this one was split from, if any.
    Column("parent_id", String),
    Column("series_uid", String),
    Column("study_uid", String),
    Column("patient_id", String),
    Column("accession", String),
    Column("action", String),
    Column("applied_rule", String),
    Column("priority", String),
    # Stage folder, or `cleaned`.
    Column("state", String, nullable=False),
    Column("state_time", UTCDateTime),
    Column("fail_stage", String),
    Column("fail_reason", Text),
    Column("fail_time", UTCDateTime),
    # Time of the newest task.json version.
    Column("document_time", UTCDateTime),
    Column("version_count", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index(None, "created_at"),
    Index(None, "updated_at"),
    Index(None, "series_uid"),
    Index(None, "study_uid"),
    Index(None, "patient_id"),
    Index(None, "accession"),
    Index(None, "state", "created_at"),
    Index(None, "parent_id"),
)

task_rules = Table(
    "task_rules",
    metadata,
    Column("task_id", String, primary_key=True),
    Column("rule", String, primary_key=True),
    Index(None, "rule", "task_id"),
)

task_targets = Table(
    "task_targets",
    metadata,
    Column("task_id", String, primary_key=True),
    Column("target", String, primary_key=True),
    # waiting, sending, retrying, complete, error
    Column("state", String, nullable=False),
    Column("state_time", UTCDateTime, nullable=False),
    Column("reason", Text),
    Index(None, "target", "task_id"),
)

task_versions = Table(
    "task_versions",
    metadata,
    Column("event_id", String, primary_key=True),
    Column("task_id", String, nullable=False),
    Column("time", UTCDateTime, nullable=False),
    Column("kind", String, nullable=False),
    # The whole task.json of this version.
    Column("document", JSON, nullable=False),
    Index(None, "task_id", "time"),
)

processing = Table(
    "processing",
    metadata,
    Column("event_id", String, primary_key=True),
    Column("task_id", String, nullable=False),
    Column("module", String, nullable=False),
    Column("started_at", UTCDateTime),
    Column("ended_at", UTCDateTime, nullable=False),
    Column("exit_code", Integer),
    Column("success", Boolean, nullable=False),
    Column("log", Text, nullable=False),
    # The module's result.json, if it wrote one.
    Column("result", JSON),
    Index(None, "task_id"),
    Index(None, "module", "ended_at"),
)

audit = Table(
    "audit",
    metadata,
    Column("event_id", String, primary_key=True),
    Column("time", UTCDateTime, nullable=False),
    Column("user", String, nullable=False),
    Column("action", String, nullable=False),
    Column("object", String),
    Column("remote_address", String),
    Column("message", Text, nullable=False),
    Column("details", JSON, nullable=False),
    Index(None, "time"),
    Index(None, "user", "time"),
)

event_counts = Table(
    "event_counts",
    metadata,
    # Events per UTC hour, kind and severity, kept up to date at ingest: the statistics read
    # these few rows instead of counting millions of events.
    Column("hour", UTCDateTime, primary_key=True),
    Column("kind", String, primary_key=True),
    Column("severity", String, primary_key=True),
    Column("events", Integer, nullable=False),
    # Instances reported by the `series.received` events counted here.
    Column("instances", Integer, nullable=False),
)

users = Table(
    "users",
    metadata,
    # People who sign in to the web interface. ``name_key`` (the name in lower case) keeps
    # "Admin" and "admin" from being two users; ``session_epoch`` grows whenever the user's
    # sessions must end (password, role, disabled).
    Column("name", String, primary_key=True),
    Column("name_key", String, nullable=False, unique=True),
    Column("role", String, nullable=False),
    Column("password_hash", String, nullable=False),
    Column("disabled", Boolean, nullable=False),
    Column("session_epoch", Integer, nullable=False),
    Column("created", UTCDateTime, nullable=False),
    Column("updated", UTCDateTime, nullable=False),
    Column("last_login", UTCDateTime),
    Column("password_changed", UTCDateTime, nullable=False),
    # Set for users made with a temporary password (``mercure user add --must-change-password``,
    # users imported from mercure): the web interface lets them only choose their own.
    Column("must_change_password", Boolean, nullable=False, server_default=false()),
)
