"""The backfill records of the run history: one row per backfill, one per (asset, partition).

Functions over an open connection, each run by `StateStore` inside one of its transactions;
`StateStore` is the only caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from sqlalchemy import Connection, bindparam, insert, select, tuple_, update

from orchestrator.state_records import (
    ABANDONED_ERROR,
    BackfillPartition,
    BackfillRecord,
    BackfillState,
    utc_now,
)
from orchestrator.state_rows import backfill_record
from orchestrator.state_tables import backfill_partitions_table, backfills_table

KEYS_PER_QUERY = 400
"""(asset, partition) pairs looked up per query: far below any database's bound-parameter
limit."""


def start(
    conn: Connection, backfill_id: str, *, selection: str, first: str, last: str, ranged: bool
) -> None:
    """Record a new backfill, or mark an existing one (a resume) running again."""
    found = conn.execute(
        select(backfills_table.c.backfill_id).where(backfills_table.c.backfill_id == backfill_id)
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
                created_at=utc_now(),
                finished_at=None,
            )
        )
    else:
        conn.execute(
            update(backfills_table)
            .where(backfills_table.c.backfill_id == backfill_id)
            .values(status="running", finished_at=None)
        )


def set_partitions(
    conn: Connection, backfill_id: str, partitions: Sequence[BackfillPartition]
) -> None:
    """Upsert the state of (asset, partition) pairs (the last one given for a pair wins):
    one lookup per `KEYS_PER_QUERY` pairs, then one executemany update and one insert."""
    table = backfill_partitions_table
    latest = {(item.asset, item.partition): item for item in partitions}
    keys = list(latest)
    existing: set[tuple[str, str]] = set()
    for first in range(0, len(keys), KEYS_PER_QUERY):
        chunk = keys[first : first + KEYS_PER_QUERY]
        existing.update(
            (str(row.asset), str(row.partition_key))
            for row in conn.execute(
                select(table.c.asset, table.c.partition_key).where(
                    (table.c.backfill_id == backfill_id)
                    & tuple_(table.c.asset, table.c.partition_key).in_(chunk)
                )
            )
        )
    updates = [
        {"b_asset": a, "b_partition": p, "b_state": i.state, "b_run": i.run_id, "b_error": i.error}
        for (a, p), i in latest.items()
        if (a, p) in existing
    ]
    if updates:
        conn.execute(
            update(table)
            .where(
                (table.c.backfill_id == backfill_id)
                & (table.c.asset == bindparam("b_asset"))
                & (table.c.partition_key == bindparam("b_partition"))
            )
            .values(
                state=bindparam("b_state"), run_id=bindparam("b_run"), error=bindparam("b_error")
            ),
            updates,
        )
    inserts = [
        {
            "backfill_id": backfill_id,
            "asset": a,
            "partition_key": p,
            "state": i.state,
            "run_id": i.run_id,
            "error": i.error,
        }
        for (a, p), i in latest.items()
        if (a, p) not in existing
    ]
    if inserts:
        conn.execute(insert(table), inserts)


def finish(conn: Connection, backfill_id: str, status: str) -> None:
    conn.execute(
        update(backfills_table)
        .where(backfills_table.c.backfill_id == backfill_id)
        .values(status=status, finished_at=utc_now())
    )


def newest(conn: Connection, limit: int) -> list[BackfillRecord]:
    """Backfills, newest first, with per-state partition counts."""
    rows = conn.execute(
        select(backfills_table).order_by(backfills_table.c.created_at.desc()).limit(limit)
    ).all()
    return [backfill_record(conn, row) for row in rows]


def one(
    conn: Connection, backfill_id: str
) -> tuple[BackfillRecord, list[BackfillPartition]] | None:
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
    return backfill_record(conn, row), [
        BackfillPartition(
            asset=i.asset,
            partition=i.partition_key,
            state=cast(BackfillState, i.state),
            run_id=i.run_id,
            error=i.error,
        )
        for i in items
    ]


def abandon(conn: Connection, dead_runs: Sequence[str]) -> None:
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
        .values(status="abandoned", finished_at=utc_now())
    )
