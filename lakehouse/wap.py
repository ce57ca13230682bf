"""One write-audit-publish cycle: the only way data reaches `main`.

1. branch from `main`'s current snapshot; 2. write the result to the branch (a full refresh
replaces every row); 3. audit the branch head with DuckDB (`snapshot_audits`); 4. publish
exactly the audited snapshot by compare-and-swap of `main`, removing the branch; 5. on a
blocking audit failure or a conflict, `main` is untouched and the branch is kept for
inspection.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import duckdb
import pyarrow as pa
from pyiceberg.table import Table

from lakehouse.audits import Check, CheckResult
from lakehouse.branches import (
    Lakehouse,
    main_snapshot_id,
    publish,
    remove_branch,
    write_branch,
)
from lakehouse.errors import PublishConflictError, SluiceError
from lakehouse.provenance import Provenance, main_lineage, snapshot_provenance
from lakehouse.reads import remember_columns, remember_snapshot_files
from lakehouse.relation_writes import (
    direct_writable,
    relation_reader,
    relation_schema,
    write_relation_files,
)
from lakehouse.snapshot_audits import audit_snapshot, window_check
from lakehouse.tables import ensure_table, storable_schema, write_schema
from lakehouse.windows import RowWindow
from lakehouse.writes import write_data_files

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
        rows = written.rows
        if rows is None:  # the files were described for the commit: the head counts their rows
            summary = head_snapshot.summary if head_snapshot is not None else None
            rows = int(summary.get("added-records") or 0) if summary is not None else 0
        if any(r.blocking for r in results):
            return WapResult(
                "audit_failed", identifier, branch, base, head, rows, results, sequence
            )
        published = publish(
            lh, identifier, branch=branch, base_snapshot_id=base, head=head, table=written_table
        )
        return WapResult(
            "published", identifier, branch, base, head, rows, results, sequence, published
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
