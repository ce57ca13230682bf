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

The records, the schema, the engine set-up, the decoding of rows and the backfill records live
in `state_records`, `state_tables`, `state_engine`, `state_rows` and `state_backfills`; their
names are re-exported here so that callers keep importing from `orchestrator.state` alone.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy import (
    Connection,
    bindparam,
    delete,
    func,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError

from lakehouse.errors import ConfigError
from orchestrator import state_backfills
from orchestrator.state_engine import READ_ONLY, forget_engine
from orchestrator.state_engine import SQLITE_BUSY_TIMEOUT_S as SQLITE_BUSY_TIMEOUT_S
from orchestrator.state_engine import open_engine as open_engine
from orchestrator.state_records import ABANDONED_ERROR as ABANDONED_ERROR
from orchestrator.state_records import (
    RUN_STATUSES,
    STEP_STATUSES,
    AmbiguousRunError,
    CheckRecord,
    RunRecord,
    RunStatus,
    StepRecord,
    StepStatus,
    check_status,
    utc_now,
)
from orchestrator.state_records import BackfillPartition as BackfillPartition
from orchestrator.state_records import BackfillRecord as BackfillRecord
from orchestrator.state_records import BackfillState as BackfillState
from orchestrator.state_rows import (
    checks_by_step,
    run_record,
    step_counts,
    step_key,
    step_order,
    step_record,
)
from orchestrator.state_tables import TABLE_NAMES
from orchestrator.state_tables import backfill_partitions_table as backfill_partitions_table
from orchestrator.state_tables import backfills_table as backfills_table
from orchestrator.state_tables import check_results_table as check_results_table
from orchestrator.state_tables import metadata as metadata
from orchestrator.state_tables import runs_table as runs_table
from orchestrator.state_tables import steps_table as steps_table

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

DEFAULT_URL = "sqlite:///catalog/sluice.db"

_T = TypeVar("_T")

_INSERT_RUN = insert(runs_table)
_FINISH_RUN = update(runs_table).where(runs_table.c.run_id == bindparam("key_run_id"))
_RUNNING_ON_HOST = select(runs_table.c.run_id, runs_table.c.pid).where(
    (runs_table.c.status == "running") & (runs_table.c.host == bindparam("key_host"))
)
_INSERT_STEP = insert(steps_table)
_STEP_KEY = (
    (steps_table.c.run_id == bindparam("key_run_id"))
    & (steps_table.c.asset == bindparam("key_asset"))
    & (steps_table.c.partition_key == bindparam("key_partition"))
)
_FIND_STEP = select(steps_table.c.id).where(_STEP_KEY)
_UPDATE_STEP = update(steps_table).where((steps_table.c.id == bindparam("key_id")) & _STEP_KEY)
_DELETE_CHECKS = delete(check_results_table).where(
    check_results_table.c.step_id == bindparam("key_id")
)
_INSERT_CHECKS = insert(check_results_table)
"""Built once: a statement executed with its values as parameters is compiled once per
process (SQLAlchemy caches it), where one built around its values is rebuilt and looked up
at every call."""

_OPEN = frozenset({"pending", "running"})

_checked: set[str] = set()
"""Database URLs whose run-history tables a store of this process created or found. Only once
they are in place does a later store skip the check: a store opened while another is still
creating them waits for it (its own creation is a no-op), instead of racing to its first use."""


class StateStore:
    """The run-history store over a SQLAlchemy URL; safe to share between threads."""

    def __init__(self, url: str = DEFAULT_URL) -> None:
        """Open (creating if needed) the database at `url`; `ConfigError` if that fails."""
        self.url = url
        self._host = socket.gethostname()
        self._engine, self._lock, shown = open_engine(url, "run-history database")
        self._steps: dict[tuple[str, str, str], tuple[int, bool]] = {}
        """Open steps this store recorded: their row id, and whether it has check results."""
        if self._lock is None and url in _checked:
            return  # tables dropped since come back at first use (`_transact`)
        try:
            self._create_tables()
        except Exception as exc:
            forget_engine(url, self._engine)
            reason = exc.orig if isinstance(exc, DBAPIError) else exc
            raise ConfigError(f"cannot open run-history database {shown!r}: {reason}") from exc
        if self._lock is None:
            _checked.add(url)

    def _create_tables(self) -> None:
        with self._guard(), self._engine.begin() as conn:
            metadata.create_all(conn)

    # -- writes ------------------------------------------------------------------------------

    def start_run(
        self, run_id: str, *, command: str, selection: str, close_abandoned: bool = False
    ) -> list[str]:
        """Record a new run of this process as `running`, started now. With `close_abandoned`,
        first close the abandoned runs as `mark_abandoned` does, in the same transaction;
        returns their ids."""
        values = {
            "run_id": run_id,
            "command": command,
            "selection": selection,
            "status": "running",
            "started_at": utc_now(),
            "finished_at": None,
            "pid": os.getpid(),
            "host": self._host,
        }

        def write(conn: Connection) -> list[str]:
            dead = self._abandon(conn) if close_abandoned else []
            conn.execute(_INSERT_RUN, values)
            return dead

        return self._transact(write, write=True)

    def finish_run(self, run_id: str, status: RunStatus) -> None:
        """Set the final status of a run and its finish time (a no-op for an unknown run)."""
        check_status(status, RUN_STATUSES, "run")
        values = {"status": status, "finished_at": utc_now(), "key_run_id": run_id}

        def write(conn: Connection) -> None:
            conn.execute(_FINISH_RUN, values)

        self._transact(write, write=True)

    def record_step(self, step: StepRecord) -> None:
        """Insert or replace the step `(run_id, asset, partition)`, and replace its checks."""
        check_status(step.status, STEP_STATUSES, "step")
        key = (step.run_id, step.asset, step.partition or "")
        where = {"key_run_id": key[0], "key_asset": key[1], "key_partition": key[2]}
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

        def update(conn: Connection, step_id: int) -> bool:
            params = {**values, **where, "key_id": step_id}
            return bool(conn.execute(_UPDATE_STEP, params).rowcount == 1)

        def write(conn: Connection) -> int:
            # A step this store recorded is updated by its id (still checked against its key)
            # without a lookup, and its check results are deleted only if it had some.
            known = self._steps.get(key)
            if known is not None and update(conn, known[0]):
                step_id, had_checks = known
            elif (found := conn.execute(_FIND_STEP, where).scalar_one_or_none()) is not None:
                step_id, had_checks = int(found), True
                update(conn, step_id)
            else:
                inserted = conn.execute(_INSERT_STEP, values).inserted_primary_key
                assert inserted is not None
                step_id, had_checks = int(inserted[0]), False
            if had_checks:
                conn.execute(_DELETE_CHECKS, {"key_id": step_id})
            if check_rows:
                conn.execute(_INSERT_CHECKS, [{"step_id": step_id, **r} for r in check_rows])
            return step_id

        step_id = self._transact(write, write=True)
        if step.status in _OPEN:
            self._steps[key] = (step_id, bool(check_rows))
        else:  # kept for open steps only: a long-lived store stays small
            self._steps.pop(key, None)

    def mark_abandoned(self) -> list[str]:
        """Close the `running` runs of this host whose process is gone; return their ids.

        Only runs of this host are considered (a pid means nothing elsewhere). Their `running`
        and `pending` steps become `failed`, and so do the `running` partitions of backfills
        they ran (those backfills become `abandoned`, resumable by id). A reused pid keeps a
        dead run `running`: this errs on the side of never abandoning a live run.
        """
        return self._transact(self._abandon, write=True)

    def _abandon(self, conn: Connection) -> list[str]:
        rows = conn.execute(_RUNNING_ON_HOST, {"key_host": self._host}).all()
        dead = sorted(run_id for run_id, pid in rows if not pid_alive(pid))
        if not dead:
            return []
        now = utc_now()
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
        state_backfills.abandon(conn, dead)
        return dead

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
            counts = step_counts(conn, [row.run_id for row in rows])
            return [run_record(row, counts.get(row.run_id, {})) for row in rows]

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
            checks = checks_by_step(
                conn,
                select(check_results_table)
                .join(steps_table, steps_table.c.id == check_results_table.c.step_id)
                .where(steps_table.c.run_id == row.run_id),
            )
            steps = [step_record(s, checks.get(s.id, [])) for s in step_rows]
            steps.sort(key=step_order)
            counts = step_counts(conn, [row.run_id])
            return run_record(row, counts.get(row.run_id, {})), steps

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
            checks = checks_by_step(
                conn,
                select(check_results_table).where(check_results_table.c.step_id.in_(latest)),
            )
            records = (step_record(s, checks.get(s.id, [])) for s in step_rows)
            return {(r.asset, r.partition): r for r in sorted(records, key=step_key)}

        return self._transact(read, write=False)

    # -- lifecycle ---------------------------------------------------------------------------

    def start_backfill(
        self, backfill_id: str, *, selection: str, first: str, last: str, ranged: bool
    ) -> None:
        """Record a new backfill, or mark an existing one (a resume) running again."""
        self._transact(
            lambda conn: state_backfills.start(
                conn, backfill_id, selection=selection, first=first, last=last, ranged=ranged
            ),
            write=True,
        )

    def set_backfill_partitions(
        self, backfill_id: str, partitions: Sequence[BackfillPartition]
    ) -> None:
        """Upsert the state of (asset, partition) pairs of a backfill (the last one given for
        a pair wins), in one transaction and a few statements however many pairs."""
        self._transact(
            lambda conn: state_backfills.set_partitions(conn, backfill_id, partitions), write=True
        )

    def finish_backfill(self, backfill_id: str, status: str) -> None:
        self._transact(lambda conn: state_backfills.finish(conn, backfill_id, status), write=True)

    def backfills(self, limit: int = 20) -> list[BackfillRecord]:
        """Backfills, newest first, with per-state partition counts."""
        return self._transact(lambda conn: state_backfills.newest(conn, limit), write=False)

    def backfill(self, backfill_id: str) -> tuple[BackfillRecord, list[BackfillPartition]] | None:
        return self._transact(lambda conn: state_backfills.one(conn, backfill_id), write=False)

    def close(self) -> None:
        """Release the connections (to the process's pool of this database, which keeps them
        for the next store; an in-memory database is gone); the store must not be used
        afterwards."""
        if self._lock is not None:
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
                        conn.execution_options(**{READ_ONLY: True})
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
            return not all(inspector.has_table(name) for name in TABLE_NAMES)


def pid_alive(pid: int) -> bool:
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
