"""Series searchable by patient name and study date: three columns, two indexes, filled in.

The new columns are filled from each stored series' tags (the tags of its first instance) in
batches, with the same folding the projection uses for new series
(:func:`mercure.bookkeeper.projection.name_key`).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

from mercure.bookkeeper.projection import name_key

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

BATCH = 2000
SEARCH_KEY = sa.String().with_variant(sa.String(collation="C"), "postgresql")


def upgrade() -> None:
    """Add patient_name, patient_name_key and study_date to series and fill them."""
    with op.batch_alter_table("series") as batch:
        batch.add_column(sa.Column("patient_name", sa.String(), nullable=True))
        batch.add_column(sa.Column("patient_name_key", SEARCH_KEY, nullable=True))
        batch.add_column(sa.Column("study_date", sa.String(), nullable=True))
    series = sa.table(
        "series",
        sa.column("series_uid", sa.String()),
        sa.column("tags", sa.JSON()),
        sa.column("patient_name", sa.String()),
        sa.column("patient_name_key", sa.String()),
        sa.column("study_date", sa.String()),
    )
    connection = op.get_bind()
    last = ""
    while True:
        rows = connection.execute(
            sa.select(series.c.series_uid, series.c.tags)
            .where(series.c.series_uid > last)
            .order_by(series.c.series_uid)
            .limit(BATCH)
        ).all()
        if not rows:
            break
        updates = []
        for uid, tags in rows:
            tags = tags if isinstance(tags, dict) else {}
            name = _text(tags.get("PatientName"))
            updates.append(
                {
                    "uid": uid,
                    "name": name,
                    "key": name_key(name) if name else None,
                    "date": _text(tags.get("StudyDate")),
                }
            )
        connection.execute(
            series.update()
            .where(series.c.series_uid == sa.bindparam("uid"))
            .values(
                patient_name=sa.bindparam("name"),
                patient_name_key=sa.bindparam("key"),
                study_date=sa.bindparam("date"),
            ),
            updates,
        )
        last = rows[-1][0]
    op.create_index("ix_series_patient_name_key", "series", ["patient_name_key"])
    op.create_index("ix_series_study_date", "series", ["study_date"])


def _text(value: object) -> str | None:
    if value is None or value == "":
        return None
    return (value if isinstance(value, str) else str(value)).replace("\x00", "\ufffd")


def downgrade() -> None:
    """Drop the search columns (the tags keep the values)."""
    op.drop_index("ix_series_study_date", "series")
    op.drop_index("ix_series_patient_name_key", "series")
    with op.batch_alter_table("series") as batch:
        batch.drop_column("study_date")
        batch.drop_column("patient_name_key")
        batch.drop_column("patient_name")
