"""Audit branches, compare-and-swap publish, removal, listing and rollback."""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa
import pytest
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.manifest import ManifestEntry, ManifestEntryStatus
from pyiceberg.table import Table

from lakehouse import overwrites
from lakehouse.branches import (
    Lakehouse,
    branch_snapshot_id,
    is_ancestor,
    list_branches,
    main_snapshot_id,
    publish,
    remove_branch,
    rollback,
    write_branch,
)
from lakehouse.errors import BranchError, PublishConflictError
from lakehouse.lru import LruCache
from lakehouse.provenance import Provenance
from lakehouse.tables import ensure_table, storable_schema, write_schema
from lakehouse.writes import write_data_files

IDENT = "b.items"


def _props(run_id: str) -> dict[str, str]:
    return Provenance(run_id=run_id, code_version="v1").to_properties()


@pytest.fixture
def files(lh: Lakehouse) -> Callable[[list[int]], tuple[str, ...]]:
    """`files(ids)`: Parquet files holding rows with these ids, written for IDENT."""

    def write(ids: list[int]) -> tuple[str, ...]:
        data = pa.table({"id": pa.array(ids, pa.int64())})
        schema = storable_schema(data.schema)
        table = ensure_table(lh.catalog, IDENT, schema)
        reader = pa.RecordBatchReader.from_batches(data.schema, data.to_batches())
        return write_data_files(table, reader, write_schema(table, schema), prefix="t").paths

    return write


@pytest.fixture
def base(lh: Lakehouse, wap) -> int:
    """IDENT published once with ids 1, 2; returns main's snapshot id."""
    return wap(IDENT, {"id": [1, 2]}, "r0").snapshot_id


def _paths(table: Table, snapshot_id: int) -> list[str]:
    return [task.file.file_path for task in table.scan(snapshot_id=snapshot_id).plan_files()]


def _ids(rows: Callable[..., list[dict[str, int]]], snapshot_id: int | None = None) -> list[int]:
    return [r["id"] for r in rows(IDENT, snapshot_id)]


def test_write_branch_then_publish_moves_main_to_exactly_the_head(
    lh: Lakehouse, base: int, files, rows
) -> None:
    paths = files([10, 11, 12])
    head, _ = write_branch(
        lh, IDENT, branch="sluice-r1", base_snapshot_id=base, paths=paths, properties=_props("r1")
    )

    table = lh.table(IDENT)
    assert branch_snapshot_id(table, "sluice-r1") == head
    assert main_snapshot_id(table) == base  # nothing visible before the publish
    assert _ids(rows) == [1, 2]
    assert _ids(rows, head) == [10, 11, 12]  # a full refresh: the base rows are replaced

    publish(lh, IDENT, branch="sluice-r1", base_snapshot_id=base, head=head)

    table = lh.table(IDENT)
    assert main_snapshot_id(table) == head
    assert table.metadata.current_snapshot_id == head
    assert "sluice-r1" not in table.metadata.refs
    assert _ids(rows) == [10, 11, 12]


def _described(entry: ManifestEntry) -> tuple[object, ...]:
    """Everything a later overwrite copies from an entry it deletes."""
    f = entry.data_file
    return (
        entry.status,
        entry.snapshot_id,
        entry.sequence_number,
        entry.file_sequence_number,
        f.content,
        f.file_path,
        f.file_format,
        f.partition,
        f.record_count,
        f.file_size_in_bytes,
        f.column_sizes,
        f.value_counts,
        f.null_value_counts,
        f.nan_value_counts,
        f.lower_bounds,
        f.upper_bounds,
        f.split_offsets,
        f.sort_order_id,
        f.spec_id,
    )


def test_a_full_refresh_knows_its_heads_files_as_its_manifests_list_them(
    lh: Lakehouse, base: int, files, rows, monkeypatch: pytest.MonkeyPatch
) -> None:
    head, _ = write_branch(
        lh, IDENT, branch="sluice-f1", base_snapshot_id=base, paths=files([5, 6]), properties={}
    )
    table = lh.table(IDENT)
    known = overwrites.live_entries(table, head)
    monkeypatch.setattr(overwrites, "_entries", LruCache(100))  # as another process
    read = overwrites.live_entries(table, head)

    assert sorted(map(_described, known), key=str) == sorted(map(_described, read), key=str)
    assert {e.data_file.file_path for e in known} == set(_paths(table, head))

    # The next full refresh replaces exactly those files, from what this process knew.
    monkeypatch.setattr(overwrites, "_entries", LruCache(100))
    overwrites.remember_entries(table, head, [e.data_file for e in known])
    publish(lh, IDENT, branch="sluice-f1", base_snapshot_id=base, head=head)
    again, _ = write_branch(
        lh, IDENT, branch="sluice-f2", base_snapshot_id=head, paths=files([7]), properties={}
    )
    assert _ids(rows, again) == [7]
    summary = lh.table(IDENT).snapshot_by_id(again).summary
    assert summary is not None and summary["deleted-data-files"] == str(len(known))


def test_a_full_refresh_writes_one_manifest_adding_its_files_and_deleting_the_replaced(
    lh: Lakehouse, base: int, files, rows
) -> None:
    before = set(_paths(lh.table(IDENT), base))
    paths = files([10, 11])
    head, _ = write_branch(
        lh, IDENT, branch="sluice-m1", base_snapshot_id=base, paths=paths, properties={}
    )
    table = lh.table(IDENT)
    snapshot = table.snapshot_by_id(head)
    assert snapshot is not None and snapshot.sequence_number is not None

    [manifest] = snapshot.manifests(table.io)
    entries = manifest.fetch_manifest_entry(table.io, discard_deleted=False)
    by_status = {
        status: {e.data_file.file_path for e in entries if e.status == status}
        for status in ManifestEntryStatus
    }
    assert by_status[ManifestEntryStatus.ADDED] == set(paths)
    assert by_status[ManifestEntryStatus.DELETED] == before
    assert by_status[ManifestEntryStatus.EXISTING] == set()
    assert (manifest.added_files_count, manifest.deleted_files_count) == (len(paths), len(before))
    added = [e for e in entries if e.status == ManifestEntryStatus.ADDED]
    assert {e.sequence_number for e in added} == {snapshot.sequence_number}
    assert _ids(rows, head) == [10, 11]
    assert _ids(rows, base) == [1, 2]  # the replaced snapshot still reads its own rows


def test_write_branch_without_replace_keeps_the_base_rows(
    lh: Lakehouse, base: int, files, rows
) -> None:
    head, _ = write_branch(
        lh,
        IDENT,
        branch="sluice-add",
        base_snapshot_id=base,
        paths=files([3]),
        properties=_props("add"),
        replace=False,
    )
    assert _ids(rows, head) == [1, 2, 3]


def test_publish_when_main_moved_is_a_conflict_and_keeps_the_branch(
    lh: Lakehouse, base: int, files, rows
) -> None:
    head_a, _ = write_branch(
        lh,
        IDENT,
        branch="sluice-a",
        base_snapshot_id=base,
        paths=files([100]),
        properties=_props("a"),
    )
    head_b, _ = write_branch(
        lh,
        IDENT,
        branch="sluice-b",
        base_snapshot_id=base,
        paths=files([200]),
        properties=_props("b"),
    )
    publish(lh, IDENT, branch="sluice-a", base_snapshot_id=base, head=head_a)

    with pytest.raises(PublishConflictError, match="sluice-b"):
        publish(lh, IDENT, branch="sluice-b", base_snapshot_id=base, head=head_b)

    table = lh.table(IDENT)
    assert main_snapshot_id(table) == head_a
    assert _ids(rows) == [100]
    assert branch_snapshot_id(table, "sluice-b") == head_b
    assert _ids(rows, head_b) == [200]


def test_publish_is_idempotent(lh: Lakehouse, base: int, files, rows) -> None:
    head, _ = write_branch(
        lh,
        IDENT,
        branch="sluice-r1",
        base_snapshot_id=base,
        paths=files([7]),
        properties=_props("r1"),
    )
    publish(lh, IDENT, branch="sluice-r1", base_snapshot_id=base, head=head)
    snapshots = len(lh.table(IDENT).snapshots())

    publish(lh, IDENT, branch="sluice-r1", base_snapshot_id=base, head=head)

    table = lh.table(IDENT)
    assert main_snapshot_id(table) == head
    assert len(table.snapshots()) == snapshots
    assert set(table.metadata.refs) == {"main"}
    assert _ids(rows) == [7]


def test_publish_refuses_a_head_that_does_not_descend_from_main(
    lh: Lakehouse, base: int, files, rows
) -> None:
    stale, _ = write_branch(
        lh,
        IDENT,
        branch="sluice-old",
        base_snapshot_id=base,
        paths=files([5]),
        properties=_props("o"),
    )
    newer, _ = write_branch(
        lh,
        IDENT,
        branch="sluice-new",
        base_snapshot_id=base,
        paths=files([6]),
        properties=_props("n"),
    )
    publish(lh, IDENT, branch="sluice-new", base_snapshot_id=base, head=newer)

    # The caller claims main is at `newer` (true) but hands a head built on the older base.
    with pytest.raises(BranchError, match="does not descend"):
        publish(lh, IDENT, branch="sluice-old", base_snapshot_id=newer, head=stale)
    assert main_snapshot_id(lh.table(IDENT)) == newer
    assert _ids(rows) == [6]


def test_write_branch_retry_of_a_landed_commit_returns_the_same_head(
    lh: Lakehouse, base: int, files
) -> None:
    paths = files([1])
    first, _ = write_branch(
        lh, IDENT, branch="sluice-r1", base_snapshot_id=base, paths=paths, properties=_props("r1")
    )
    snapshots = len(lh.table(IDENT).snapshots())
    again, _ = write_branch(
        lh, IDENT, branch="sluice-r1", base_snapshot_id=base, paths=paths, properties=_props("r1")
    )
    assert again == first
    assert len(lh.table(IDENT).snapshots()) == snapshots


def test_a_write_that_loses_a_commit_race_lands_again_on_its_base(
    lh: Lakehouse, base: int, files, rows, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The catalog refuses the write's commit once (another writer, one that does not share
    the table lock, committed in between): the write is staged again on fresh metadata, still
    branched from its base, and the other writer's change is kept."""
    paths = files([10, 11, 12])
    original = Table._do_commit
    refused: list[bool] = []

    def racing_commit(self: Table, updates, requirements):  # type: ignore[no-untyped-def]
        if not refused:
            refused.append(True)
            other = lh.catalog.load_table(IDENT).transaction()
            other.set_properties(other="writer").commit_transaction()
            raise CommitFailedException("metadata location changed")
        return original(self, updates, requirements)

    monkeypatch.setattr(Table, "_do_commit", racing_commit)
    head, _ = write_branch(
        lh, IDENT, branch="sluice-r1", base_snapshot_id=base, paths=paths, properties=_props("r1")
    )

    table = lh.table(IDENT)
    assert refused
    assert table.properties["other"] == "writer"
    assert branch_snapshot_id(table, "sluice-r1") == head
    assert is_ancestor(table, base, of=head)
    assert main_snapshot_id(table) == base
    assert _ids(rows, head) == [10, 11, 12]


def test_write_branch_never_reuses_a_branch_holding_other_files(
    lh: Lakehouse, base: int, files, rows
) -> None:
    first, _ = write_branch(
        lh,
        IDENT,
        branch="sluice-r1",
        base_snapshot_id=base,
        paths=files([1]),
        properties=_props("r1"),
    )
    # Same name and provenance, other data: not an earlier attempt of this commit.
    with pytest.raises(BranchError, match="already exists"):
        write_branch(
            lh,
            IDENT,
            branch="sluice-r1",
            base_snapshot_id=base,
            paths=files([2]),
            properties=_props("r1"),
        )
    assert branch_snapshot_id(lh.table(IDENT), "sluice-r1") == first
    assert _ids(rows, first) == [1]


def test_main_is_never_used_as_an_audit_branch(lh: Lakehouse, base: int, files) -> None:
    with pytest.raises(BranchError, match="main"):
        publish(lh, IDENT, branch="main", base_snapshot_id=base, head=base)
    with pytest.raises(BranchError, match="main"):
        write_branch(
            lh,
            IDENT,
            branch="main",
            base_snapshot_id=base,
            paths=files([1]),
            properties=_props("x"),
        )
    assert main_snapshot_id(lh.table(IDENT)) == base


def test_remove_branch_refuses_main_and_removes_audit_branches(
    lh: Lakehouse, base: int, files
) -> None:
    with pytest.raises(BranchError, match="main"):
        remove_branch(lh, IDENT, "main")
    assert main_snapshot_id(lh.table(IDENT)) == base

    write_branch(
        lh,
        IDENT,
        branch="sluice-r1",
        base_snapshot_id=base,
        paths=files([1]),
        properties=_props("r1"),
    )
    assert remove_branch(lh, IDENT, "sluice-r1") is True
    assert remove_branch(lh, IDENT, "sluice-r1") is False
    assert set(lh.table(IDENT).metadata.refs) == {"main"}


def test_list_branches_lists_only_sluice_branches(lh: Lakehouse, base: int, files, wap) -> None:
    kept, _ = write_branch(
        lh,
        IDENT,
        branch="sluice-r1",
        base_snapshot_id=base,
        paths=files([1]),
        properties=_props("r1"),
    )
    write_branch(
        lh,
        IDENT,
        branch="feature-x",
        base_snapshot_id=base,
        paths=files([2]),
        properties=_props("f"),
    )
    lh.table(IDENT).manage_snapshots().create_tag(base, "sluice-tag").commit()
    wap("b.other", {"id": [1]}, "r9")  # published: its branch is gone

    [info] = list_branches(lh.catalog)
    assert (info.identifier, info.branch, info.snapshot_id) == (IDENT, "sluice-r1", kept)
    assert info.provenance is not None and info.provenance.run_id == "r1"


def test_rollback_moves_main_back_only_within_its_history(
    lh: Lakehouse, base: int, files, rows
) -> None:
    published, _ = write_branch(
        lh,
        IDENT,
        branch="sluice-r1",
        base_snapshot_id=base,
        paths=files([9]),
        properties=_props("r1"),
    )
    publish(lh, IDENT, branch="sluice-r1", base_snapshot_id=base, head=published)
    unpublished, _ = write_branch(
        lh,
        IDENT,
        branch="sluice-r2",
        base_snapshot_id=published,
        paths=files([8]),
        properties=_props("r2"),
    )

    with pytest.raises(BranchError, match="not in the history of main"):
        rollback(lh, IDENT, to_snapshot_id=unpublished, expected_main=published)
    with pytest.raises(PublishConflictError):
        rollback(lh, IDENT, to_snapshot_id=base, expected_main=base)  # stale expectation
    assert main_snapshot_id(lh.table(IDENT)) == published
    assert _ids(rows) == [9]

    rollback(lh, IDENT, to_snapshot_id=base, expected_main=published)
    assert main_snapshot_id(lh.table(IDENT)) == base
    assert _ids(rows) == [1, 2]
