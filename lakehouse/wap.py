"""One write-audit-publish cycle: the only way data reaches `main`.

1. branch from `main`'s current snapshot; 2. write the result to the branch (a full refresh
replaces every row); 3. audit the branch head with DuckDB; 4. publish exactly the audited
snapshot by compare-and-swap of `main`, removing the branch; 5. on a blocking audit failure or a
conflict, `main` is untouched and the branch is kept for inspection.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import pyarrow as pa
from pyiceberg.table import Table
from pyiceberg.table.snapshots import ancestors_of

from lakehouse import duck
from lakehouse.audits import Check, CheckResult, run_checks
from lakehouse.branches import (
    Lakehouse,
    main_snapshot_id,
    publish,
    remove_branch,
    write_branch,
)
from lakehouse.errors import PublishConflictError, SluiceError
from lakehouse.provenance import Provenance, snapshot_provenance
from lakehouse.reads import create_files_view, create_view
from lakehouse.tables import (
    ensure_table,
    load_table,
    split_identifier,
    storable_schema,
    write_schema,
)
from lakehouse.windows import RowWindow
from lakehouse.writes import write_data_files

AUDIT_VIEW = "this"
REAPPLY_ATTEMPTS = 40


@dataclass(frozen=True)
class WapResult:
    """What one cycle did. `snapshot_id` is the audited snapshot (on main if published)."""

    status: Literal["published", "audit_failed"]
    identifier: str
    branch: str
    base_snapshot_id: int
    snapshot_id: int
    rows: int
    checks: tuple[CheckResult, ...]

    @property
    def failed_checks(self) -> tuple[CheckResult, ...]:
        return tuple(c for c in self.checks if c.blocking)


def audit_snapshot(
    lh: Lakehouse,
    identifier: str,
    snapshot_id: int,
    checks: Sequence[Check],
    window: RowWindow | None = None,
) -> tuple[CheckResult, ...]:
    """Run `checks` over one snapshot (its rows in `window` only, when given); referenced
    tables are read at their `main`."""
    if not checks:
        return ()
    table = lh.table(identifier)
    con = duck.connect()
    try:
        create_view(con, (AUDIT_VIEW,), table, snapshot_id, window)
        create_view(con, split_identifier(identifier), table, snapshot_id, window)
        for ref in sorted({r for c in checks for r in c.references} - {identifier}):
            other = load_table(lh.catalog, ref)
            other_main = main_snapshot_id(other) if other is not None else None
            if other is not None and other_main is not None:
                create_view(con, split_identifier(ref), other, other_main)
        return tuple(run_checks(con, AUDIT_VIEW, checks))
    finally:
        con.close()


def window_check(table: Table, paths: Sequence[str], window: RowWindow) -> CheckResult:
    """Every written row lies inside the window: a partition write must never touch rows of
    another partition (they would survive the next replace of that partition)."""
    con = duck.connect()
    try:
        create_files_view(con, "written", paths)
        predicate = window.sql_predicate(table.schema())
        outside = f"SELECT * FROM written WHERE NOT coalesce({predicate}, false)"
        row = con.execute(f"SELECT count(*) FROM ({outside})").fetchall()[0]
        count = int(row[0]) if row else 0
        sample_sql = f"{outside} LIMIT 5"
        samples = con.sql(sample_sql).to_arrow_table().to_pylist() if count else []
    finally:
        con.close()
    return CheckResult(
        name=f"partition_window({window.column} in {window.label})",
        kind="partition_window",
        severity="error",
        passed=count == 0,
        failing_rows=int(count),
        samples=[{k: str(v) for k, v in row.items()} for row in samples],
    )


def _overlapping_write(table: Table, base: int, current: int, window: RowWindow) -> str | None:
    """Why the snapshots `main` gained since `base` conflict with a write of `window`, or None
    when they only touched other partitions (so the write can be re-applied on top)."""
    for snapshot in ancestors_of(table.snapshot_by_id(current), table.metadata):
        if snapshot.snapshot_id == base:
            return None
        prov = snapshot_provenance(table, snapshot.snapshot_id)
        if prov is None:
            return f"snapshot {snapshot.snapshot_id} was not written by Sluice"
        if prov.window is None:
            return f"run {prov.run_id} replaced the whole table"
        if window.overlaps(*prov.window):
            return f"run {prov.run_id} wrote the same rows ({prov.partition})"
    return f"main no longer descends from snapshot {base} (rolled back?)"


def write_audit_publish(
    lh: Lakehouse,
    identifier: str,
    data: pa.RecordBatchReader,
    *,
    branch: str,
    provenance: Provenance,
    checks: Sequence[Check] = (),
    window: RowWindow | None = None,
) -> WapResult:
    """Materialize `data` as the new content of table `identifier` (or of its rows in `window`)
    through WAP.

    Guarantees: `main` only ever moves to a snapshot whose error-severity checks all passed;
    rerunning with the same data yields the same rows, never duplicates; a window write leaves
    every other row untouched. If `main` moved meanwhile because another writer published
    other partitions, the write is re-applied on the new `main` and audited again; a writer of
    the same rows (or of the whole table) makes this raise `PublishConflictError`.
    """
    schema = storable_schema(data.schema)
    with lh.locks.hold(identifier):
        table = ensure_table(
            lh.catalog,
            identifier,
            schema,
            partitioning=window.spec_transform if window else None,
            partition_column=window.column if window else None,
        )
    base = main_snapshot_id(table)
    if base is None:
        raise SluiceError(f"table {identifier} has no main branch", asset=identifier)
    written = write_data_files(
        table,
        data,
        write_schema(table, schema),
        prefix=branch,
        split=window.split if window else None,
    )
    if window is not None:
        provenance = provenance.model_copy(update={"window": tuple(window.to_json())})
    properties = provenance.model_copy(
        update={"checks": tuple(c.name for c in checks if c.severity == "error")}
    ).to_properties()
    row_filter = window.iceberg_filter(table.schema()) if window else None
    for attempt in range(1, REAPPLY_ATTEMPTS + 1):
        head = write_branch(
            lh,
            identifier,
            branch=branch,
            base_snapshot_id=base,
            paths=written.paths,
            properties=properties,
            row_filter=row_filter,
        )
        results = audit_snapshot(lh, identifier, head, checks, window)
        if window is not None:
            results = (window_check(table, written.paths, window), *results)
        if any(r.blocking for r in results):
            return WapResult("audit_failed", identifier, branch, base, head, written.rows, results)
        try:
            publish(lh, identifier, branch=branch, base_snapshot_id=base, head=head)
        except PublishConflictError:
            if window is None or attempt == REAPPLY_ATTEMPTS:
                raise
            current_table = lh.table(identifier)
            current = main_snapshot_id(current_table)
            assert current is not None
            reason = _overlapping_write(current_table, base, current, window)
            if reason is not None:
                raise PublishConflictError(
                    f"{window.label} of {identifier} conflicts: {reason}; branch {branch!r} "
                    "is kept and main is untouched",
                    asset=identifier,
                ) from None
            remove_branch(lh, identifier, branch)
            base = current
            time.sleep(min(0.5, 0.02 * 2**attempt) * random.uniform(0.2, 1.5))
            continue
        return WapResult("published", identifier, branch, base, head, written.rows, results)
    raise AssertionError("unreachable")
