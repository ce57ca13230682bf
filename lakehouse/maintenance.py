"""Table maintenance: snapshot expiry in small batches, manifest merging, orphan-file removal.

Every commit of a table copies its whole metadata, which grows with each snapshot kept, so a
table that is never maintained gets slower to write with every publish. Maintenance keeps the
metadata small without changing anything a reader or the orchestrator can observe:

- `main`, and every other branch or tag, point where they pointed: expiry never moves a ref and
  never removes a snapshot a ref points at. It runs as one catalog commit per batch that
  asserts every ref is unchanged, under the table lock, retried like every other commit.
- Expiry keeps (see `plan_expiry`): the newest `keep_last` snapshots of `main`'s history; the
  head of the newest write covering each row window (partition), up to and including the
  newest whole-table write, so that `provenance.published_history` and every per-partition
  answer derived from it stay exactly what they were; the snapshots of every other branch
  down to the `main` snapshot it was created from (so an audit branch can still be published
  or inspected); and the snapshot a rollback went back to while a snapshot it stepped over is
  still kept by a ref. Everything else may go, oldest first, never more than a batch at once
  (one large expiry costs superlinear time while it holds the table lock).
- Expiry deletes no file. `remove_orphan_files` deletes files under the table location that
  no snapshot still in the metadata references and that the metadata log does not name, and
  only when older than a safety age, so files of in-flight writes are never touched.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pyarrow import fs as pafs
from pyiceberg.manifest import ManifestEntryStatus
from pyiceberg.table import Table
from pyiceberg.table.refs import MAIN_BRANCH, SnapshotRefType
from pyiceberg.table.snapshots import Snapshot
from pyiceberg.table.update import (
    AssertRefSnapshotId,
    AssertTableUUID,
    RemoveSnapshotsUpdate,
    SetPropertiesUpdate,
)

from lakehouse.branches import Lakehouse, retrying_commit
from lakehouse.errors import SluiceError
from lakehouse.provenance import main_lineage, published_history
from lakehouse.tables import TABLE_PROPERTIES


class MaintenanceError(SluiceError):
    """Maintenance could not run (unsupported storage, a commit that kept failing)."""


# ---- planning ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpiryPlan:
    """What expiry may remove from one table's metadata, computed from the metadata alone."""

    snapshots: int
    """Snapshots in the metadata now."""
    retained: frozenset[int]
    expirable: tuple[int, ...]
    """Snapshots that may be expired: first those `main` never held (abandoned re-apply
    branches, snapshots a rollback stepped over), then `main`'s old history, oldest first."""


def _order(snapshot: Snapshot) -> tuple[int, int]:
    return (snapshot.sequence_number or 0, snapshot.timestamp_ms)


def _parse_window(window: tuple[str, str, str]) -> tuple[str, datetime, datetime] | None:
    column, start, end = window
    try:
        return column, datetime.fromisoformat(start), datetime.fromisoformat(end)
    except ValueError:
        return None


def _covered(spans: list[tuple[datetime, datetime]], start: datetime, end: datetime) -> bool:
    """Whether `[start, end)` lies inside the union of `spans` (sorted, non-overlapping)."""
    point = start
    for low, high in spans:
        if low > point:
            return False
        if high > point:
            point = high
        if point >= end:
            return True
    return point >= end


def _merge(spans: list[tuple[datetime, datetime]], start: datetime, end: datetime) -> None:
    """Add `[start, end)` to `spans`, keeping them sorted and non-overlapping."""
    spans.append((start, end))
    spans.sort()
    merged: list[tuple[datetime, datetime]] = []
    for low, high in spans:
        if merged and low <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    spans[:] = merged


def provenance_heads(table: Table, lineage: Sequence[Snapshot] | None = None) -> set[int]:
    """The heads of the writes that still decide some partition's provenance.

    Walking `main`'s published history newest first (as `orchestrator.published` does), a
    window write is needed unless newer writes on the same column already cover its whole
    window; the walk ends at, and keeps, the newest whole-table write. A window that cannot be
    compared (unparseable bounds, naive and aware times mixed) is always kept.
    """
    needed: set[int] = set()
    spans: dict[str, list[tuple[datetime, datetime]]] = {}
    for snapshot_id, provenance in published_history(table, lineage):
        if provenance.window is None or provenance.partition is None:
            needed.add(snapshot_id)
            break
        parsed = _parse_window(provenance.window)
        if parsed is None:
            needed.add(snapshot_id)
            continue
        column, start, end = parsed
        column_spans = spans.setdefault(column, [])
        try:
            if not _covered(column_spans, start, end):
                needed.add(snapshot_id)
            _merge(column_spans, start, end)
        except TypeError:  # naive and aware bounds cannot be compared: keep it
            needed.add(snapshot_id)
    return needed


def _branch_chains(table: Table, lineage: set[int], by_id: dict[int, Snapshot]) -> set[int]:
    """Every ref head, and for branches other than `main` their snapshots down to (and
    including) the first snapshot of `main`'s history: the base they were created from."""
    kept: set[int] = set()
    for name, ref in table.metadata.refs.items():
        kept.add(ref.snapshot_id)
        if name == MAIN_BRANCH or ref.snapshot_ref_type != SnapshotRefType.BRANCH:
            continue
        snapshot = by_id.get(ref.snapshot_id)
        while snapshot is not None:
            kept.add(snapshot.snapshot_id)
            if snapshot.snapshot_id in lineage or snapshot.parent_snapshot_id is None:
                break
            snapshot = by_id.get(snapshot.parent_snapshot_id)
    return kept


def _rollback_targets(table: Table, by_id: dict[int, Snapshot]) -> list[Snapshot]:
    """Snapshots `main` was moved back to: a log entry older than an entry before it."""
    targets: list[Snapshot] = []
    newest: tuple[int, int] | None = None
    for entry in table.metadata.snapshot_log:
        snapshot = by_id.get(entry.snapshot_id)
        if snapshot is None:
            continue
        if newest is not None and _order(snapshot) < newest:
            targets.append(snapshot)
        newest = max(newest, _order(snapshot)) if newest is not None else _order(snapshot)
    return targets


def plan_expiry(table: Table, keep_last: int) -> ExpiryPlan:
    """Which snapshots of `table` expiry keeps and which it may remove (see the module doc).

    Guarantee: after removing any subset of `expirable`, `published_history(table)` returns
    the same writes for every partition the orchestrator can ask about, `main` and every ref
    point at the same snapshots, and each non-main branch still descends from its base.
    """
    if keep_last < 1:
        raise MaintenanceError(f"keep_last must be at least 1, got {keep_last}")
    snapshots = table.metadata.snapshots
    by_id = {s.snapshot_id: s for s in snapshots}
    lineage = main_lineage(table)
    lineage_ids = {s.snapshot_id for s in lineage}
    retained = {s.snapshot_id for s in lineage[:keep_last]}
    retained |= provenance_heads(table, lineage)
    retained |= _branch_chains(table, lineage_ids, by_id)
    # A rolled-back-over snapshot still in the log is told apart from `main`'s history only by
    # the rollback target logged after it (see `main_lineage`): keep that target while such a
    # snapshot is kept.
    kept_off_main = [by_id[i] for i in retained - lineage_ids if i in by_id]
    for target in _rollback_targets(table, by_id):
        if any(_order(s) > _order(target) for s in kept_off_main):
            retained.add(target.snapshot_id)
    off_main = sorted(
        (s for s in snapshots if s.snapshot_id not in retained | lineage_ids), key=_order
    )
    old_main = sorted((s for s in lineage if s.snapshot_id not in retained), key=_order)
    return ExpiryPlan(
        snapshots=len(snapshots),
        retained=frozenset(retained),
        expirable=tuple(s.snapshot_id for s in (*off_main, *old_main)),
    )


# ---- committing --------------------------------------------------------------------------


def _refs_unchanged(table: Table) -> tuple[AssertTableUUID | AssertRefSnapshotId, ...]:
    """Requirements that fail the commit if the table or any of its refs moved meanwhile."""
    return (
        AssertTableUUID(uuid=table.metadata.table_uuid),
        *(
            AssertRefSnapshotId(ref=name, snapshot_id=ref.snapshot_id)  # type: ignore[call-arg]
            for name, ref in sorted(table.metadata.refs.items())
        ),
    )


@dataclass(frozen=True)
class ExpiryResult:
    """What `expire_snapshots` did (or, with `dry_run`, would do) to one table."""

    identifier: str
    snapshots_before: int
    expired: tuple[int, ...]
    snapshots_after: int
    expirable_left: int
    dry_run: bool = False


def expire_snapshots(
    lh: Lakehouse,
    identifier: str,
    *,
    keep_last: int,
    max_batch: int,
    batches: int | None = 1,
    min_batch: int = 1,
    dry_run: bool = False,
    table: Table | None = None,
) -> ExpiryResult:
    """Expire what `plan_expiry` allows, at most `max_batch` snapshots per catalog commit.

    Runs up to `batches` commits (None: until nothing is left), each re-planned on freshly
    loaded metadata under the table lock and asserting that no ref moved. Does nothing unless
    at least `min_batch` snapshots are expirable (automatic maintenance uses this to commit
    only every few publishes). Cheap when there is nothing to do: one metadata load, no lock.
    With `dry_run`, only reports what the first batches would remove. `table`, when given, is
    the table freshly loaded (only to decide whether anything is due: commits reload it).
    """
    if max_batch < 1:
        raise MaintenanceError(f"max_batch must be at least 1, got {max_batch}")
    table = table if table is not None else lh.table(identifier)
    before = len(table.metadata.snapshots)
    plan = plan_expiry(table, keep_last)  # without the lock: only a commit needs it
    if len(plan.expirable) < max(min_batch, 1):
        return ExpiryResult(identifier, before, (), before, len(plan.expirable), dry_run)
    if dry_run:
        wanted = len(plan.expirable) if batches is None else batches * max_batch
        chosen = plan.expirable[:wanted] if len(plan.expirable) >= min_batch else ()
        left = len(plan.expirable) - len(chosen)
        return ExpiryResult(identifier, before, chosen, before - len(chosen), left, True)

    def batch(table: Table) -> tuple[tuple[int, ...], int, int]:
        plan = plan_expiry(table, keep_last)
        if len(plan.expirable) < min_batch or not plan.expirable:
            return (), len(plan.expirable), plan.snapshots
        chosen = plan.expirable[:max_batch]
        heads = {ref.snapshot_id for ref in table.metadata.refs.values()}
        if heads & set(chosen):  # plan_expiry never does this; refuse rather than drop a ref
            raise MaintenanceError(f"refusing to expire a ref head of {identifier}")
        update = RemoveSnapshotsUpdate(snapshot_ids=list(chosen))  # type: ignore[call-arg]
        lh.catalog.commit_table(table, _refs_unchanged(table), (update,))
        return chosen, len(plan.expirable) - len(chosen), plan.snapshots - len(chosen)

    expired: list[int] = []
    left, after = 0, before
    done = 0
    while batches is None or done < batches:
        chosen, left, after = retrying_commit(lh, identifier, batch)
        expired.extend(chosen)
        done += 1
        if not chosen or left < max(min_batch, 1):
            break
    return ExpiryResult(identifier, before, tuple(expired), after, left)


def ensure_table_properties(lh: Lakehouse, identifier: str, table: Table | None = None) -> bool:
    """Give the table the `TABLE_PROPERTIES` it lacks (never overriding a value a user set);
    True if it changed anything. pyiceberg honours the manifest-merge ones for appends and
    `add_files`, the commits that add manifests (deletes rewrite only the manifests they
    touch), and the metadata-log one at every commit. `table`, when given, is the table freshly
    loaded (the commit, if any, reloads it)."""
    table = table if table is not None else lh.table(identifier)
    if all(key in table.metadata.properties for key in TABLE_PROPERTIES):
        return False

    def step(table: Table) -> bool:
        missing = {k: v for k, v in TABLE_PROPERTIES.items() if k not in table.properties}
        if not missing:
            return False
        lh.catalog.commit_table(
            table,
            (AssertTableUUID(uuid=table.metadata.table_uuid),),
            (SetPropertiesUpdate(updates=missing),),
        )
        return True

    return retrying_commit(lh, identifier, step)


# ---- orphan files ------------------------------------------------------------------------


def _strip_scheme(path: str) -> str:
    """`file:///a/b` -> `/a/b`, `s3://bucket/k` -> `bucket/k`: how pyarrow lists paths."""
    scheme, sep, rest = path.partition("://")
    return rest if sep and scheme else path


def referenced_files(table: Table, assume_expired: Collection[int] = ()) -> set[str]:
    """Every file the table's metadata still needs, without URI scheme: the current metadata
    file and those in the metadata log, statistics files, and for every snapshot in the
    metadata (but those in `assume_expired`) its manifest list, its manifests and every data or
    delete file they hold live."""
    metadata = table.metadata
    files = {table.metadata_location, *(e.metadata_file for e in metadata.metadata_log)}
    files |= {s.statistics_path for s in metadata.statistics}
    files |= {s.statistics_path for s in metadata.partition_statistics}
    seen: set[str] = set()
    for snapshot in metadata.snapshots:
        if snapshot.snapshot_id in assume_expired:
            continue
        files.add(snapshot.manifest_list)
        for manifest in snapshot.manifests(table.io):
            files.add(manifest.manifest_path)
            if manifest.manifest_path in seen:
                continue
            seen.add(manifest.manifest_path)
            for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=False):
                if entry.status != ManifestEntryStatus.DELETED:
                    files.add(entry.data_file.file_path)
    return {_strip_scheme(f) for f in files}


@dataclass(frozen=True)
class OrphanFile:
    path: str
    size: int
    modified: datetime


@dataclass(frozen=True)
class OrphanResult:
    """What `remove_orphan_files` found: the files it removed (or would remove)."""

    identifier: str
    scanned: int
    removed: tuple[OrphanFile, ...]
    too_young: int
    """Unreferenced files kept because they are younger than the safety age."""
    dry_run: bool = False

    @property
    def bytes_removed(self) -> int:
        return sum(f.size for f in self.removed)


def _listing(location: str) -> tuple[pafs.FileSystem, str, str, Iterable[pafs.FileInfo]]:
    try:
        filesystem, root = pafs.FileSystem.from_uri(location)
    except (ValueError, OSError, NotImplementedError) as exc:  # unknown scheme, bad URI
        raise MaintenanceError(f"cannot list files under {location}: {exc}") from exc
    scheme = location.partition("://")[0] if "://" in location else ""
    selector = pafs.FileSelector(root.rstrip("/"), recursive=True, allow_not_found=True)
    return filesystem, root, scheme, filesystem.get_file_info(selector)


def remove_orphan_files(
    lh: Lakehouse,
    identifier: str,
    older_than: timedelta,
    *,
    dry_run: bool = False,
    now: datetime | None = None,
    assume_expired: Collection[int] = (),
) -> OrphanResult:
    """Delete files under the table's location that nothing in its metadata references and
    that were last modified more than `older_than` ago.

    The listing is taken before the metadata is loaded, so a file committed meanwhile is seen
    as referenced; a file written by a write still in flight is younger than the safety age
    (choose it longer than any write takes). Only files below the table's own location are
    ever considered. Deleting is not a commit: the table lock is not needed. `assume_expired`
    (for a dry run only) counts those snapshots as gone, to report what expiring them first
    would leave behind.
    """
    if assume_expired and not dry_run:
        raise MaintenanceError("assume_expired is only for dry runs")
    if older_than < timedelta(0):
        raise MaintenanceError("older_than must not be negative")
    location = lh.table(identifier).location()
    _, _, scheme, infos = _listing(location)
    listed = [i for i in infos if i.type == pafs.FileType.File]
    referenced = referenced_files(lh.table(identifier), assume_expired)
    cutoff = (now or datetime.now(UTC)) - older_than
    removed: list[OrphanFile] = []
    young = 0
    table = lh.table(identifier)
    for info in sorted(listed, key=lambda i: i.path):
        if info.path in referenced:
            continue
        modified = info.mtime
        if modified is None:
            young += 1  # unknown age: never delete
            continue
        if modified.tzinfo is None:
            modified = modified.replace(tzinfo=UTC)
        if modified > cutoff:
            young += 1
            continue
        orphan = OrphanFile(info.path, int(info.size or 0), modified)
        if not dry_run:
            table.io.delete(f"{scheme}://{info.path}" if scheme else info.path)
        removed.append(orphan)
    return OrphanResult(identifier, len(listed), tuple(removed), young, dry_run)
