"""Snapshots as DuckDB relations.

When a snapshot has no delete files (always true for tables Sluice writes), DuckDB reads its
Parquet file list directly (about 15x faster than materializing Arrow in Python); otherwise
pyiceberg's scan resolves the deletes. Columns the table gained after a file was written read
as NULL, as Iceberg requires.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import duckdb
import pyarrow as pa
from pyiceberg.io.pyarrow import schema_to_pyarrow
from pyiceberg.table import DataScan, Table
from sqlglot import exp

from lakehouse.windows import RowWindow

_counter = itertools.count()


def _scan(table: Table, snapshot_id: int, window: RowWindow | None) -> DataScan:
    if window is None:
        return table.scan(snapshot_id=snapshot_id)
    return table.scan(snapshot_id=snapshot_id, row_filter=window.iceberg_filter(table.schema()))


def snapshot_files(
    table: Table, snapshot_id: int, window: RowWindow | None = None
) -> list[str] | None:
    """Data file paths of a snapshot (only those that may hold rows of `window`), or None
    when any file has delete files."""
    paths: list[str] = []
    for task in _scan(table, snapshot_id, window).plan_files():
        if task.delete_files:
            return None
        paths.append(task.file.file_path)
    return paths


def _local(path: str) -> str:
    return path.removeprefix("file://")


def quote(*parts: str) -> str:
    """A safely quoted, possibly qualified, DuckDB identifier."""
    return ".".join(exp.to_identifier(p, quoted=True).sql(dialect="duckdb") for p in parts)


def snapshot_select(
    con: duckdb.DuckDBPyConnection,
    table: Table,
    snapshot_id: int,
    window: RowWindow | None = None,
) -> str:
    """SQL selecting exactly the table schema's columns of one snapshot (of its rows in
    `window`, reading only the files that may hold them).

    Registers helper objects on `con` when the snapshot cannot be read as a plain file list.
    """
    select = _snapshot_select(con, table, snapshot_id, window)
    if window is None:
        return select
    return f"SELECT * FROM ({select}) WHERE {window.sql_predicate(table.schema())}"


def _snapshot_select(
    con: duckdb.DuckDBPyConnection, table: Table, snapshot_id: int, window: RowWindow | None
) -> str:
    snapshot = table.snapshot_by_id(snapshot_id)
    schema_id = snapshot.schema_id if snapshot is not None else None
    schemas = table.schemas()
    iceberg_schema = (
        schemas.get(schema_id, table.schema()) if schema_id is not None else table.schema()
    )
    arrow_schema = schema_to_pyarrow(iceberg_schema, include_field_ids=False)
    files = snapshot_files(table, snapshot_id, window)
    if not files:
        data: pa.Table = (
            arrow_schema.empty_table()
            if files is not None
            else _scan(table, snapshot_id, window).to_arrow()
        )
        name = f"__sluice_snapshot_{next(_counter)}"
        con.register(name, data)
        return f"SELECT * FROM {quote(name)}"
    literal_files = exp.Array(expressions=[exp.Literal.string(_local(p)) for p in files])
    source = exp.func(
        "read_parquet",
        literal_files,
        exp.EQ(this=exp.column("union_by_name"), expression=exp.true()),
    ).sql(dialect="duckdb")
    present = {row[0] for row in con.sql(f"DESCRIBE SELECT * FROM {source}").fetchall()}
    missing = [f for f in arrow_schema if f.name not in present]
    if missing:
        empty = f"__sluice_types_{next(_counter)}"
        con.register(empty, pa.schema(missing).empty_table())
        duck_types = dict(zip(con.table(empty).columns, con.table(empty).types, strict=True))
    projection = []
    for field in arrow_schema:
        if field.name in present:
            projection.append(quote(field.name))
        else:
            projection.append(f"CAST(NULL AS {duck_types[field.name]}) AS {quote(field.name)}")
    return f"SELECT {', '.join(projection)} FROM {source}"


def create_files_view(con: duckdb.DuckDBPyConnection, name: str, paths: Sequence[str]) -> None:
    """A view over exactly these Parquet files (for checks on what one write added)."""
    literal_files = exp.Array(expressions=[exp.Literal.string(_local(p)) for p in paths])
    source = exp.func("read_parquet", literal_files).sql(dialect="duckdb")
    con.execute(f"CREATE OR REPLACE VIEW {quote(name)} AS SELECT * FROM {source}")


def create_view(
    con: duckdb.DuckDBPyConnection,
    view: tuple[str, ...],
    table: Table,
    snapshot_id: int,
    window: RowWindow | None = None,
) -> None:
    """Create (or replace) view `view` (optionally schema-qualified) over one snapshot, or
    over its rows in `window`."""
    if len(view) == 2:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(view[0])}")
    select = snapshot_select(con, table, snapshot_id, window)
    con.execute(f"CREATE OR REPLACE VIEW {quote(*view)} AS {select}")
