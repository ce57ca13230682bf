"""Scheduler state: every tick, each schedule's first sighting, and the scheduler lease.

Stored in the run-history database (the `[state] url`), next to the runs, so that every
scheduler process of a project shares it. Tables are created on open.

Guarantees:

* A tick is keyed by `(schedule, tick_time)`: it is claimed by inserting its row, so two
  processes can never both claim it. Its status moves `claimed -> running -> succeeded |
  failed | interrupted`, or it is recorded directly as `skipped` or `failed`.
* `claimed -> running` is a compare-and-swap on the owner: a tick handed over to another
  scheduler (see `ScheduleStore.adopt`) is started by exactly one of them.
* The lease is one row per database. `acquire_lease` takes or renews it with a conditional
  UPDATE (compare-and-swap on the previous owner and expiry) or an INSERT on the primary key,
  so at most one owner holds an unexpired lease at any moment. A lease held by a process of
  this host that is gone may be taken at once, without waiting for its expiry.
* Lease times are wall-clock UTC of the machine (never a scheduler's test clock).
* SQLite: writes are `BEGIN IMMEDIATE`, WAL, busy timeout, as in `orchestrator.state`.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar, cast

from sqlalchemy import (
    Column,
    Connection,
    Index,
    Integer,
    MetaData,
    Row,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError

from lakehouse.errors import ConfigError
from orchestrator.state import pid_alive
from orchestrator.state_engine import READ_ONLY, forget_engine, open_engine
from orchestrator.state_tables import UTCDateTime

TickStatus = Literal["claimed", "running", "succeeded", "failed", "skipped", "interrupted"]
OPEN_STATUSES: tuple[TickStatus, ...] = ("claimed", "running")
LEASE_NAME = "scheduler"
_T = TypeVar("_T")

metadata = MetaData()

ticks_table = Table(
    "schedule_ticks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("schedule", String(255), nullable=False),
    Column("tick_time", UTCDateTime, nullable=False),
    Column("status", String(16), nullable=False),
    Column("owner", String(255), nullable=False),
    Column("run_id", String(128), nullable=True),
    Column("claimed_at", UTCDateTime, nullable=False),
    Column("started_at", UTCDateTime, nullable=True),
    Column("finished_at", UTCDateTime, nullable=True),
    Column("message", Text, nullable=True),
    UniqueConstraint("schedule", "tick_time", name="uq_schedule_ticks_key"),
    Index("ix_schedule_ticks_status", "status"),
)

cursors_table = Table(
    "schedule_cursors",
    metadata,
    Column("schedule", String(255), primary_key=True),
    Column("first_seen", UTCDateTime, nullable=False),
)

lease_table = Table(
    "scheduler_lease",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("owner", String(255), nullable=False),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("acquired_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
)


@dataclass(frozen=True)
class TickRecord:
    schedule: str
    tick_time: datetime
    status: TickStatus
    owner: str
    run_id: str | None
    claimed_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    message: str | None


@dataclass(frozen=True)
class Lease:
    owner: str
    host: str
    pid: int
    acquired_at: datetime
    expires_at: datetime


def new_owner_id() -> str:
    """`host:pid:random`: unique per scheduler process."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"


def wall_now() -> datetime:
    return datetime.now(UTC)


class ScheduleStore:
    """Ticks and the lease, over the run-history database URL; safe to share between threads."""

    def __init__(self, url: str) -> None:
        self._engine, self._lock, shown = open_engine(url, "state database")
        try:
            with self._guard(), self._engine.begin() as conn:
                metadata.create_all(conn)
        except Exception as exc:
            forget_engine(url, self._engine)
            reason = exc.orig if isinstance(exc, DBAPIError) else exc
            raise ConfigError(f"cannot open state database {shown!r}: {reason}") from exc

    # -- the lease ---------------------------------------------------------------------------

    def acquire_lease(self, owner: str, ttl_s: float, *, now: datetime | None = None) -> bool:
        """Take or renew the lease for `ttl_s` seconds; False while someone else holds it."""
        now = now or wall_now()
        host, pid = _host_and_pid(owner)
        values = {
            "owner": owner,
            "host": host,
            "pid": pid,
            "expires_at": now + timedelta(seconds=ttl_s),
        }

        def write(conn: Connection) -> bool:
            row = conn.execute(
                select(lease_table).where(lease_table.c.name == LEASE_NAME)
            ).one_or_none()
            if row is None:
                try:
                    with conn.begin_nested():
                        conn.execute(
                            insert(lease_table).values(name=LEASE_NAME, acquired_at=now, **values)
                        )
                except IntegrityError:
                    return False
                return True
            mine = row.owner == owner
            if not (mine or row.expires_at <= now or _holder_gone(row)):
                return False
            changed = conn.execute(
                update(lease_table)
                .where(
                    (lease_table.c.name == LEASE_NAME)
                    & (lease_table.c.owner == row.owner)
                    & (lease_table.c.expires_at == row.expires_at)
                )
                .values(acquired_at=row.acquired_at if mine else now, **values)
            )
            return bool(changed.rowcount == 1)

        return self._transact(write, write=True)

    def release_lease(self, owner: str) -> None:
        """Give the lease up at once (if `owner` holds it), so a standby takes over."""

        def write(conn: Connection) -> None:
            conn.execute(
                update(lease_table)
                .where((lease_table.c.name == LEASE_NAME) & (lease_table.c.owner == owner))
                .values(expires_at=datetime(1970, 1, 1, tzinfo=UTC))
            )

        self._transact(write, write=True)

    def lease(self) -> Lease | None:
        def read(conn: Connection) -> Lease | None:
            row = conn.execute(
                select(lease_table).where(lease_table.c.name == LEASE_NAME)
            ).one_or_none()
            if row is None:
                return None
            return Lease(row.owner, row.host, int(row.pid), row.acquired_at, row.expires_at)

        return self._transact(read, write=False)

    # -- ticks -------------------------------------------------------------------------------

    def first_seen(self, schedule: str, now: datetime) -> datetime:
        """When a scheduler first saw `schedule` (recorded as `now` on the first call)."""

        def write(conn: Connection) -> datetime:
            found = conn.execute(
                select(cursors_table.c.first_seen).where(cursors_table.c.schedule == schedule)
            ).scalar_one_or_none()
            if found is not None:
                return cast(datetime, found)
            conn.execute(insert(cursors_table).values(schedule=schedule, first_seen=now))
            return now

        return self._transact(write, write=True)

    def claim_tick(
        self,
        schedule: str,
        tick_time: datetime,
        owner: str,
        *,
        status: TickStatus = "claimed",
        message: str | None = None,
    ) -> bool:
        """Record the tick as `status`; False if it was already recorded (by anyone)."""
        now = wall_now()
        done = status not in OPEN_STATUSES

        def write(conn: Connection) -> bool:
            try:
                with conn.begin_nested():
                    conn.execute(
                        insert(ticks_table).values(
                            schedule=schedule,
                            tick_time=tick_time,
                            status=status,
                            owner=owner,
                            claimed_at=now,
                            finished_at=now if done else None,
                            message=message,
                        )
                    )
            except IntegrityError:
                return False
            return True

        return self._transact(write, write=True)

    def start_tick(self, schedule: str, tick_time: datetime, owner: str) -> bool:
        """`claimed -> running` if `owner` still owns the claim; False otherwise."""

        def write(conn: Connection) -> bool:
            changed = conn.execute(
                update(ticks_table)
                .where(
                    _key(schedule, tick_time)
                    & (ticks_table.c.owner == owner)
                    & (ticks_table.c.status == "claimed")
                )
                .values(status="running", started_at=wall_now())
            )
            return bool(changed.rowcount == 1)

        return self._transact(write, write=True)

    def finish_tick(
        self,
        schedule: str,
        tick_time: datetime,
        status: TickStatus,
        *,
        run_id: str | None = None,
        message: str | None = None,
    ) -> None:
        """Record how the tick ended (whoever owns it now: the run's own end wins)."""

        def write(conn: Connection) -> None:
            conn.execute(
                update(ticks_table)
                .where(_key(schedule, tick_time))
                .values(status=status, run_id=run_id, message=message, finished_at=wall_now())
            )

        self._transact(write, write=True)

    def adopt(self, owner: str) -> tuple[list[TickRecord], list[TickRecord]]:
        """On taking the lease: hand over the open ticks of other (gone) owners.

        Ticks still `claimed` (their run never started) become `owner`'s, to be run; ticks
        `running` (their run was cut off) become `interrupted`, never run again. Returns
        (adopted, interrupted).
        """

        def write(conn: Connection) -> tuple[list[TickRecord], list[TickRecord]]:
            rows = conn.execute(
                select(ticks_table)
                .where(ticks_table.c.status.in_(OPEN_STATUSES) & (ticks_table.c.owner != owner))
                .order_by(ticks_table.c.tick_time, ticks_table.c.schedule)
            ).all()
            adopted, interrupted = [], []
            for row in rows:
                if row.status == "claimed":
                    conn.execute(
                        update(ticks_table)
                        .where((ticks_table.c.id == row.id) & (ticks_table.c.status == "claimed"))
                        .values(owner=owner)
                    )
                    adopted.append(replace(_tick(row), owner=owner))
                else:
                    message = f"scheduler {row.owner} stopped during the run"
                    conn.execute(
                        update(ticks_table)
                        .where((ticks_table.c.id == row.id) & (ticks_table.c.status == "running"))
                        .values(status="interrupted", finished_at=wall_now(), message=message)
                    )
                    interrupted.append(_tick(row))
            return adopted, interrupted

        return self._transact(write, write=True)

    def mark_interrupted(self, owner: str, message: str) -> list[TickRecord]:
        """Close `owner`'s open ticks as `interrupted` (a forced stop); returns them."""

        def write(conn: Connection) -> list[TickRecord]:
            open_ticks = ticks_table.c.status.in_(OPEN_STATUSES) & (ticks_table.c.owner == owner)
            rows = conn.execute(select(ticks_table).where(open_ticks)).all()
            conn.execute(
                update(ticks_table)
                .where(open_ticks)
                .values(status="interrupted", finished_at=wall_now(), message=message)
            )
            return [_tick(r) for r in rows]

        return self._transact(write, write=True)

    def last_tick(self, schedule: str) -> TickRecord | None:
        """The latest recorded tick of `schedule` (any status)."""
        found = self.ticks(schedule, limit=1)
        return found[0] if found else None

    def ticks(self, schedule: str | None = None, *, limit: int = 100) -> list[TickRecord]:
        """Recorded ticks, latest tick first; of one schedule, or of all."""
        stmt = select(ticks_table).order_by(ticks_table.c.tick_time.desc(), ticks_table.c.schedule)
        if schedule is not None:
            stmt = stmt.where(ticks_table.c.schedule == schedule)

        def read(conn: Connection) -> list[TickRecord]:
            return [_tick(r) for r in conn.execute(stmt.limit(limit)).all()]

        return self._transact(read, write=False)

    def count_ticks(self) -> dict[str, int]:
        """Number of recorded ticks by status."""

        def read(conn: Connection) -> dict[str, int]:
            rows = conn.execute(
                select(ticks_table.c.status, func.count()).group_by(ticks_table.c.status)
            ).all()
            return {status: int(n) for status, n in rows}

        return self._transact(read, write=False)

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Release the connections (to the process's pool of this database, see
        `orchestrator.state_engine`)."""
        if self._lock is not None:
            self._engine.dispose()

    def __enter__(self) -> ScheduleStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def _guard(self) -> Iterator[None]:
        if self._lock is None:
            yield
        else:
            with self._lock:
                yield

    def _transact(self, work: Callable[[Connection], _T], *, write: bool) -> _T:
        with self._guard(), self._engine.connect() as conn:
            if not write:
                conn.execution_options(**{READ_ONLY: True})
            with conn.begin():
                return work(conn)


def _key(schedule: str, tick_time: datetime) -> Any:
    return (ticks_table.c.schedule == schedule) & (ticks_table.c.tick_time == tick_time)


def _tick(row: Row[Any]) -> TickRecord:
    return TickRecord(
        schedule=row.schedule,
        tick_time=row.tick_time,
        status=cast(TickStatus, row.status),
        owner=row.owner,
        run_id=row.run_id,
        claimed_at=row.claimed_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        message=row.message,
    )


def _host_and_pid(owner: str) -> tuple[str, int]:
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    return host, int(pid_text) if pid_text.isdigit() else 0


def _holder_gone(row: Row[Any]) -> bool:
    """A lease holder of this host whose process no longer exists."""
    return bool(row.host == socket.gethostname() and not pid_alive(int(row.pid)))
