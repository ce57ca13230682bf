"""Run history: runs, their steps and check results, in a SQL database (SQLite by default).

This store only *records* what happened, for `sluice runs`, `sluice run ID` and `sluice status`.
What is published is decided by the lakehouse (Iceberg snapshot properties), never by this
store, so losing the database loses history and nothing else: tables are (re)created on open,
and also recreated on the fly if the file disappears while a store is open.

Guarantees:

* Portable SQLAlchemy Core only (SQLite and PostgreSQL); JSON is stored as text.
* Thread-safe: one `Engine`, one short transaction per call. On SQLite every write transaction
  is `BEGIN IMMEDIATE` (so concurrent writers wait on the busy timeout instead of failing with
  "database is locked" when upgrading a read lock), and the journal is WAL when possible, so
  readers do not block writers.
* Timestamps are timezone-aware UTC on the way in (naive values are taken as UTC) and out.
* A step is keyed by `(run_id, asset, partition)`; `None` and `""` are the same partition.
* Steps are not tied to their run by a foreign key: recording a step of an unknown run is
  accepted (history is best effort) and such orphan steps are ignored by the readers.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar, cast, get_args

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    DateTime,
    Dialect,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Row,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, NoSuchModuleError
from sqlalchemy.pool import StaticPool

from lakehouse.errors import ConfigError, SluiceError

__all__ = [
    "ABANDONED_ERROR",
    "AmbiguousRunError",
    "CheckRecord",
    "DEFAULT_URL",
    "RunRecord",
    "RunStatus",
    "StateStore",
    "StepRecord",
    "StepStatus",
]

RunStatus = Literal["running", "succeeded", "failed", "abandoned", "interrupted"]
StepStatus = Literal[
    "pending",
    "running",
    "published",
    "skipped_fresh",
    "failed",
    "audit_failed",
    "blocked",
    "conflict",
]

DEFAULT_URL = "sqlite:///catalog/sluice.db"
ABANDONED_ERROR = "run abandoned (process died)"
SQLITE_BUSY_TIMEOUT_S = 30.0

_RUN_STATUSES: frozenset[str] = frozenset(get_args(RunStatus))
_STEP_STATUSES: frozenset[str] = frozenset(get_args(StepStatus))
_T = TypeVar("_T")


class AmbiguousRunError(SluiceError):
    """A run id prefix matches several runs."""


@dataclass(frozen=True, kw_only=True)
class CheckRecord:
    """The outcome of one check (audit) of a step."""

    name: str
    kind: str
    severity: str
    passed: bool
    failing_rows: int = 0
    samples: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


@dataclass(frozen=True, kw_only=True)
class StepRecord:
    """One asset (partition) materialization within a run, as last recorded."""

    run_id: str
    asset: str
    partition: str | None = None
    status: StepStatus
    attempts: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_s: float | None = None
    snapshot_id: int | None = None
    branch: str | None = None
    rows: int | None = None
    error: str | None = None
    reasons: list[str] = field(default_factory=list)
    checks: list[CheckRecord] = field(default_factory=list)


BackfillState = Literal["missing", "running", "failed", "audit_failed", "published"]


@dataclass(frozen=True, kw_only=True)
class BackfillRecord:
    """One backfill: a selection over a partition range, resumable by id."""

    backfill_id: str
    selection: str
    first: str
    last: str
    ranged: bool
    status: str
    created_at: datetime
    finished_at: datetime | None = None
    counts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class BackfillPartition:
    asset: str
    partition: str
    state: BackfillState
    run_id: str | None = None
    error: str | None = None


@dataclass(frozen=True, kw_only=True)
class RunRecord:
    """One invocation of a command; `counts` maps a step status to its number of steps."""

    run_id: str
    command: str
    selection: str
    status: RunStatus
    started_at: datetime
    finished_at: datetime | None = None
    pid: int
    host: str
    counts: dict[str, int] = field(default_factory=dict)


class _UTCDateTime(TypeDecorator[datetime]):
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
    Column("started_at", _UTCDateTime, nullable=False),
    Column("finished_at", _UTCDateTime, nullable=True),
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
    Column("started_at", _UTCDateTime, nullable=True),
    Column("finished_at", _UTCDateTime, nullable=True),
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
    Column("created_at", _UTCDateTime, nullable=False),
    Column("finished_at", _UTCDateTime, nullable=True),
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

_TABLE_NAMES = tuple(metadata.tables)


def open_engine(url: str, what: str) -> tuple[Engine, threading.Lock | None, str]:
    """An engine for `url` set up for concurrent Sluice processes, the lock that in-memory
    SQLite needs (one connection must not interleave transactions of threads, else None),
    and the URL as it may be shown (password hidden). A bad URL is a `ConfigError`."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise ConfigError(f"invalid {what} URL {url!r}: {exc}") from exc
    shown = parsed.render_as_string(hide_password=True)
    try:
        if parsed.get_backend_name() != "sqlite":
            return create_engine(parsed, pool_pre_ping=True), None, shown
        database = parsed.database or ""
        in_memory = database in ("", ":memory:") or "mode=memory" in database
        connect_args: dict[str, Any] = {
            "timeout": SQLITE_BUSY_TIMEOUT_S,
            "check_same_thread": False,
        }
        lock = None
        if in_memory:
            lock = threading.Lock()
            engine = create_engine(parsed, connect_args=connect_args, poolclass=StaticPool)
        else:
            if not database.startswith("file:"):
                Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(parsed, connect_args=connect_args)
        _install_sqlite_transactions(engine, wal=not in_memory)
        return engine, lock, shown
    except (ArgumentError, NoSuchModuleError, ImportError, ValueError, OSError) as exc:
        raise ConfigError(f"cannot use {what} URL {shown!r}: {exc}") from exc


class StateStore:
    """The run-history store over a SQLAlchemy URL; safe to share between threads."""

    def __init__(self, url: str = DEFAULT_URL) -> None:
        """Open (creating if needed) the database at `url`; `ConfigError` if that fails."""
        self.url = url
        self._host = socket.gethostname()
        self._engine, self._lock, shown = open_engine(url, "run-history database")
        try:
            self._create_tables()
        except Exception as exc:
            self._engine.dispose()
            reason = exc.orig if isinstance(exc, DBAPIError) else exc
            raise ConfigError(f"cannot open run-history database {shown!r}: {reason}") from exc

    def _create_tables(self) -> None:
        with self._guard(), self._engine.begin() as conn:
            metadata.create_all(conn)

    # -- writes ------------------------------------------------------------------------------

    def start_run(self, run_id: str, *, command: str, selection: str) -> None:
        """Record a new run of this process as `running`, started now."""
        values = {
            "run_id": run_id,
            "command": command,
            "selection": selection,
            "status": "running",
            "started_at": _now(),
            "finished_at": None,
            "pid": os.getpid(),
            "host": self._host,
        }

        def write(conn: Connection) -> None:
            conn.execute(insert(runs_table).values(values))

        self._transact(write, write=True)

    def finish_run(self, run_id: str, status: RunStatus) -> None:
        """Set the final status of a run and its finish time (a no-op for an unknown run)."""
        _check_status(status, _RUN_STATUSES, "run")
        stmt = (
            update(runs_table)
            .where(runs_table.c.run_id == run_id)
            .values(status=status, finished_at=_now())
        )

        def write(conn: Connection) -> None:
            conn.execute(stmt)

        self._transact(write, write=True)

    def record_step(self, step: StepRecord) -> None:
        """Insert or replace the step `(run_id, asset, partition)`, and replace its checks."""
        _check_status(step.status, _STEP_STATUSES, "step")
        key = (
            (steps_table.c.run_id == step.run_id)
            & (steps_table.c.asset == step.asset)
            & (steps_table.c.partition_key == (step.partition or ""))
        )
        values = {
            "run_id": step.run_id,
            "asset": step.asset,
            "partition_key": step.partition or "",
            "status": step.status,
            "attempts": step.attempts,
            "started_at": step.started_at,
            "finished_at": step.finished_at,
            "duration_s": step.duration_s,
            "snapshot_id": step.snapshot_id,
            "branch": step.branch,
            "rows": step.rows,
            "error": step.error,
            "reasons": json.dumps(list(step.reasons)),
        }
        check_rows = [
            {
                "position": position,
                "name": check.name,
                "kind": check.kind,
                "severity": check.severity,
                "passed": check.passed,
                "failing_rows": check.failing_rows,
                "samples": json.dumps(check.samples, default=str),
                "error": check.error,
            }
            for position, check in enumerate(step.checks)
        ]

        def write(conn: Connection) -> None:
            step_id = conn.execute(select(steps_table.c.id).where(key)).scalar_one_or_none()
            if step_id is None:
                inserted = conn.execute(insert(steps_table).values(values)).inserted_primary_key
                assert inserted is not None
                step_id = int(inserted[0])
            else:
                conn.execute(update(steps_table).where(steps_table.c.id == step_id).values(values))
                conn.execute(
                    delete(check_results_table).where(check_results_table.c.step_id == step_id)
                )
            if check_rows:
                conn.execute(
                    insert(check_results_table), [{"step_id": step_id, **r} for r in check_rows]
                )

        self._transact(write, write=True)

    def mark_abandoned(self) -> list[str]:
        """Close the `running` runs of this host whose process is gone; return their ids.

        Only runs of this host are considered (a pid means nothing elsewhere). Their `running`
        and `pending` steps become `failed`, and so do the `running` partitions of backfills
        they ran (those backfills become `abandoned`, resumable by id). A reused pid keeps a
        dead run `running`: this errs on the side of never abandoning a live run.
        """

        def write(conn: Connection) -> list[str]:
            rows = conn.execute(
                select(runs_table.c.run_id, runs_table.c.pid).where(
                    (runs_table.c.status == "running") & (runs_table.c.host == self._host)
                )
            ).all()
            dead = sorted(run_id for run_id, pid in rows if not _pid_alive(pid))
            if not dead:
                return []
            now = _now()
            conn.execute(
                update(runs_table)
                .where(runs_table.c.run_id.in_(dead) & (runs_table.c.status == "running"))
                .values(status="abandoned", finished_at=now)
            )
            open_steps = steps_table.c.run_id.in_(dead) & steps_table.c.status.in_(
                ("running", "pending")
            )
            conn.execute(
                update(steps_table)
                .where(open_steps & steps_table.c.finished_at.is_(None))
                .values(finished_at=now)
            )
            conn.execute(
                update(steps_table).where(open_steps).values(status="failed", error=ABANDONED_ERROR)
            )
            _abandon_backfills(conn, dead)
            return dead

        return self._transact(write, write=True)

    # -- reads -------------------------------------------------------------------------------

    def runs(self, limit: int = 20) -> list[RunRecord]:
        """The `limit` most recently started runs, newest first, with their step counts."""
        if limit <= 0:
            return []
        stmt = (
            select(runs_table)
            .order_by(runs_table.c.started_at.desc(), runs_table.c.run_id.desc())
            .limit(limit)
        )

        def read(conn: Connection) -> list[RunRecord]:
            rows = conn.execute(stmt).all()
            counts = _step_counts(conn, [row.run_id for row in rows])
            return [_run_record(row, counts.get(row.run_id, {})) for row in rows]

        return self._transact(read, write=False)

    def run(self, run_id: str) -> tuple[RunRecord, list[StepRecord]] | None:
        """A run and its steps (ordered by start), by exact id or unique id prefix.

        Returns `None` if nothing matches; raises `AmbiguousRunError` if a prefix matches
        several runs.
        """

        def read(conn: Connection) -> tuple[RunRecord, list[StepRecord]] | None:
            row = conn.execute(
                select(runs_table).where(runs_table.c.run_id == run_id)
            ).one_or_none()
            if row is None and run_id:
                matches = conn.execute(
                    select(runs_table)
                    .where(runs_table.c.run_id.startswith(run_id, autoescape=True))
                    .order_by(runs_table.c.run_id)
                    .limit(6)
                ).all()
                if len(matches) > 1:
                    shown = ", ".join(m.run_id for m in matches[:5])
                    more = ", ..." if len(matches) > 5 else ""
                    raise AmbiguousRunError(
                        f"run id prefix {run_id!r} is ambiguous: it matches {shown}{more}"
                    )
                row = matches[0] if matches else None
            if row is None:
                return None
            step_rows = conn.execute(
                select(steps_table)
                .where(steps_table.c.run_id == row.run_id)
                .order_by(steps_table.c.id)
            ).all()
            checks = _checks_by_step(
                conn,
                select(check_results_table)
                .join(steps_table, steps_table.c.id == check_results_table.c.step_id)
                .where(steps_table.c.run_id == row.run_id),
            )
            steps = [_step_record(s, checks.get(s.id, [])) for s in step_rows]
            steps.sort(key=_step_order)
            counts = _step_counts(conn, [row.run_id])
            return _run_record(row, counts.get(row.run_id, {})), steps

        return self._transact(read, write=False)

    def latest_steps(self) -> dict[tuple[str, str | None], StepRecord]:
        """For each `(asset, partition)`, its step in the most recently started run touching it.

        Any status counts, including steps of a run still in progress.
        """
        recency = (
            func.row_number()
            .over(
                partition_by=(steps_table.c.asset, steps_table.c.partition_key),
                order_by=(runs_table.c.started_at.desc(), runs_table.c.run_id.desc()),
            )
            .label("recency")
        )
        ranked = (
            select(steps_table.c.id, recency)
            .join(runs_table, runs_table.c.run_id == steps_table.c.run_id)
            .subquery("ranked")
        )
        latest = select(ranked.c.id).where(ranked.c.recency == 1)

        def read(conn: Connection) -> dict[tuple[str, str | None], StepRecord]:
            step_rows = conn.execute(select(steps_table).where(steps_table.c.id.in_(latest))).all()
            checks = _checks_by_step(
                conn,
                select(check_results_table).where(check_results_table.c.step_id.in_(latest)),
            )
            records = (_step_record(s, checks.get(s.id, [])) for s in step_rows)
            return {(r.asset, r.partition): r for r in sorted(records, key=_step_key)}

        return self._transact(read, write=False)

    # -- lifecycle ---------------------------------------------------------------------------

    def start_backfill(
        self, backfill_id: str, *, selection: str, first: str, last: str, ranged: bool
    ) -> None:
        """Record a new backfill, or mark an existing one (a resume) running again."""

        def write(conn: Connection) -> None:
            found = conn.execute(
                select(backfills_table.c.backfill_id).where(
                    backfills_table.c.backfill_id == backfill_id
                )
            ).first()
            if found is None:
                conn.execute(
                    insert(backfills_table).values(
                        backfill_id=backfill_id,
                        selection=selection,
                        first_partition=first,
                        last_partition=last,
                        ranged=ranged,
                        status="running",
                        created_at=_now(),
                        finished_at=None,
                    )
                )
            else:
                conn.execute(
                    update(backfills_table)
                    .where(backfills_table.c.backfill_id == backfill_id)
                    .values(status="running", finished_at=None)
                )

        self._transact(write, write=True)

    def set_backfill_partitions(
        self, backfill_id: str, partitions: Sequence[BackfillPartition]
    ) -> None:
        """Upsert the state of (asset, partition) pairs of a backfill."""
        table = backfill_partitions_table

        def write(conn: Connection) -> None:
            for item in partitions:
                where = (
                    (table.c.backfill_id == backfill_id)
                    & (table.c.asset == item.asset)
                    & (table.c.partition_key == item.partition)
                )
                values = {"state": item.state, "run_id": item.run_id, "error": item.error}
                if conn.execute(update(table).where(where).values(values)).rowcount == 0:
                    conn.execute(
                        insert(table).values(
                            backfill_id=backfill_id,
                            asset=item.asset,
                            partition_key=item.partition,
                            **values,
                        )
                    )

        self._transact(write, write=True)

    def finish_backfill(self, backfill_id: str, status: str) -> None:
        def write(conn: Connection) -> None:
            conn.execute(
                update(backfills_table)
                .where(backfills_table.c.backfill_id == backfill_id)
                .values(status=status, finished_at=_now())
            )

        self._transact(write, write=True)

    def backfills(self, limit: int = 20) -> list[BackfillRecord]:
        """Backfills, newest first, with per-state partition counts."""

        def read(conn: Connection) -> list[BackfillRecord]:
            rows = conn.execute(
                select(backfills_table).order_by(backfills_table.c.created_at.desc()).limit(limit)
            ).all()
            return [_backfill_record(conn, row) for row in rows]

        return self._transact(read, write=False)

    def backfill(self, backfill_id: str) -> tuple[BackfillRecord, list[BackfillPartition]] | None:
        def read(conn: Connection) -> tuple[BackfillRecord, list[BackfillPartition]] | None:
            row = conn.execute(
                select(backfills_table).where(backfills_table.c.backfill_id == backfill_id)
            ).first()
            if row is None:
                return None
            table = backfill_partitions_table
            items = conn.execute(
                select(table)
                .where(table.c.backfill_id == backfill_id)
                .order_by(table.c.asset, table.c.partition_key)
            ).all()
            return _backfill_record(conn, row), [
                BackfillPartition(
                    asset=i.asset,
                    partition=i.partition_key,
                    state=cast(BackfillState, i.state),
                    run_id=i.run_id,
                    error=i.error,
                )
                for i in items
            ]

        return self._transact(read, write=False)

    def close(self) -> None:
        """Release the connections; the store must not be used afterwards."""
        self._engine.dispose()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------------

    @contextmanager
    def _guard(self) -> Iterator[None]:
        if self._lock is None:
            yield
        else:
            with self._lock:
                yield

    def _transact(self, work: Callable[[Connection], _T], *, write: bool) -> _T:
        """Run `work` in one transaction, retrying once the tables are recreated if missing.

        Also retries an upsert that lost an insert race (possible on PostgreSQL).
        """
        attempts = 3
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                with self._guard(), self._engine.connect() as conn:
                    if not write:
                        conn.execution_options(**{_READ_ONLY: True})
                    with conn.begin():
                        return work(conn)
            except IntegrityError:
                if last or not write:
                    raise
            except DBAPIError:
                if last or not self._tables_missing():
                    raise
                self._create_tables()
        raise AssertionError("unreachable")

    def _tables_missing(self) -> bool:
        with self._guard(), self._engine.connect() as conn:
            inspector = inspect(conn)
            return not all(inspector.has_table(name) for name in _TABLE_NAMES)


_READ_ONLY = "sluice_read_only"


def _install_sqlite_transactions(engine: Engine, *, wal: bool) -> None:
    """Let SQLAlchemy, not pysqlite, emit BEGIN: IMMEDIATE for writes, deferred for reads.

    pysqlite's own deferred BEGIN makes a writer that first reads fail at once with
    "database is locked" when another connection writes concurrently (the lock upgrade cannot
    wait); taking the write lock up front lets the busy timeout do its job.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        if wal:
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
            except Exception:
                pass  # WAL is an optimisation, never a requirement (e.g. on a network drive)
            finally:
                cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        read_only = conn.get_execution_options().get(_READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def _abandon_backfills(conn: Connection, dead_runs: Sequence[str]) -> None:
    """A backfill whose run died stays resumable: its running partitions become failed (with
    the abandoned-run error) and the backfill itself `abandoned` instead of `running`."""
    table = backfill_partitions_table
    of_dead = table.c.run_id.in_(dead_runs)
    backfill_ids = [
        row[0] for row in conn.execute(select(table.c.backfill_id).where(of_dead).distinct()).all()
    ]
    if not backfill_ids:
        return
    conn.execute(
        update(table)
        .where(of_dead & (table.c.state == "running"))
        .values(state="failed", error=ABANDONED_ERROR)
    )
    conn.execute(
        update(backfills_table)
        .where(
            backfills_table.c.backfill_id.in_(backfill_ids)
            & (backfills_table.c.status == "running")
        )
        .values(status="abandoned", finished_at=_now())
    )


def _backfill_record(conn: Connection, row: Row[Any]) -> BackfillRecord:
    table = backfill_partitions_table
    counts = {
        str(state): int(n)
        for state, n in conn.execute(
            select(table.c.state, func.count())
            .where(table.c.backfill_id == row.backfill_id)
            .group_by(table.c.state)
        ).all()
    }
    return BackfillRecord(
        backfill_id=row.backfill_id,
        selection=row.selection,
        first=row.first_partition,
        last=row.last_partition,
        ranged=bool(row.ranged),
        status=row.status,
        created_at=row.created_at,
        finished_at=row.finished_at,
        counts=counts,
    )


def _now() -> datetime:
    return datetime.now(UTC)


def _to_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _check_status(status: str, allowed: frozenset[str], what: str) -> None:
    if status not in allowed:
        raise ValueError(f"invalid {what} status {status!r}: expected one of {sorted(allowed)}")


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: alive but not ours; anything else: assume alive
        return True
    return True


def _step_counts(conn: Connection, run_ids: Sequence[str]) -> dict[str, dict[str, int]]:
    if not run_ids:
        return {}
    rows = conn.execute(
        select(steps_table.c.run_id, steps_table.c.status, func.count())
        .where(steps_table.c.run_id.in_(list(run_ids)))
        .group_by(steps_table.c.run_id, steps_table.c.status)
    ).all()
    counts: dict[str, dict[str, int]] = {}
    for run_id, status, count in rows:
        counts.setdefault(run_id, {})[status] = int(count)
    return counts


def _checks_by_step(conn: Connection, stmt: Any) -> dict[int, list[CheckRecord]]:
    checks: dict[int, list[CheckRecord]] = {}
    for row in conn.execute(stmt.order_by(check_results_table.c.position)).all():
        checks.setdefault(row.step_id, []).append(
            CheckRecord(
                name=row.name,
                kind=row.kind,
                severity=row.severity,
                passed=bool(row.passed),
                failing_rows=int(row.failing_rows),
                samples=json.loads(row.samples),
                error=row.error,
            )
        )
    return checks


def _run_record(row: Row[Any], counts: Mapping[str, int]) -> RunRecord:
    return RunRecord(
        run_id=row.run_id,
        command=row.command,
        selection=row.selection,
        status=cast(RunStatus, row.status),
        started_at=row.started_at,
        finished_at=row.finished_at,
        pid=int(row.pid),
        host=row.host,
        counts=dict(counts),
    )


def _step_record(row: Row[Any], checks: list[CheckRecord]) -> StepRecord:
    return StepRecord(
        run_id=row.run_id,
        asset=row.asset,
        partition=row.partition_key or None,
        status=cast(StepStatus, row.status),
        attempts=int(row.attempts),
        started_at=row.started_at,
        finished_at=row.finished_at,
        duration_s=row.duration_s,
        snapshot_id=row.snapshot_id,
        branch=row.branch,
        rows=row.rows,
        error=row.error,
        reasons=list(json.loads(row.reasons)),
        checks=checks,
    )


def _step_key(step: StepRecord) -> tuple[str, str]:
    return (step.asset, step.partition or "")


def _step_order(step: StepRecord) -> tuple[bool, datetime, str, str]:
    """Started steps by start time, then not-yet-started ones; ties by asset and partition."""
    started = step.started_at
    return (started is None, started or datetime.min.replace(tzinfo=UTC), *_step_key(step))
