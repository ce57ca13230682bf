"""Parquet files are described as pyiceberg describes them, whatever was kept from earlier files."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyiceberg.catalog import Catalog
from pyiceberg.io.pyarrow import parquet_file_to_data_file
from pyiceberg.table import Table
from pyiceberg.types import StringType

from lakehouse.catalog import ensure_namespace, open_catalog
from lakehouse.config import CatalogConfig
from lakehouse.data_files import describe_file, describe_files

ROWS = pa.table(
    {
        "id": pa.array([1, 2, 3], pa.int64()),
        "amount": pa.array([1.5, None, 3.0], pa.float64()),
    }
)


def _table(catalog_config: CatalogConfig) -> tuple[Catalog, Table]:
    catalog = open_catalog(catalog_config)
    ensure_namespace(catalog, "bronze")
    return catalog, catalog.create_table("bronze.t", schema=ROWS.schema)


def _file(table: Table, name: str, rows: pa.Table) -> str:
    path = Path(table.location().removeprefix("file://")) / "data" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(rows, path)
    return f"{table.location()}/data/{name}"


def test_a_file_is_described_as_pyiceberg_describes_it(catalog_config: CatalogConfig) -> None:
    _, table = _table(catalog_config)
    first, second = _file(table, "a.parquet", ROWS), _file(table, "b.parquet", ROWS.slice(1))
    described = describe_files(table.io, table.metadata, [first, second])
    assert [d.file_path for d in described] == [first, second]
    for path, ours in zip((first, second), described, strict=True):
        assert ours == parquet_file_to_data_file(table.io, table.metadata, path)
    assert described[1].record_count == 2
    assert described[1].null_value_counts[2] == 1  # field 2 is `amount`


def test_a_file_whose_columns_are_not_the_tables_is_refused_every_time(
    catalog_config: CatalogConfig,
) -> None:
    catalog = open_catalog(catalog_config)
    ensure_namespace(catalog, "bronze")
    required = pa.schema([pa.field("id", pa.int64(), nullable=False), ROWS.schema.field(1)])
    table = catalog.create_table("bronze.strict", schema=required)
    describe_file(table.io, table.metadata, _file(table, "good.parquet", ROWS.cast(required)))
    wider = ROWS.append_column("extra", pa.array(["x", "y", "z"]))
    for attempt in range(2):
        with pytest.raises(ValueError, match="extra"):
            describe_file(table.io, table.metadata, _file(table, f"wide{attempt}.parquet", wider))
        with pytest.raises(ValueError, match="required long"):  # `id` may be null in the file
            describe_file(table.io, table.metadata, _file(table, f"loose{attempt}.parquet", ROWS))


def test_a_file_of_an_evolved_schema_is_described_by_that_schema(
    catalog_config: CatalogConfig,
) -> None:
    catalog, table = _table(catalog_config)
    describe_file(table.io, table.metadata, _file(table, "old.parquet", ROWS))
    with table.update_schema() as update:
        update.add_column("note", StringType())
    table = catalog.load_table("bronze.t")
    wider = ROWS.append_column("note", pa.array(["x", None, None]))
    described = describe_file(table.io, table.metadata, _file(table, "new.parquet", wider))
    note = table.schema().find_field("note").field_id
    assert described.null_value_counts[note] == 2
    assert described == parquet_file_to_data_file(
        table.io, table.metadata, f"{table.location()}/data/new.parquet"
    )
