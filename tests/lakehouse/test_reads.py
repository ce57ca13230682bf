"""Snapshots as DuckDB views."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest

from lakehouse import audits, reads
from lakehouse.branches import Lakehouse, main_snapshot_id, publish, write_branch
from lakehouse.lru import LruCache
from lakehouse.provenance import Provenance
from lakehouse.reads import create_view, snapshot_select
from lakehouse.tables import ensure_table, storable_schema, write_schema
from lakehouse.writes import write_data_files


def _describe(con: duckdb.DuckDBPyConnection, view: str) -> list[tuple[str, str]]:
    return [(row[0], row[1]) for row in con.sql(f"DESCRIBE {view}").fetchall()]


def test_view_reads_exactly_the_snapshot_it_was_created_on(lh: Lakehouse, wap, rows) -> None:
    first = wap("r.orders", {"id": [1, 2], "status": ["new", "new"]}, "r1")
    second = wap("r.orders", {"id": [2, 3], "status": ["paid", "new"]}, "r2")
    assert main_snapshot_id(lh.table("r.orders")) == second.snapshot_id

    assert rows("r.orders", first.snapshot_id) == [
        {"id": 1, "status": "new"},
        {"id": 2, "status": "new"},
    ]
    assert rows("r.orders") == [{"id": 2, "status": "paid"}, {"id": 3, "status": "new"}]

    # A view created before the next publish keeps reading its snapshot afterwards.
    con = duckdb.connect()
    create_view(con, ("silver", "orders"), lh.table("r.orders"), second.snapshot_id)
    wap("r.orders", {"id": [9], "status": ["gone"]}, "r3")
    assert con.sql('SELECT id FROM "silver"."orders" ORDER BY id').fetchall() == [(2,), (3,)]
    con.close()


def _append(lh: Lakehouse, identifier: str, data: pa.Table, run_id: str) -> None:
    table = ensure_table(lh.catalog, identifier, storable_schema(data.schema))
    base = main_snapshot_id(table)
    assert base is not None
    written = write_data_files(
        table,
        pa.RecordBatchReader.from_batches(data.schema, data.to_batches()),
        write_schema(table, storable_schema(data.schema)),
        prefix=f"sluice-{run_id}",
    )
    head, _ = write_branch(
        lh,
        identifier,
        branch=f"sluice-{run_id}",
        base_snapshot_id=base,
        paths=written.paths,
        properties=Provenance(run_id=run_id, code_version="v1").to_properties(),
        replace=False,
    )
    publish(lh, identifier, branch=f"sluice-{run_id}", base_snapshot_id=base, head=head)


def test_column_added_later_reads_as_null_in_older_files(lh: Lakehouse, wap, rows) -> None:
    old = wap("r.events", {"id": [1, 2]}, "r1")
    _append(lh, "r.events", pa.table({"id": [3], "score": [0.5]}), "r2")

    assert rows("r.events") == [
        {"id": 1, "score": None},
        {"id": 2, "score": None},
        {"id": 3, "score": 0.5},
    ]
    # The snapshot from before the column existed is read with its own schema.
    assert rows("r.events", old.snapshot_id) == [{"id": 1}, {"id": 2}]


def _select(lh: Lakehouse, identifier: str) -> str:
    table = lh.table(identifier)
    snapshot = main_snapshot_id(table)
    assert snapshot is not None
    return snapshot_select(duckdb.connect(), table, snapshot)


def test_files_of_one_schema_are_read_without_unifying_their_schemas(
    lh: Lakehouse, wap, rows, monkeypatch: pytest.MonkeyPatch
) -> None:
    wap("r.items", {"id": [1, 2], "name": ["a", "b"]}, "r1")
    monkeypatch.setattr(reads, "_file_schemas", LruCache(100))  # as another process
    assert "union_by_name" not in _select(lh, "r.items").lower()  # one file
    assert rows("r.items") == [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    _append(lh, "r.items", pa.table({"id": [3], "name": ["c"]}), "r2")
    _append(lh, "r.items", pa.table({"id": [4], "name": [None]}), "r3")

    assert "union_by_name" not in _select(lh, "r.items").lower()
    assert rows("r.items") == [
        {"id": 1, "name": "a"},
        {"id": 2, "name": "b"},
        {"id": 3, "name": "c"},
        {"id": 4, "name": None},
    ]


def test_files_of_different_types_are_unified_by_name(lh: Lakehouse, wap, rows) -> None:
    wap("r.counts", {"n": pa.array([1, 2], pa.int32())}, "r1")
    _append(lh, "r.counts", pa.table({"n": pa.array([2**40], pa.int64())}), "r2")  # int -> long

    assert "union_by_name" in _select(lh, "r.counts").lower()
    assert rows("r.counts") == [{"n": 1}, {"n": 2}, {"n": 2**40}]


def test_column_absent_from_every_file_reads_as_typed_null(lh: Lakehouse, wap, rows) -> None:
    wap("r.people", {"id": [1], "born": pa.array([19000], pa.date32())}, "r1")
    wap("r.people", {"id": [2, 3]}, "r2")  # `born` is kept by the table, absent from the files

    assert rows("r.people") == [{"id": 2, "born": None}, {"id": 3, "born": None}]
    con = duckdb.connect()
    create_view(con, ("p",), lh.table("r.people"), main_snapshot_id(lh.table("r.people")))
    assert _describe(con, "p") == [("id", "BIGINT"), ("born", "DATE")]
    con.close()


def test_table_with_zero_rows_gives_an_empty_view_with_its_columns(lh: Lakehouse, wap) -> None:
    schema = pa.schema([("id", pa.int64()), ("name", pa.string()), ("at", pa.timestamp("us"))])
    fresh = ensure_table(lh.catalog, "r.fresh", schema)  # only the initial, file-less snapshot
    published = wap("r.published_empty", schema.empty_table(), "r1")  # one empty data file
    assert published.rows == 0

    con = duckdb.connect()
    create_view(con, ("fresh",), fresh, main_snapshot_id(fresh))
    table = lh.table("r.published_empty")
    create_view(con, ("published",), table, main_snapshot_id(table))
    expected = [("id", "BIGINT"), ("name", "VARCHAR"), ("at", "TIMESTAMP")]
    for view in ("fresh", "published"):
        assert _describe(con, view) == expected
        assert con.sql(f"SELECT count(*) FROM {view}").fetchall() == [(0,)]
    con.close()


def test_awkward_table_view_and_column_names_are_quoted(lh: Lakehouse, wap) -> None:
    wap("r.odd", {'my "col"': [1], "select": ["x"]}, "r1")
    con = duckdb.connect()
    table = lh.table("r.odd")
    create_view(con, ("weird schema", "view.name"), table, main_snapshot_id(table))
    got = con.sql('SELECT "my ""col""", "select" FROM "weird schema"."view.name"').fetchall()
    assert got == [(1, "x")]
    con.close()


def test_view_over_an_audit_branch_shows_unpublished_rows_only_there(
    lh: Lakehouse, wap, rows
) -> None:
    wap("r.audited", {"id": [1]}, "r1")
    failed = wap("r.audited", {"id": [-5]}, "r2", checks=[audits.expression("id > 0")])
    assert failed.status == "audit_failed"
    assert rows("r.audited") == [{"id": 1}]
    assert rows("r.audited", failed.snapshot_id) == [{"id": -5}]


def test_a_snapshots_file_list_is_planned_once_per_process(lh: Lakehouse, wap, monkeypatch) -> None:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from lakehouse import reads
    from lakehouse.windows import RowWindow

    planned: list[int] = []
    real = reads._plan_files

    def counting(table, snapshot_id, window):  # type: ignore[no-untyped-def]
        planned.append(snapshot_id)
        return real(table, snapshot_id, window)

    monkeypatch.setattr(reads, "_plan_files", counting)
    stamps = [datetime(2024, 1, 1, 23, 30), datetime(2024, 1, 2, 0, 30)]
    first = wap("r.cached", {"ts": stamps, "id": [1, 2]}, "c1")
    table = lh.table("r.cached")
    # The whole-table write recorded its head's files: those that planning finds.
    remembered = reads.snapshot_files(table, first.snapshot_id)
    assert planned == [] and remembered == real(table, first.snapshot_id, None)

    monkeypatch.setattr(reads, "_file_lists", LruCache(256))  # as another process
    files = reads.snapshot_files(table, first.snapshot_id)
    assert files == remembered and reads.snapshot_files(table, first.snapshot_id) == files
    assert planned.count(first.snapshot_id) == 1  # the second read came from the cache

    second = wap("r.cached", {"ts": stamps, "id": [3, 4]}, "c2")
    monkeypatch.setattr(reads, "_file_lists", LruCache(256))
    table = lh.table("r.cached")
    assert reads.snapshot_files(table, second.snapshot_id) != files  # another snapshot
    assert reads.snapshot_files(table, first.snapshot_id) == files  # still valid

    # Equal instants in two timezones are different windows of a timestamp column without
    # time zone (its values are wall-clock times): they must not share a cache entry.
    paris = ZoneInfo("Europe/Paris")
    local = RowWindow(
        "ts", datetime(2024, 1, 2, tzinfo=paris), datetime(2024, 1, 3, tzinfo=paris), "d"
    )
    utc = RowWindow("ts", local.start.astimezone(ZoneInfo("UTC")), local.end, "d")
    assert utc.start == local.start  # the same instant
    con = duckdb.connect()
    for window, expected in ((utc, [3, 4]), (local, [4])):
        create_view(con, ("v",), table, second.snapshot_id, window)
        assert [r[0] for r in con.sql("SELECT id FROM v ORDER BY id").fetchall()] == expected
    con.close()
    assert planned.count(second.snapshot_id) == 3  # whole, and each window once
