"""The run-history database schema: its tables and the UTC timestamp column type.

Tables are created by `metadata.create_all` whenever a store opens (or finds them gone), so
this schema is the whole of what is on disk; JSON is kept as text to stay portable between
SQLite and PostgreSQL. `UTCDateTime` guarantees timezone-aware UTC values on the way out,
whatever the backend stores, and is shared with the schedule store.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always returned timezone-aware.

    SQLite keeps no offset (values are stored as UTC text, which also sorts correctly);
    PostgreSQL uses `timestamptz`.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = _to_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else _to_utc(value)


metadata = MetaData()

runs_table = Table(
    "runs",
    metadata,
    Column("run_id", String(128), primary_key=True),
    Column("command", Text, nullable=False),
    Column("selection", Text, nullable=False),
    Column("status", String(32), nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime, nullable=True),
    Column("pid", Integer, nullable=False),
    Column("host", String(255), nullable=False),
    Index("ix_runs_started_at", "started_at"),
    Index("ix_runs_status", "status"),
)

steps_table = Table(
    "steps",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(128), nullable=False),
    Column("asset", String(255), nullable=False),
    # '' stands for "not partitioned", so the unique key below has no NULL in it.
    Column("partition_key", String(255), nullable=False),
    Column("status", String(32), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("started_at", UTCDateTime, nullable=True),
    Column("finished_at", UTCDateTime, nullable=True),
    Column("duration_s", Float, nullable=True),
    Column("snapshot_id", BigInteger, nullable=True),
    Column("branch", String(255), nullable=True),
    Column("rows", BigInteger, nullable=True),
    Column("error", Text, nullable=True),
    Column("reasons", Text, nullable=False),  # JSON list of strings
    UniqueConstraint("run_id", "asset", "partition_key", name="uq_steps_key"),
    Index("ix_steps_run_id", "run_id"),
    Index("ix_steps_asset", "asset", "partition_key"),
)

check_results_table = Table(
    "check_results",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("step_id", Integer, ForeignKey("steps.id", ondelete="CASCADE"), nullable=False),
    Column("position", Integer, nullable=False),
    Column("name", Text, nullable=False),
    Column("kind", String(64), nullable=False),
    Column("severity", String(32), nullable=False),
    Column("passed", Boolean, nullable=False),
    Column("failing_rows", BigInteger, nullable=False),
    Column("samples", Text, nullable=False),  # JSON list of objects
    Column("error", Text, nullable=True),
    Index("ix_check_results_step_id", "step_id"),
)

backfills_table = Table(
    "backfills",
    metadata,
    Column("backfill_id", String(128), primary_key=True),
    Column("selection", Text, nullable=False),
    Column("first_partition", String(64), nullable=False),
    Column("last_partition", String(64), nullable=False),
    Column("ranged", Boolean, nullable=False),
    Column("status", String(32), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime, nullable=True),
)

backfill_partitions_table = Table(
    "backfill_partitions",
    metadata,
    Column("backfill_id", String(128), nullable=False),
    Column("asset", String(255), nullable=False),
    Column("partition_key", String(64), nullable=False),
    Column("state", String(32), nullable=False),
    Column("run_id", String(128), nullable=True),
    Column("error", Text, nullable=True),
    UniqueConstraint("backfill_id", "asset", "partition_key", name="uq_backfill_partition"),
    Index("ix_backfill_partitions_id", "backfill_id"),
)

TABLE_NAMES = tuple(metadata.tables)


def _to_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
