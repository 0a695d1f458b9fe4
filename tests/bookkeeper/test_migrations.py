"""Schema migrations: run at start-up, upgrade existing databases, match the table models."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from mercure.bookkeeper import tables
from mercure.bookkeeper.database import (
    create_database_engine,
    current_revision,
    head_revision,
    migrate,
)
from mercure.bookkeeper.ingest import ingest
from mercure.bookkeeper.queries import Filters, Page, search_series, statistics
from mercure.core.events import Event

PREVIOUS = "0001"

# The events table as revision 0001 created it, to write what an old bookkeeper wrote.
EVENTS_AT_0001 = sa.table(
    "events",
    *[sa.column(name, sa.String()) for name in ("id", "service", "instance", "kind", "severity")],
    *[sa.column(name, sa.String()) for name in ("task_id", "series_uid", "study_uid", "message")],
    sa.column("time", sa.DateTime(timezone=True)),
    sa.column("received_at", sa.DateTime(timezone=True)),
    sa.column("data", sa.JSON()),
)


def test_migrations_upgrade_an_existing_database(database_url: str) -> None:
    """A database at the previous revision, holding data, is upgraded and keeps its data."""
    engine = create_database_engine(database_url)
    try:
        migrate(engine, PREVIOUS)
        assert current_revision(engine) == PREVIOUS
        old_events = [
            Event(service="router", kind="task.created", task_id="t1", data={"stage": "outgoing"}),
            Event(
                service="webgui",
                kind="audit.config.saved",
                message="configuration saved",
                data={"user": "alice", "object": "mercure.yaml", "lines": 3},
                time=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
            ),
            Event(
                service="receiver",
                kind="series.received",
                series_uid="1.2.3",
                data={"instances": 7},
                time=datetime(2030, 1, 2, 3, 59, 59, tzinfo=UTC),
            ),
        ]
        with engine.begin() as connection:
            connection.execute(
                sa.insert(EVENTS_AT_0001),
                [{**event.model_dump(), "received_at": event.time} for event in old_events],
            )

        migrate(engine)

        assert current_revision(engine) == head_revision()
        with engine.connect() as connection:
            ids = set(connection.execute(sa.select(tables.events.c.id)).scalars())
            audit = connection.execute(sa.select(tables.audit)).one()
        assert ids == {event.id for event in old_events}
        assert (audit.user, audit.action, audit.object) == ("alice", "config.saved", "mercure.yaml")
        assert audit.details == {"lines": 3}
        assert audit.time == datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
        hour = datetime(2030, 1, 2, 3, tzinfo=UTC)
        (bucket,) = statistics(engine, "hour", hour, hour + timedelta(hours=1))
        assert (bucket["series_received"], bucket["instances_received"]) == (1, 7)
        assert ingest(engine, [Event(service="x", kind="audit.login", data={"user": "b"})]).stored
    finally:
        engine.dispose()


def test_migrating_an_up_to_date_database_changes_nothing(database_url: str) -> None:
    """Start-up on a current database runs no migration and keeps the data."""
    engine = create_database_engine(database_url)
    try:
        migrate(engine)
        ingest(engine, [Event(service="x", kind="service.boot")])
        migrate(engine)
        assert current_revision(engine) == head_revision()
        with engine.connect() as connection:
            assert (
                connection.execute(sa.select(sa.func.count()).select_from(tables.events)).scalar()
                == 1
            )
    finally:
        engine.dispose()


def test_migrations_create_exactly_the_modelled_tables(database_url: str) -> None:
    """The newest migration and the table definitions in tables.py agree."""
    engine = create_database_engine(database_url)
    try:
        migrate(engine)
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = compare_metadata(context, tables.metadata)
        assert differences == []
    finally:
        engine.dispose()


def test_series_stored_before_0005_become_searchable_by_name_and_date(database_url: str) -> None:
    """0005 fills patient name, its search key and the study date from each series' tags."""
    engine = create_database_engine(database_url)
    received = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    old_series = sa.table(
        "series",
        sa.column("series_uid", sa.String()),
        sa.column("tags", sa.JSON()),
        sa.column("instance_count", sa.Integer()),
        sa.column("first_received", tables.UTCDateTime()),
        sa.column("last_received", tables.UTCDateTime()),
    )
    try:
        migrate(engine, "0004")
        with engine.begin() as connection:
            connection.execute(
                sa.insert(old_series),
                [
                    {
                        "series_uid": f"1.2.{n}",
                        "tags": tags,
                        "instance_count": 1,
                        "first_received": received,
                        "last_received": received,
                    }
                    for n, tags in enumerate(
                        [
                            {"PatientName": "Müller^Jürgen", "StudyDate": "20240229"},
                            {"PatientName": ""},
                            {},
                        ]
                    )
                ],
            )

        migrate(engine)

        with engine.connect() as connection:
            rows = connection.execute(
                sa.select(
                    tables.series.c.series_uid,
                    tables.series.c.patient_name,
                    tables.series.c.patient_name_key,
                    tables.series.c.study_date,
                ).order_by(tables.series.c.series_uid)
            ).all()
        assert [tuple(row) for row in rows] == [
            ("1.2.0", "Müller^Jürgen", "müller jürgen", "20240229"),
            ("1.2.1", None, None, None),
            ("1.2.2", None, None, None),
        ]
        found = search_series(engine, Filters(patient_name="MÜLLER^J"), Page())
        assert [item["series_uid"] for item in found.items] == ["1.2.0"]
    finally:
        engine.dispose()
