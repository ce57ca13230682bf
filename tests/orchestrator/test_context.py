"""Tests for `orchestrator.context`: what an asset may return, and `ctx.sql`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from lakehouse.relation_writes import READER_BATCH_ROWS as BATCH_ROWS
from orchestrator.assets import AssetKey
from orchestrator.context import AssetContext, to_reader
from orchestrator.errors import UnsupportedReturnTypeError

KEY = AssetKey("silver", "orders")
TABLE = pa.table({"order_id": [1, 2, 3], "status": ["placed", "shipped", "placed"]})


@pytest.fixture
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect()
    yield connection
    connection.close()


def read_all(value: Any) -> pa.Table:
    reader = to_reader(value, KEY)
    assert isinstance(reader, pa.RecordBatchReader)
    return reader.read_all()


def test_table() -> None:
    assert read_all(TABLE).equals(TABLE)


def test_record_batch() -> None:
    batch = TABLE.to_batches()[0]
    assert read_all(batch).equals(TABLE)


def test_record_batch_reader_is_passed_through() -> None:
    reader = TABLE.to_reader()
    assert to_reader(reader, KEY) is reader


def test_pandas_dataframe_without_its_index() -> None:
    frame = pd.DataFrame(
        {"order_id": [1, 2, 3], "status": ["placed", "shipped", "placed"]},
        index=pd.Index([7, 3, 5], name="row"),
    )
    result = read_all(frame)
    assert result.column_names == ["order_id", "status"]
    assert result.column("order_id").to_pylist() == [1, 2, 3]
    assert result.column("status").to_pylist() == ["placed", "shipped", "placed"]


def test_duckdb_relation(con: duckdb.DuckDBPyConnection) -> None:
    relation = con.sql("SELECT * FROM (VALUES (1, 'a'), (2, 'b')) AS t(id, name) ORDER BY id")
    result = read_all(relation)
    assert result.to_pydict() == {"id": [1, 2], "name": ["a", "b"]}


def test_duckdb_relation_is_streamed_in_batches(con: duckdb.DuckDBPyConnection) -> None:
    reader = to_reader(con.sql("SELECT range AS n FROM range(1_000_000)"), KEY)
    sizes = []
    total = 0
    for batch in reader:
        assert batch.num_rows <= BATCH_ROWS
        sizes.append(batch.num_rows)
        total += int(pc.sum(batch.column("n")).as_py())
    assert len(sizes) > 1
    assert sum(sizes) == 1_000_000
    assert total == sum(range(1_000_000))


def test_duckdb_relation_is_not_materialized(con: duckdb.DuckDBPyConnection) -> None:
    """Rows far past the first batches are not computed before they are read."""
    relation = con.sql(
        "SELECT CASE WHEN range < 9_000_000 THEN range ELSE error('row 9,000,000 computed') END"
        " AS n FROM range(10_000_000)"
    )
    reader = to_reader(relation, KEY)  # a materializing conversion would raise here
    assert reader.read_next_batch().num_rows == BATCH_ROWS
    with pytest.raises(Exception, match="row 9,000,000 computed"):
        reader.read_all()


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        ([{"order_id": 1}], "builtins.list"),
        (None, "builtins.NoneType"),
        ({"order_id": [1]}, "builtins.dict"),
        ("SELECT 1", "builtins.str"),
        (pd.Series([1, 2]), "Series"),
    ],
)
def test_unsupported_return_type_names_the_asset(value: Any, type_name: str) -> None:
    with pytest.raises(UnsupportedReturnTypeError) as info:
        to_reader(value, KEY)
    assert info.value.asset == "silver.orders"
    assert "silver.orders" in str(info.value)
    assert type_name in str(info.value)


def test_ctx_sql_binds_parameters(con: duckdb.DuckDBPyConnection) -> None:
    ctx = AssetContext(asset=KEY, run_id="r1", con=con)
    con.register("t", TABLE)
    named = ctx.sql(
        "SELECT order_id FROM t WHERE status = $status ORDER BY 1", {"status": "placed"}
    )
    assert [row[0] for row in named.fetchall()] == [1, 3]
    positional = ctx.sql("SELECT count(*) FROM t WHERE order_id > ?", [1])
    assert positional.fetchall() == [(2,)]
    assert ctx.sql("SELECT 42").fetchall() == [(42,)]
    assert ctx.partition is None
    assert ctx.log.name == "sluice.asset"
