"""A DuckDB relation handed to the WAP cycle is written by DuckDB itself, with the table's types."""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lakehouse import audits, duck
from lakehouse.audits import Check
from lakehouse.branches import Lakehouse, main_snapshot_id
from lakehouse.provenance import Provenance
from lakehouse.relation_writes import direct_writable, relation_schema
from lakehouse.tables import storable_schema, write_schema
from lakehouse.wap import WapResult, write_audit_publish

TABLE = "silver.orders"


@pytest.fixture
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duck.connect()
    yield connection
    connection.close()


def _publish(
    lh: Lakehouse, data: duckdb.DuckDBPyRelation, run_id: str, checks: tuple[Check, ...] = ()
) -> WapResult:
    return write_audit_publish(
        lh,
        TABLE,
        data,
        branch=f"sluice-{run_id}",
        provenance=Provenance(run_id=run_id, code_version="v1", inputs={}),
        checks=checks,
    )


def _main_files(lh: Lakehouse) -> list[str]:
    table = lh.table(TABLE)
    snapshot = main_snapshot_id(table)
    assert snapshot is not None
    return [task.file.file_path for task in table.scan(snapshot_id=snapshot).plan_files()]


def _local(path: str) -> str:
    return path.removeprefix("file://")


def test_a_relation_is_written_by_duckdb_and_reads_back_in_pyiceberg(
    lh: Lakehouse, con: duckdb.DuckDBPyConnection
) -> None:
    relation = con.sql(
        """
        SELECT range AS id,
               CAST(range * 1.25 AS DECIMAL(12, 2)) AS amount,
               'customer ' || range AS "customer name",
               TIMESTAMP '2024-01-01 00:00:00' + to_seconds(range) AS ordered_at,
               TIMESTAMPTZ '2024-01-01 00:00:00+00' + to_hours(range) AS shipped_at,
               DATE '2024-01-01' + CAST(range AS INTEGER) AS day,
               range % 2 = 0 AS even,
               CASE WHEN range % 3 = 0 THEN NULL ELSE range / 4 END AS ratio
        FROM range(1000)
        """
    )
    result = _publish(lh, relation, "r1", (audits.unique("id"), audits.not_null("amount")))
    assert result.status == "published" and result.rows == 1000

    files = _main_files(lh)
    assert files and all(pq.read_metadata(_local(f)).created_by.startswith("DuckDB") for f in files)
    # pyiceberg's own reader (field ids by name mapping, stats from DuckDB's footers).
    back = lh.table(TABLE).scan().to_arrow().sort_by("id")
    assert back.num_rows == 1000
    first = back.slice(3, 1).to_pylist()[0]
    assert first == {
        "id": 3,
        "amount": decimal.Decimal("3.75"),
        "customer name": "customer 3",
        "ordered_at": dt.datetime(2024, 1, 1, 0, 0, 3),
        "shipped_at": dt.datetime(2024, 1, 1, 3, tzinfo=dt.UTC),
        "day": dt.date(2024, 1, 4),
        "even": False,
        "ratio": None,
    }
    # The data files' statistics let pyiceberg prune: a filter outside every value plans nothing.
    assert not list(lh.table(TABLE).scan(row_filter="id > 5000").plan_files())


def test_rows_are_cast_to_the_tables_wider_types(
    lh: Lakehouse, con: duckdb.DuckDBPyConnection
) -> None:
    wide = "SELECT CAST(range AS BIGINT) AS n, CAST(range AS DOUBLE) AS x FROM range(5)"
    narrow = "SELECT CAST(range + 10 AS INTEGER) AS n, CAST(range AS FLOAT) AS x FROM range(3)"
    assert _publish(lh, con.sql(wide), "r1").status == "published"
    assert _publish(lh, con.sql(narrow), "r2").status == "published"

    [path] = _main_files(lh)
    schema = pq.read_schema(_local(path))
    assert schema.field("n").type == pa.int64() and schema.field("x").type == pa.float64()
    back = lh.table(TABLE).scan().to_arrow().sort_by("n")
    assert back.column("n").to_pylist() == [10, 11, 12]
    assert str(lh.table(TABLE).schema().find_field("n").field_type) == "long"


def test_every_type_duckdb_returns_is_written_as_the_tables_type(
    lh: Lakehouse, con: duckdb.DuckDBPyConnection
) -> None:
    relation = con.sql(
        """
        SELECT sum(CAST(range AS INTEGER)) AS total,
               CAST(range AS UBIGINT) AS unsigned,
               CAST(range AS TINYINT) AS tiny,
               CAST('a' AS ENUM('a', 'b')) AS kind,
               TIMESTAMP_NS '2024-01-01 00:00:00.000001234' AS at_ns,
               TIMESTAMP_MS '2024-01-01 00:00:00.123' AS at_ms,
               CAST(1 AS HUGEINT) AS huge,
               TIME '12:34:56.789' AS clock,
               '\\xAA'::BLOB AS bytes,
               CAST(1.5 AS DECIMAL(30, 4)) AS wide,
               CAST(0.5 AS FLOAT) AS ratio
        FROM range(5) GROUP BY ALL
        """
    )
    assert _publish(lh, relation, "r1").status == "published"
    back = lh.table(TABLE).scan().to_arrow().sort_by("unsigned").to_pylist()
    assert [row["total"] for row in back] == [0, 1, 2, 3, 4]
    assert back[1] | {"total": None} == {
        "total": None,
        "unsigned": 1,
        "tiny": 1,
        "kind": "a",
        "at_ns": dt.datetime(2024, 1, 1, 0, 0, 0, 1),
        "at_ms": dt.datetime(2024, 1, 1, 0, 0, 0, 123000),
        "huge": 1,
        "clock": dt.time(12, 34, 56, 789000),
        "bytes": b"\xaa",
        "wide": decimal.Decimal("1.5000"),
        "ratio": 0.5,
    }


def test_a_large_result_is_cut_into_files_of_the_tables_target_size(
    lh: Lakehouse, con: duckdb.DuckDBPyConnection
) -> None:
    assert _publish(lh, con.sql("SELECT 0 AS n, '' AS payload"), "r0").status == "published"
    with lh.table(TABLE).transaction() as tx:
        tx.set_properties({"write.target-file-size-bytes": str(256 * 1024)})
    rows = 600_000
    relation = con.sql(f"SELECT range AS n, md5(range::VARCHAR) AS payload FROM range({rows})")
    result = _publish(lh, relation, "r1", (audits.unique("n"),))

    assert result.status == "published" and result.rows == rows
    files = _main_files(lh)
    assert len(files) > 1
    counts = [pq.read_metadata(_local(f)).num_rows for f in files]
    assert sum(counts) == rows
    check = duckdb.sql(
        "SELECT count(*), count(DISTINCT n), min(n), max(n) FROM read_parquet($files)",
        params={"files": [_local(f) for f in files]},
    ).fetchall()
    assert check == [(rows, rows, 0, rows - 1)]


def test_an_empty_result_publishes_an_empty_table(
    lh: Lakehouse, con: duckdb.DuckDBPyConnection
) -> None:
    result = _publish(lh, con.sql("SELECT range AS n FROM range(0)"), "r1")
    assert result.status == "published" and result.rows == 0
    assert lh.table(TABLE).scan().to_arrow().num_rows == 0
    assert main_snapshot_id(lh.table(TABLE)) == result.snapshot_id


def test_a_query_that_fails_midway_leaves_no_file_and_main_untouched(
    lh: Lakehouse,
    con: duckdb.DuckDBPyConnection,
    data_files: Callable[[str], set[str]],
) -> None:
    first = _publish(lh, con.sql("SELECT range AS n, 'a' AS s FROM range(10)"), "r1")
    before = data_files(TABLE)
    # The last row fails its cast long after the first rows were written.
    failing = con.sql(
        "SELECT range AS n, CAST(CASE WHEN range < 2999999 THEN 'x' ELSE NULL END AS VARCHAR) "
        "AS s, CAST(CASE WHEN range = 2999999 THEN 'not a number' ELSE '1' END AS INTEGER) AS k "
        "FROM range(3000000)"
    )
    with pytest.raises(duckdb.ConversionException):
        _publish(lh, failing, "r2")

    assert data_files(TABLE) == before
    assert main_snapshot_id(lh.table(TABLE)) == first.snapshot_id
    assert lh.table(TABLE).scan().to_arrow().num_rows == 10
    folder = Path(_local(lh.table(TABLE).location()), "data")
    assert [p for p in folder.iterdir() if p.is_dir()] == []


def test_a_write_finds_its_files_without_listing_the_data_folder(
    lh: Lakehouse, con: duckdb.DuckDBPyConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    _publish(lh, con.sql("SELECT 0 AS n"), "r0")
    folder = Path(_local(lh.table(TABLE).location()), "data")
    for number in range(3):  # what other writes left, named as a write names its files
        (folder / f"sluice-r0-{number}-old-0-{number}.parquet").write_bytes(b"")
    listed = Path.iterdir

    def iterdir(path: Path) -> Iterator[Path]:
        assert path != folder, "the whole data folder was listed"
        return listed(path)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    result = _publish(lh, con.sql("SELECT range AS n FROM range(5)"), "r1")
    monkeypatch.undo()

    assert result.status == "published" and result.rows == 5
    assert [name for name in _main_files(lh) if "-old-" in name] == []
    assert lh.table(TABLE).scan().to_arrow().column("n").to_pylist() == list(range(5))
    assert [p for p in folder.iterdir() if p.is_dir()] == []


def test_a_failing_audit_of_a_relation_keeps_main(
    lh: Lakehouse, con: duckdb.DuckDBPyConnection
) -> None:
    first = _publish(lh, con.sql("SELECT range AS n FROM range(3)"), "r1")
    result = _publish(
        lh, con.sql("SELECT range % 2 AS n FROM range(4)"), "r2", (audits.unique("n"),)
    )
    assert result.status == "audit_failed"
    assert main_snapshot_id(lh.table(TABLE)) == first.snapshot_id


@pytest.mark.parametrize(
    "sql, expected",
    [
        ("SELECT [1, 2] AS xs", {"xs": [1, 2]}),
        ("SELECT {'a': 1, 'b': 'x'} AS s", {"s": {"a": 1, "b": "x"}}),
        ("SELECT MAP {'k': 1} AS m", {"m": [("k", 1)]}),
        ("SELECT 'c2c6a5d8-2ac6-4a1b-8f2f-1b0d9b3c7d11'::UUID::VARCHAR AS u", None),
    ],
)
def test_types_duckdb_does_not_write_itself_still_publish(
    lh: Lakehouse, con: duckdb.DuckDBPyConnection, sql: str, expected: dict[str, Any] | None
) -> None:
    result = _publish(lh, con.sql(sql), "r1")
    assert result.status == "published" and result.rows == 1
    back = lh.table(TABLE).scan().to_arrow().to_pylist()
    if expected is not None:
        assert back == [expected]


def test_only_local_tables_of_plain_nullable_types_take_the_direct_path(
    lh: Lakehouse, con: duckdb.DuckDBPyConnection
) -> None:
    _publish(lh, con.sql("SELECT 1 AS n, [1] AS xs"), "r1")
    table = lh.table(TABLE)
    plain = relation_schema(con.sql("SELECT 1 AS n"))
    nested = relation_schema(con.sql("SELECT 1 AS n, [1] AS xs"))
    assert direct_writable(table, write_schema(table, plain))
    assert not direct_writable(table, write_schema(table, nested))
    required = pa.schema([pa.field("n", pa.int64(), nullable=False)])
    assert not direct_writable(table, required)
    assert Path(_local(table.location())).is_dir()


EVERY_PRIMITIVE = """
SELECT true AS b, 1::TINYINT AS i1, 1::SMALLINT AS i2, 1 AS i4, 1::BIGINT AS i8,
    1::UTINYINT AS u1, 1::USMALLINT AS u2, 1::UINTEGER AS u4, 1::UBIGINT AS u8,
    1::HUGEINT AS h, 1::UHUGEINT AS uh, sum(1) AS total, count(*) AS n, 1.5::FLOAT AS f4,
    1.5::DOUBLE AS f8, 1.5::DECIMAL(4, 1) AS d4, 1.5::DECIMAL(18, 3) AS d18,
    1.5::DECIMAL(38, 10) AS d38, 'x' AS s, 'x'::BLOB AS bytes, DATE '2024-01-01' AS day,
    TIME '10:00' AS t, TIMESTAMP '2024-01-01' AS ts, '2024-01-01'::TIMESTAMP_S AS ts_s,
    '2024-01-01'::TIMESTAMP_MS AS ts_ms, '2024-01-01'::TIMESTAMP_NS AS ts_ns,
    TIMESTAMPTZ '2024-01-01 00:00:00+00' AS tstz, NULL AS nothing, uuid() AS id,
    [1] AS xs, {'a': 1} AS st, 'a'::ENUM('a', 'b') AS e
"""


@pytest.mark.parametrize(
    "setting",
    [
        None,
        "SET arrow_large_buffer_size = true",
        "SET produce_arrow_string_view = true",
        "SET TimeZone = 'America/New_York'",
    ],
)
def test_a_relations_schema_is_what_storing_its_fetched_rows_takes(setting: str | None) -> None:
    con = duckdb.connect()  # of its own: some settings are global to a database
    if setting:
        con.execute(setting)
    relation = con.sql(EVERY_PRIMITIVE)
    fetched = storable_schema(relation.limit(0).to_arrow_table().schema)
    assert relation_schema(relation) == fetched
    for name in fetched.names:  # without the columns that need an empty fetch
        alone = relation.select(duckdb.ColumnExpression(name))
        assert relation_schema(alone) == storable_schema(alone.limit(0).to_arrow_table().schema)
