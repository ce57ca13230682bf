"""Reading run-history rows back as records: steps with their checks, step counts, backfills.

Every reader of `StateStore` goes through these, so records come out the same whichever
query found them: an unpartitioned step has partition `None` (stored as ''), JSON columns are
decoded, checks keep their recorded order, and steps sort by start time, then asset and
partition.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Connection, Row, func, select

from orchestrator.state_records import (
    BackfillRecord,
    CheckRecord,
    RunRecord,
    RunStatus,
    StepRecord,
    StepStatus,
)
from orchestrator.state_tables import backfill_partitions_table, check_results_table, steps_table


def backfill_record(conn: Connection, row: Row[Any]) -> BackfillRecord:
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


def step_counts(conn: Connection, run_ids: Sequence[str]) -> dict[str, dict[str, int]]:
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


def checks_by_step(conn: Connection, stmt: Any) -> dict[int, list[CheckRecord]]:
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


def run_record(row: Row[Any], counts: Mapping[str, int]) -> RunRecord:
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


def step_record(row: Row[Any], checks: list[CheckRecord]) -> StepRecord:
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


def step_key(step: StepRecord) -> tuple[str, str]:
    return (step.asset, step.partition or "")


def step_order(step: StepRecord) -> tuple[bool, datetime, str, str]:
    """Started steps by start time, then not-yet-started ones; ties by asset and partition."""
    started = step.started_at
    return (started is None, started or datetime.min.replace(tzinfo=UTC), *step_key(step))
