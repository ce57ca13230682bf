"""One write-audit-publish cycle: the only way data reaches `main`.

1. branch from `main`'s current snapshot; 2. write the result to the branch (a full refresh
replaces every row); 3. audit the branch head with DuckDB; 4. publish exactly the audited
snapshot by compare-and-swap of `main`, removing the branch; 5. on a blocking audit failure or a
conflict, `main` is untouched and the branch is kept for inspection.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import pyarrow as pa
from pyiceberg.table import Table

from lakehouse import duck
from lakehouse.audits import Check, CheckResult, run_checks
from lakehouse.branches import (
    Lakehouse,
    main_snapshot_id,
    publish,
    remove_branch,
    write_branch_table,
)
from lakehouse.errors import PublishConflictError, SluiceError
from lakehouse.provenance import Provenance, main_lineage, snapshot_provenance
from lakehouse.reads import (
    create_alias_view,
    create_files_view,
    create_view,
    quote,
    snapshot_select,
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

    With `partitions` (the partitions of a ranged write, inside `window`), every check runs
    once per partition over that partition's rows only, and each result is named
    `check [partition]`: a check such as `unique` or `row_count` means the same in a ranged
    write as in a write of one partition. One connection and one set of views serve all of
    them; per partition the audit view is re-pointed at the files of that partition only, so a
    ranged audit reads each row once per check, as per-partition writes do. `table`, when given,
    is a loaded table whose metadata holds `snapshot_id` (saves a reload).
    `partition_files` maps partition labels to the snapshot's files of each partition when the
    caller knows them (a ranged write replaced the whole range, so within it the branch holds
    exactly the files it wrote, one partition per file): no planning per partition then.
    """
    if not checks:
        return ()
    if table is None or table.snapshot_by_id(snapshot_id) is None:
        table = lh.table(identifier)
    con = duck.connect()
    audit_view = quote(AUDIT_VIEW)
    try:

        def partition_select(partition: RowWindow) -> str:
            if partition_files is None:
                return snapshot_select(con, table, snapshot_id, partition)
            files = partition_files.get(partition.label, ())
            return snapshot_select(con, table, snapshot_id, partition, files)

        if partitions:
            select = partition_select(partitions[0])
        else:
            select = snapshot_select(con, table, snapshot_id, window)
        con.execute(f"CREATE OR REPLACE VIEW {audit_view} AS {select}")
        create_alias_view(con, split_identifier(identifier), (AUDIT_VIEW,))
        for ref in sorted({r for c in checks for r in c.references} - {identifier}):
            other = load_table(lh.catalog, ref)
            other_main = main_snapshot_id(other) if other is not None else None
            if other is not None and other_main is not None:
                create_view(con, split_identifier(ref), other, other_main)
        if not partitions:
            return tuple(run_checks(con, AUDIT_VIEW, checks))
        results: list[CheckResult] = []
        for number, partition in enumerate(partitions):
            if number:
                select = partition_select(partition)
                con.execute(f"CREATE OR REPLACE VIEW {audit_view} AS {select}")
            results += [
                r.model_copy(update={"name": f"{r.name} [{partition.label}]"})
                for r in run_checks(con, AUDIT_VIEW, checks)
            ]
        return tuple(results)
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
    data: pa.RecordBatchReader,
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

    Concurrent writers: the first attempt is optimistic (the table lock is held only for each
    commit, so writers audit in parallel). If `main` moved meanwhile because another writer
    published other partitions, the write is re-applied on the new `main` and audited again,
    now holding the table lock from the write through the publish: on one host no other writer
    can commit in between, so the re-apply cannot lose again (across hosts it is retried, at
    most `REAPPLY_ATTEMPTS` times in all). For `CONTENDED_S` after such a lost race, writes of
    the table start the locked way. A writer of the same rows (or of the whole table) makes
    this raise `PublishConflictError` naming the partition.
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
    base_sequence = _sequence(table, base)
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
    # What one write added does not depend on the base it is applied to: checked once.
    placed = (window_check(table, written.paths, window),) if window is not None else ()

    by_key = written.paths_by_key()
    known_files = by_key if partitions and set(by_key) <= {p.label for p in partitions} else None

    def cycle(base: int) -> WapResult:
        """Write the branch on `base`, audit it, publish it (PublishConflictError if `main`
        is no longer `base`)."""
        head, written_table = write_branch_table(
            lh,
            identifier,
            branch=branch,
            base_snapshot_id=base,
            paths=written.paths,
            properties=properties,
            row_filter=row_filter,
        )
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
        publish(
            lh, identifier, branch=branch, base_snapshot_id=base, head=head, table=written_table
        )
        return WapResult(
            "published", identifier, branch, base, head, written.rows, results, sequence
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
