"""One write-audit-publish cycle: the only way data reaches `main`.

1. branch from `main`'s current snapshot; 2. write the result to the branch (a full refresh
replaces every row); 3. audit the branch head with DuckDB; 4. publish exactly the audited
snapshot by compare-and-swap of `main`, removing the branch; 5. on a blocking audit failure or a
conflict, `main` is untouched and the branch is kept for inspection.
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import duckdb
import pyarrow as pa
from pyiceberg.schema import Schema
from pyiceberg.table import Table

from lakehouse import duck
from lakehouse.audits import Check, CheckResult, failing_counts_by_group, run_checks
from lakehouse.branches import (
    Lakehouse,
    main_snapshot_id,
    publish,
    remove_branch,
    write_branch,
)
from lakehouse.errors import PublishConflictError, SluiceError
from lakehouse.provenance import Provenance, main_lineage, snapshot_provenance
from lakehouse.reads import (
    create_alias_view,
    create_files_view,
    create_view,
    quote,
    remember_columns,
    remember_snapshot_files,
    snapshot_select,
)
from lakehouse.relation_writes import (
    direct_writable,
    relation_reader,
    relation_schema,
    write_relation_files,
)
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
    sequence_number: int = 0
    """Iceberg sequence number of `snapshot_id`: orders the publishes of one table."""
    table: Table | None = field(default=None, repr=False, compare=False)
    """The table as the publish left it (None unless published): spares a reload to whoever
    maintains the table right after."""

    @property
    def failed_checks(self) -> tuple[CheckResult, ...]:
        return tuple(c for c in self.checks if c.blocking)


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
    # Schema-qualified views (the audited table's own name, referenced tables) need a catalog
    # of the session's own; the audited rows' views have one-part names: temporary views.
    named = bool(references) or any(c.kind in BY_NAME for c in checks)
    con = duck.connect(own_catalog=named)
    temporary = not named
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
        if any(c.kind in BY_NAME for c in checks):
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


def _overlapping_write(
    table: Table, base: int, base_sequence: int, window: RowWindow
) -> str | None:
    """Why the snapshots `main` gained since `base` conflict with a write of `window`, or None
    when they only touched other partitions (so the write can be re-applied on top).

    `base` may have been expired meanwhile by table maintenance (many publishes during one
    write): the snapshots newer than it are still checked, because expiry keeps every write
    that is not covered by a newer one, and a covering write overlaps whatever its covered
    write overlapped."""
    for snapshot in main_lineage(table):
        if snapshot.snapshot_id == base:
            return None
        if (snapshot.sequence_number or 0) <= base_sequence:
            break
        prov = snapshot_provenance(table, snapshot.snapshot_id)
        if prov is None:
            return f"snapshot {snapshot.snapshot_id} was not written by Sluice"
        if prov.window is None:
            return f"run {prov.run_id} replaced the whole table"
        if window.overlaps(*prov.window):
            return f"run {prov.run_id} wrote the same rows ({prov.partition})"
    if table.snapshot_by_id(base) is None:
        return None
    return f"main no longer descends from snapshot {base} (rolled back?)"


def _sequence(table: Table, snapshot_id: int) -> int:
    snapshot = table.snapshot_by_id(snapshot_id)
    return int(snapshot.sequence_number or 0) if snapshot is not None else 0


def write_audit_publish(
    lh: Lakehouse,
    identifier: str,
    data: pa.RecordBatchReader | duckdb.DuckDBPyRelation,
    *,
    branch: str,
    provenance: Provenance,
    checks: Sequence[Check] = (),
    window: RowWindow | None = None,
    partitions: Sequence[RowWindow] = (),
) -> WapResult:
    """Materialize `data` as the new content of table `identifier` (or of its rows in `window`)
    through WAP.

    Guarantees: `main` only ever moves to a snapshot whose error-severity checks all passed;
    rerunning with the same data yields the same rows, never duplicates; a window write leaves
    every other row untouched. With `partitions` (a ranged write: the partitions that make up
    `window`), the checks run per partition and are reported per partition; there is still one
    write and one publish.

    `data` is a stream of Arrow batches or a DuckDB relation; a relation written whole-table
    is run by DuckDB straight into Parquet files when the table allows (`relation_writes`).

    Concurrent writers: the first attempt is optimistic (the table lock is held only for each
    commit, so writers audit in parallel). If `main` moved meanwhile because another writer
    published other partitions, the write is re-applied on the new `main` and audited again,
    now holding the table lock from the write through the publish: on one host no other writer
    can commit in between, so the re-apply cannot lose again (across hosts it is retried, at
    most `REAPPLY_ATTEMPTS` times in all). For `CONTENDED_S` after such a lost race, writes of
    the table start the locked way. A writer of the same rows (or of the whole table) makes
    this raise `PublishConflictError` naming the partition.
    """
    relation = data if isinstance(data, duckdb.DuckDBPyRelation) else None
    schema = storable_schema(data.schema) if relation is None else relation_schema(relation)
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
    base_sequence = _sequence(table, base)
    file_schema = write_schema(table, schema)
    if relation is not None and window is None and direct_writable(table, file_schema):
        written = write_relation_files(table, relation, file_schema, prefix=branch)
    else:
        reader = relation_reader(relation) if relation is not None else data
        assert isinstance(reader, pa.RecordBatchReader)
        split = window.split if window else None
        written = write_data_files(table, reader, file_schema, prefix=branch, split=split)
    by_key = written.paths_by_key()
    for paths in (written.paths, *by_key.values()):
        remember_columns(paths, file_schema.names)
    if window is not None:
        provenance = provenance.model_copy(update={"window": tuple(window.to_json())})
    properties = provenance.model_copy(
        update={"checks": tuple(c.name for c in checks if c.severity == "error")}
    ).to_properties()
    row_filter = window.iceberg_filter(table.schema()) if window else None
    # What one write added does not depend on the base it is applied to: checked once.
    placed = (window_check(table, written.paths, window),) if window is not None else ()

    known_files = by_key if partitions and set(by_key) <= {p.label for p in partitions} else None

    loaded = [table]  # the first write may commit through the table `ensure_table` loaded

    def cycle(base: int) -> WapResult:
        """Write the branch on `base`, audit it, publish it (PublishConflictError if `main`
        is no longer `base`)."""
        recent = loaded.pop() if loaded else None
        if recent is not None and main_snapshot_id(recent) != base:
            recent = None
        head, written_table = write_branch(
            lh,
            identifier,
            branch=branch,
            base_snapshot_id=base,
            paths=written.paths,
            properties=properties,
            row_filter=row_filter,
            recent=recent,
        )
        if window is None:  # a whole-table write replaced every file: the head holds these
            remember_snapshot_files(written_table, head, written.paths)
        results = placed + audit_snapshot(
            lh,
            identifier,
            head,
            checks,
            window,
            partitions=partitions,
            table=written_table,
            partition_files=known_files,
        )
        head_snapshot = written_table.snapshot_by_id(head)
        sequence = int(head_snapshot.sequence_number or 0) if head_snapshot is not None else 0
        if any(r.blocking for r in results):
            return WapResult(
                "audit_failed", identifier, branch, base, head, written.rows, results, sequence
            )
        published = publish(
            lh, identifier, branch=branch, base_snapshot_id=base, head=head, table=written_table
        )
        return WapResult(
            "published", identifier, branch, base, head, written.rows, results, sequence, published
        )

    optimistic = window is None or not _lost_recently(lh, identifier)
    for attempt in range(1, REAPPLY_ATTEMPTS + 1):
        if attempt == 1 and optimistic:
            try:
                return cycle(base)
            except PublishConflictError:
                if window is None:
                    raise
                _lost_race(lh, identifier)
                continue
        assert window is not None
        with lh.locks.hold_across(identifier):
            base, base_sequence = _rebase(
                lh, identifier, (base, base_sequence), window, branch, written=attempt > 1
            )
            try:
                return cycle(base)
            except PublishConflictError:  # a writer of another host moved main
                if attempt == REAPPLY_ATTEMPTS:
                    raise
        time.sleep(min(0.5, 0.02 * 2**attempt) * random.uniform(0.2, 1.5))
    raise AssertionError("unreachable")


CONTENDED_S = 30.0
"""After a writer of this process lost a publish race on a table, its writers of that table
skip the optimistic attempt for this long: they hold the table lock from the write through the
publish at once. Under contention an optimistic attempt mostly loses, and its write and audit
are wasted work that delays everyone (two processes backfilling one table lost 16 first
attempts of 20)."""
_races_lock = threading.Lock()
_lost_races: dict[tuple[str, str, str], float] = {}


def _race_key(lh: Lakehouse, identifier: str) -> tuple[str, str, str]:
    catalog = lh.catalog
    return catalog.name, repr(sorted(catalog.properties.items())), identifier


def _lost_race(lh: Lakehouse, identifier: str) -> None:
    with _races_lock:
        _lost_races[_race_key(lh, identifier)] = time.monotonic()


def _lost_recently(lh: Lakehouse, identifier: str) -> bool:
    with _races_lock:
        lost = _lost_races.get(_race_key(lh, identifier))
    return lost is not None and time.monotonic() - lost < CONTENDED_S


def _rebase(
    lh: Lakehouse,
    identifier: str,
    base: tuple[int, int],
    window: RowWindow,
    branch: str,
    *,
    written: bool,
) -> tuple[int, int]:
    """The current `main` (id, sequence number) to apply a write of `window` on (after
    dropping the branch written on `base`, when `written`); raises `PublishConflictError`
    (keeping the branch) when a snapshot `main` gained since `base` wrote the same rows or the
    whole table."""
    table = lh.table(identifier)
    current = main_snapshot_id(table)
    assert current is not None
    reason = _overlapping_write(table, base[0], base[1], window)
    if reason is not None:
        raise PublishConflictError(
            f"{window.label} of {identifier} conflicts: {reason}; branch {branch!r} "
            "is kept and main is untouched",
            asset=identifier,
        )
    if written:
        remove_branch(lh, identifier, branch)
    return current, _sequence(table, current)
