"""The only place refs change: audit branches, compare-and-swap publish, removal, rollback.

pyiceberg has no fast-forward: `set_current_snapshot` accepts any snapshot, even one that drops
another writer's work. Every move of `main` here first checks, on freshly loaded metadata, that
`main` is where the caller expects; the commit itself asserts the same ref id, so the check and
the swap are atomic. Ref commits are not retried by pyiceberg, so they are retried here, and
after any failure the first question is whether the intended state is already there.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.expressions import BooleanExpression
from pyiceberg.table import Table, Transaction
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.refs import MAIN_BRANCH, SnapshotRefType
from pyiceberg.table.snapshots import ancestors_of
from pyiceberg.table.update import (
    AssertRefSnapshotId,
    RemoveSnapshotRefUpdate,
    SetSnapshotRefUpdate,
)
from pyiceberg.table.update.snapshot import ManageSnapshots

from lakehouse.errors import BranchError, PublishConflictError
from lakehouse.locks import TableLocks
from lakehouse.overwrites import live_data_files, live_entries, remember_entries, replace_all
from lakehouse.provenance import Provenance, snapshot_provenance
from lakehouse.sql_catalog import applied
from lakehouse.tables import load_table

COMMIT_ATTEMPTS = 8
T = TypeVar("T")


@dataclass(frozen=True)
class Lakehouse:
    """A catalog plus the per-table commit locks every writer must share."""

    catalog: Catalog
    locks: TableLocks

    def table(self, identifier: str) -> Table:
        table = load_table(self.catalog, identifier)
        if table is None:
            raise BranchError(f"table {identifier} does not exist", asset=identifier)
        return table


@dataclass(frozen=True)
class BranchInfo:
    """An audit branch left in the catalog (failed audit, conflict or killed run)."""

    identifier: str
    branch: str
    snapshot_id: int
    provenance: Provenance | None


def main_snapshot_id(table: Table) -> int | None:
    ref = table.metadata.refs.get(MAIN_BRANCH)
    return ref.snapshot_id if ref is not None else None


def branch_snapshot_id(table: Table, branch: str) -> int | None:
    ref = table.metadata.refs.get(branch)
    return ref.snapshot_id if ref is not None else None


def is_ancestor(table: Table, snapshot_id: int, of: int | None) -> bool:
    """Whether `snapshot_id` is `of` or one of its ancestors."""
    if of is None:
        return False
    return any(
        s.snapshot_id == snapshot_id for s in ancestors_of(table.snapshot_by_id(of), table.metadata)
    )


def _matching_files(table: Table, snapshot_id: int, row_filter: BooleanExpression) -> bool:
    """Whether any data file of the snapshot may hold rows matching `row_filter`."""
    return any(
        True for _ in table.scan(snapshot_id=snapshot_id, row_filter=row_filter).plan_files()
    )


class _Transaction(Transaction):
    """A pyiceberg transaction that computes its pending metadata once per staged change.

    `Transaction.table_metadata` re-applies every staged update to a deep copy of the whole
    table metadata at each access, and staging one delete plus one append reads it about
    forty times: most of a small write's time. The result only changes when the staged
    updates (a new tuple each time) or the base metadata change, so it is kept until then,
    and it is not deep-copied: pyiceberg's metadata models are frozen, each update makes a
    new model, and this view is only read (the catalog applies the updates itself at the
    commit). The copy grew with the snapshots a table keeps, one per partition.
    """

    _memo: tuple[object, object, TableMetadata] | None = None

    @property
    def table_metadata(self) -> TableMetadata:
        base, updates, memo = self._table.metadata, self._updates, self._memo
        if not updates:
            return base  # nothing staged: the table's own (immutable) metadata, not a copy
        if memo is None or memo[0] is not base or memo[1] is not updates:
            memo = (base, updates, applied(base, updates)[0])
            self._memo = memo
        return memo[2]

    def _rebuild_snapshot_updates(self) -> None:
        """Refuse pyiceberg's own retry of a failed commit: it re-stages the snapshots on the
        refreshed metadata but drops every other ref update, the audit branch's creation
        included. The caller (`retrying_commit`) retries the whole step on a fresh load."""
        raise CommitFailedException("the table changed under this commit; retried on a fresh load")


def _manage(table: Table) -> ManageSnapshots:
    """`table.manage_snapshots()`, on a `_Transaction`."""
    return ManageSnapshots(_Transaction(table, autocommit=True))


def _require_audit_branch(identifier: str, branch: str) -> None:
    if branch == MAIN_BRANCH:
        raise BranchError("main cannot be used as an audit branch", asset=identifier)


def retrying_commit(
    lh: Lakehouse, identifier: str, step: Callable[[Table], T], recent: Table | None = None
) -> T:
    """Run `step` on a freshly loaded table under the table lock, retrying commit races.

    With `recent` (a table object the caller just committed through), the first try uses it
    instead of reloading. That is safe because every commit carries its requirements (for a
    publish: `main` is still where `recent` saw it), which the catalog checks against the
    current metadata; if `recent` was stale in a way that matters, the commit fails (or its
    updates do not apply to the current metadata) and the step is retried at once on a fresh
    load.
    """
    delay = 0.05
    attempt = 0
    while True:
        with lh.locks.hold(identifier):
            stale_ok = recent is not None
            table = recent if recent is not None else lh.table(identifier)
            recent = None
            try:
                return step(table)
            except CommitFailedException:
                if not stale_ok and attempt + 1 >= COMMIT_ATTEMPTS:
                    raise
            except ValueError as exc:  # a stale sequence number: another commit won the race
                # With a reused table, any error applying the updates may be staleness (the
                # catalog re-applies them to its current metadata): retried once on a fresh load.
                if not stale_ok and (
                    "sequence number" not in str(exc) or attempt + 1 >= COMMIT_ATTEMPTS
                ):
                    raise
        if stale_ok:
            continue  # the reused table was stale: reload now, without counting or waiting
        attempt += 1
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


def write_branch(
    lh: Lakehouse,
    identifier: str,
    *,
    branch: str,
    base_snapshot_id: int,
    paths: tuple[str, ...],
    properties: dict[str, str],
    replace: bool = True,
    row_filter: BooleanExpression | None = None,
    recent: Table | None = None,
) -> tuple[int, Table]:
    """Create `branch` at `base_snapshot_id` holding `paths`; returns the branch head and the
    table as it was right after the commit (its metadata holds the head, for a caller that
    reads the branch next).

    With `replace`, the rows matching `row_filter` (all rows when None) are removed first, so a
    partition is replaced exactly. One catalog commit: the branch never exists half-written.
    A whole-table replace is one overwrite snapshot; a partition replace is a delete and an
    append snapshot. Every snapshot of the commit carries `properties`. `recent`, when given,
    is a table object loaded since `base_snapshot_id` became main's head (spares a reload: a
    stale one fails the commit, which is retried on a fresh load)."""

    _require_audit_branch(identifier, branch)
    wanted = set(paths)

    def landed(table: Table, existing: int) -> bool:
        """Whether `existing` is exactly this commit (file names are unique per write)."""
        prov = snapshot_provenance(table, existing)
        if prov is None or prov.to_properties() != properties:
            return False
        if not is_ancestor(table, base_snapshot_id, of=existing):
            return False
        files = live_data_files(table, existing)
        return files == wanted if replace and row_filter is None else wanted <= files

    def step(table: Table) -> tuple[int, Table]:
        existing = branch_snapshot_id(table, branch)
        if existing is not None:
            if landed(table, existing):
                return existing, table  # an earlier attempt of this commit did land
            raise BranchError(f"branch {branch!r} of {identifier} already exists", asset=identifier)
        if table.snapshot_by_id(base_snapshot_id) is None:
            raise PublishConflictError(
                f"snapshot {base_snapshot_id} of {identifier} was expired while the write was "
                "under way (main moved on meanwhile); main is untouched",
                asset=identifier,
            )
        tx = _Transaction(table)
        ManageSnapshots(tx).create_branch(base_snapshot_id, branch).commit()
        if replace and row_filter is None:
            replaced = live_entries(table, base_snapshot_id)
            if replaced:
                added = replace_all(tx, table.io, replaced, paths, properties, branch)
                head, committed = _committed(tx)
                remember_entries(committed, head, added)
                return head, committed
        elif (
            replace
            and row_filter is not None
            # Only delete when there is something to delete: pyiceberg warns otherwise, and
            # silencing that with `warnings.catch_warnings` is not thread-safe.
            and _matching_files(table, base_snapshot_id, row_filter)
        ):
            tx.delete(row_filter, snapshot_properties=properties, branch=branch)
        # The paths were just written under names unique to this write (never referenced by
        # the table), so pyiceberg's duplicate check, a read of every manifest, is skipped.
        tx.add_files(
            list(paths), snapshot_properties=properties, branch=branch, check_duplicate_files=False
        )
        return _committed(tx)

    def _committed(tx: Transaction) -> tuple[int, Table]:
        committed = tx.commit_transaction()  # the table object, updated to the new metadata
        head = branch_snapshot_id(committed, branch)
        if head is None:
            raise BranchError(f"branch {branch!r} of {identifier} vanished after its write")
        return head, committed

    return retrying_commit(lh, identifier, step, recent=recent)


def publish(
    lh: Lakehouse,
    identifier: str,
    *,
    branch: str,
    base_snapshot_id: int,
    head: int,
    table: Table | None = None,
) -> Table:
    """Move `main` from `base_snapshot_id` to exactly `head`, and remove the branch; returns
    the table as that commit left it.

    Idempotent: if `head` is already in `main`'s history the branch is just removed. If `main`
    moved to something else, raises `PublishConflictError` and keeps the branch. Refuses (with
    `BranchError`) a `head` that does not descend from `base_snapshot_id`: moving `main` there
    would drop what `main` holds. `table`, when given, is the table as the branch write left
    it: it spares a reload (the compare-and-swap is checked by the catalog all the same).
    """
    _require_audit_branch(identifier, branch)

    def step(table: Table) -> Table:
        current = main_snapshot_id(table)
        if current is not None and is_ancestor(table, head, of=current):
            if branch in table.metadata.refs:
                _manage(table).remove_branch(branch).commit()
            return table
        if current != base_snapshot_id:
            raise PublishConflictError(
                f"main of {identifier} moved from {base_snapshot_id} to {current} while "
                f"branch {branch!r} was being audited; the branch is kept and main is untouched",
                asset=identifier,
            )
        if not is_ancestor(table, base_snapshot_id, of=head):
            raise BranchError(
                f"snapshot {head} of {identifier} does not descend from main's snapshot "
                f"{base_snapshot_id}; refusing to publish it (main is untouched)",
                asset=identifier,
            )
        # The updates and requirements `ManageSnapshots.set_current_snapshot(head)` plus
        # `.remove_branch(branch)` stage, committed as they are: staging them through a
        # transaction deep-copies the whole metadata twice more, and metadata grows with the
        # partitions a table keeps the newest write of.
        requirements: tuple[AssertRefSnapshotId, ...] = (
            AssertRefSnapshotId(snapshot_id=current, ref=MAIN_BRANCH),  # type: ignore[call-arg]
        )
        updates: tuple[SetSnapshotRefUpdate | RemoveSnapshotRefUpdate, ...] = (
            SetSnapshotRefUpdate(  # type: ignore[call-arg]
                snapshot_id=head, ref_name=MAIN_BRANCH, type=SnapshotRefType.BRANCH
            ),
        )
        if branch in table.metadata.refs:
            ref = table.metadata.refs[branch]
            requirements += (AssertRefSnapshotId(snapshot_id=ref.snapshot_id, ref=branch),)  # type: ignore[call-arg]
            updates += (RemoveSnapshotRefUpdate(ref_name=branch),)  # type: ignore[call-arg]
        response = table.catalog.commit_table(table, requirements, updates)
        return Table(
            identifier=table.name(),
            metadata=response.metadata,
            metadata_location=response.metadata_location,
            io=table.io,
            catalog=table.catalog,
        )

    return retrying_commit(lh, identifier, step, recent=table)


def remove_branch(lh: Lakehouse, identifier: str, branch: str) -> bool:
    """Remove an audit branch; False if it was not there. `main` cannot be removed."""
    if branch == MAIN_BRANCH:
        raise BranchError("refusing to remove the main branch")

    def step(table: Table) -> bool:
        if branch not in table.metadata.refs:
            return False
        _manage(table).remove_branch(branch).commit()
        return True

    return retrying_commit(lh, identifier, step)


def iter_tables(catalog: Catalog) -> Iterator[str]:
    """Every table identifier in the catalog, as `namespace.name`."""
    for namespace in catalog.list_namespaces():
        for ident in catalog.list_tables(namespace):
            yield ".".join(ident)


def list_branches(catalog: Catalog, prefix: str = "sluice-") -> list[BranchInfo]:
    """Audit branches (names starting with `prefix`) across the catalog."""
    found: list[BranchInfo] = []
    for identifier in iter_tables(catalog):
        table = load_table(catalog, identifier)
        if table is None:
            continue
        for name, ref in sorted(table.metadata.refs.items()):
            if ref.snapshot_ref_type == SnapshotRefType.BRANCH and name.startswith(prefix):
                found.append(
                    BranchInfo(
                        identifier,
                        name,
                        ref.snapshot_id,
                        snapshot_provenance(table, ref.snapshot_id),
                    )
                )
    return found


def rollback(
    lh: Lakehouse, identifier: str, *, to_snapshot_id: int, expected_main: int | None
) -> None:
    """Point `main` back at an earlier snapshot of its own history (compare-and-swap)."""

    def step(table: Table) -> None:
        current = main_snapshot_id(table)
        if current != expected_main:
            raise PublishConflictError(
                f"main of {identifier} moved to {current} during rollback", asset=identifier
            )
        if not is_ancestor(table, to_snapshot_id, of=current):
            raise BranchError(
                f"snapshot {to_snapshot_id} is not in the history of main of {identifier}",
                asset=identifier,
            )
        _manage(table).set_current_snapshot(snapshot_id=to_snapshot_id).commit()

    retrying_commit(lh, identifier, step)
