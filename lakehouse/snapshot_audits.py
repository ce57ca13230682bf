"""Auditing a snapshot: every check of an asset as DuckDB queries over the snapshot's rows (or
its rows of each partition of a ranged write), and the window check of a partition write.

The audited rows are the view `this`; checks that name tables (the audited one itself, others
they reference) get those names as views too, on a session with a catalog of its own. The rest
run on a session whose views are temporary (`duck.connect(own_catalog=False)`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import duckdb
from pyiceberg.schema import Schema
from pyiceberg.table import Table

from lakehouse import duck
from lakehouse.audits import Check, CheckResult, failing_counts_by_group, run_checks
from lakehouse.branches import Lakehouse, main_snapshot_id
from lakehouse.reads import (
    create_alias_view,
    create_files_view,
    create_view,
    quote,
    snapshot_select,
)
from lakehouse.tables import load_table, split_identifier
from lakehouse.windows import RowWindow

AUDIT_VIEW = "this"


def audit_snapshot(
    lh: Lakehouse,
    identifier: str,
    snapshot_id: int,
    checks: Sequence[Check],
    window: RowWindow | None = None,
    *,
    partitions: Sequence[RowWindow] = (),
    table: Table | None = None,
    partition_files: Mapping[str, Sequence[str]] | None = None,
) -> tuple[CheckResult, ...]:
    """Run `checks` over one snapshot (its rows in `window` only, when given); referenced
    tables are read at their `main`.

    With `partitions` (the partitions of a ranged write, inside `window`), every check means
    what it means for one partition: it is evaluated over each partition's rows only, and each
    result is named `check [partition]`, so `unique` or `row_count` hold in a ranged write
    exactly when they hold in writes of one partition each. The results are those of auditing
    each partition on its own (`run_checks` on a view of its rows), but most checks are counted
    for `AUDIT_BATCH` partitions at once (see `_audit_partitions`); only a partition that fails
    a check is visited alone, for the failing rows' samples. `table`, when given, is a loaded
    table whose metadata holds `snapshot_id` (saves a reload). `partition_files` maps partition
    labels to the snapshot's files of each partition when the caller knows them (a ranged write
    replaced the whole range, so within it the branch holds exactly the files it wrote, one
    partition per file): no planning per partition then.
    """
    if not checks:
        return ()
    if table is None or table.snapshot_by_id(snapshot_id) is None:
        table = lh.table(identifier)
    references = sorted({r for c in checks for r in c.references} - {identifier})
    by_name = any(c.kind in BY_NAME for c in checks)
    # Schema-qualified views (the audited table's own name, referenced tables) need a catalog
    # of the session's own; the audited rows' views have one-part names: temporary views.
    temporary = not (by_name or references)
    con = duck.connect(own_catalog=not temporary)
    try:

        def partition_select(partition: RowWindow) -> str:
            if partition_files is None:
                return snapshot_select(con, table, snapshot_id, partition)
            files = partition_files.get(partition.label, ())
            return snapshot_select(con, table, snapshot_id, partition, files)

        def batch_select(batch: Sequence[RowWindow], group: str) -> str:
            """The rows of every partition of `batch`, each with its position in `group`.

            Contiguous partitions are read in one scan of their span (its files planned once,
            or the partitions' known files), each row tagged by the partition whose window
            holds it: with the comparisons of that partition's own predicate, so partition `i`
            gets exactly the rows its own view shows (a ranged write's file holds rows of its
            own partition only). Otherwise each partition's own select is stacked."""
            position = _position_sql(batch, table.schema())
            if position is None:
                return " UNION ALL ".join(
                    f"SELECT {number} AS {quote(group)}, * FROM ({partition_select(p)})"
                    for number, p in enumerate(batch)
                )
            first, last = batch[0], batch[-1]
            label = f"{first.label}..{last.label}"
            span = RowWindow(first.column, first.start, last.end, label, first.transform)
            if partition_files is None:
                rows = snapshot_select(con, table, snapshot_id, span)
            else:
                files = [f for p in batch for f in partition_files.get(p.label, ())]
                rows = snapshot_select(con, table, snapshot_id, span, files)
            return f"SELECT {position} AS {quote(group)}, * FROM ({rows})"

        if partitions:
            select = partition_select(partitions[0])
        else:
            select = snapshot_select(con, table, snapshot_id, window)
        _point(con, AUDIT_VIEW, select, temporary=temporary)
        if by_name:
            create_alias_view(con, split_identifier(identifier), (AUDIT_VIEW,))
        for ref in references:
            other = load_table(lh.catalog, ref)
            other_main = main_snapshot_id(other) if other is not None else None
            if other is not None and other_main is not None:
                create_view(con, split_identifier(ref), other, other_main)
        if not partitions:
            return tuple(run_checks(con, AUDIT_VIEW, checks))
        return _audit_partitions(
            con, checks, partitions, partition_select, batch_select, select, temporary
        )
    finally:
        con.close()


def _point(con: duckdb.DuckDBPyConnection, view: str, select: str, *, temporary: bool) -> None:
    """(Re)create view `view` (a one-part name) as `select`, temporary if told."""
    kind = "TEMP VIEW" if temporary else "VIEW"
    con.execute(f"CREATE OR REPLACE {kind} {quote(view)} AS {select}")


BY_NAME = frozenset({"sql", "expression", "relationships"})
"""Check kinds whose SQL may name the audited table itself (a subquery, a custom query): the
audit gives the table's name to the audited rows for them."""

AUDIT_BATCH = 32
"""Partitions whose checks are counted by one query: the queries of a ranged audit do not
grow with the range, and neither does their memory (a `unique` check holds the keys of at most
this many partitions at once)."""
GROUPED_VIEW = "__sluice_partitions"


def _audit_partitions(
    con: duckdb.DuckDBPyConnection,
    checks: Sequence[Check],
    partitions: Sequence[RowWindow],
    partition_select: Callable[[RowWindow], str],
    batch_select: Callable[[Sequence[RowWindow], str], str],
    first_select: str,
    temporary: bool,
) -> tuple[CheckResult, ...]:
    """The results of `run_checks` on each partition's rows (the `this` view showing the first
    partition, as `first_select`), named `check [partition]`, in partition then check order.
    Its views are temporary ones when `temporary` (as `this` is).

    Per batch of partitions, a view holds the rows of all of them, each tagged with its
    partition's position (`batch_select`); `failing_counts_by_group` counts the checks it can
    over that view, per partition. A partition is then visited alone (`this` re-pointed at it)
    only for the checks it fails, to sample their rows, and for the checks that cannot be
    counted so (`sql`, `relationships`, ...), which run as they always did: the results are the
    same, with a few queries per batch instead of one per check and partition.
    """
    columns = {str(c).lower() for c in con.table(AUDIT_VIEW).columns}
    group = next(
        name
        for n in range(len(columns) + 1)
        if (name := "__sluice_partition" + "_" * n).lower() not in columns
    )
    shown = partitions[0]
    results: list[CheckResult] = []
    for offset in range(0, len(partitions), AUDIT_BATCH):
        batch = partitions[offset : offset + AUDIT_BATCH]
        stacked = batch_select(batch, group)
        _point(con, GROUPED_VIEW, stacked, temporary=temporary)
        counts = failing_counts_by_group(
            con, GROUPED_VIEW, checks, group_column=group, groups=len(batch)
        )
        for number, partition in enumerate(batch):
            known = [c[number] if c is not None else None for c in counts]
            if any(k != 0 for k in known) and partition is not shown:
                select = first_select if partition is partitions[0] else partition_select(partition)
                _point(con, AUDIT_VIEW, select, temporary=temporary)
                shown = partition
            results += [
                dataclasses.replace(r, name=f"{r.name} [{partition.label}]")
                for r in run_checks(con, AUDIT_VIEW, checks, failing=known)
            ]
    return tuple(results)


def _position_sql(batch: Sequence[RowWindow], schema: Schema) -> str | None:
    """SQL giving, for a row of the windows' span, the position in `batch` of the window that
    holds it (a binary search over the windows' bounds), or None unless the windows are
    contiguous: each one ends with the very literal the next one starts with. The comparisons
    are those of the windows' own predicates (`RowWindow.sql_predicate`), so a row of the span
    is at position `i` exactly when window `i`'s predicate holds for it."""
    bounds = [w.sql_bounds(schema) for w in batch]
    column = batch[0].sql_column()
    if any(w.column != batch[0].column for w in batch) or any(
        bounds[i][1] != bounds[i + 1][0] for i in range(len(batch) - 1)
    ):
        return None

    def search(low: int, high: int) -> str:
        if high - low == 1:
            return str(low)
        middle = (low + high) // 2
        return (
            f"CASE WHEN {column} < {bounds[middle][0]} THEN {search(low, middle)} "
            f"ELSE {search(middle, high)} END"
        )

    return search(0, len(batch))


def window_check(table: Table, paths: Sequence[str], window: RowWindow) -> CheckResult:
    """Every written row lies inside the window: a partition write must never touch rows of
    another partition (they would survive the next replace of that partition)."""
    con = duck.connect(own_catalog=False)
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
