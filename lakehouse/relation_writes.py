"""Writing a DuckDB relation's rows as Parquet data files, by DuckDB itself.

An asset that returns a DuckDB relation (every SQL asset, and Python assets returning
`ctx.sql(...)`) need not stream its rows through Arrow and Python's Parquet encoders: DuckDB
runs the query and writes the files straight into the table's data folder with all its
threads, exactly as `COPY (query) TO ...` does, in bounded memory. The files are then
registered on the audit branch like any other (`add_files`). Rows are cast to the table's
types in the query.

This path is taken when the table lives on the local file system and every column has a
primitive, nullable type (`direct_writable`); otherwise the rows go through `write_data_files`,
which handles every storable type, object stores and splits by partition.
"""

from __future__ import annotations

import contextlib
import functools
import uuid
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.fs as pafs
from duckdb.sqltypes import DuckDBPyType
from pyiceberg.table import Table

from lakehouse.tables import storable_schema
from lakehouse.writes import ROW_GROUP_ROWS, WrittenFiles

READER_BATCH_ROWS = 131_072
"""Rows per Arrow batch when a relation's rows are streamed instead."""
TARGET_FILE_BYTES = 512 * 1024 * 1024
"""Iceberg's default `write.target-file-size-bytes`, used when the table does not set it."""


_PLAIN_TYPES = {
    pa.bool_(): "BOOLEAN",
    pa.int32(): "INTEGER",
    pa.int64(): "BIGINT",
    pa.float32(): "FLOAT",
    pa.float64(): "DOUBLE",
    pa.date32(): "DATE",
    pa.time64("us"): "TIME",
    pa.timestamp("us"): "TIMESTAMP",
    pa.timestamp("us", tz="UTC"): "TIMESTAMPTZ",
    pa.string(): "VARCHAR",
    pa.binary(): "BLOB",
}


@functools.lru_cache(maxsize=256)
def _duckdb_type(dtype: pa.DataType) -> DuckDBPyType | None:
    """The DuckDB type whose Parquet encoding Iceberg reads as `dtype`, or None when this path
    does not write it (nested types, UUIDs, ...: `write_data_files` does). Kept per type:
    DuckDB parses a type name in 25-40 us, asked twice per column and write."""
    if dtype in _PLAIN_TYPES:
        return duckdb.dtype(_PLAIN_TYPES[dtype])
    if pa.types.is_decimal128(dtype):
        return duckdb.decimal_type(dtype.precision, dtype.scale)
    return None


def _local_data_folder(table: Table) -> Path | None:
    """The table's data folder when it is on the local file system."""
    return _local_folder(table.location())


@functools.lru_cache(maxsize=1024)
def _local_folder(location: str) -> Path | None:
    """The data folder of a table at `location` on the local file system (asked once per
    location: resolving a URI costs 0.1 ms, twice per write)."""
    try:
        filesystem, path = pafs.FileSystem.from_uri(location)
    except (ValueError, OSError, NotImplementedError):
        return None
    if not isinstance(filesystem, pafs.LocalFileSystem):
        return None
    return Path(path) / "data"


def direct_writable(table: Table, schema: pa.Schema) -> bool:
    """Whether DuckDB can write files of `schema` (the table's types) for `table` itself."""
    return _local_data_folder(table) is not None and all(
        field.nullable and _duckdb_type(field.type) is not None for field in schema
    )


_TIMESTAMP = pa.timestamp("us")
_STORED = {
    "boolean": pa.bool_(),
    "tinyint": pa.int32(),
    "smallint": pa.int32(),
    "integer": pa.int32(),
    "bigint": pa.int64(),
    "utinyint": pa.int32(),
    "usmallint": pa.int32(),
    "uinteger": pa.int64(),
    "ubigint": pa.int64(),
    "hugeint": pa.decimal128(38, 0),
    "uhugeint": pa.decimal128(38, 0),
    "float": pa.float32(),
    "double": pa.float64(),
    "varchar": pa.string(),
    "blob": pa.binary(),
    "date": pa.date32(),
    "time": pa.time64("us"),
    "timestamp": _TIMESTAMP,
    "timestamp_s": _TIMESTAMP,
    "timestamp_ms": _TIMESTAMP,
    "timestamp_ns": _TIMESTAMP,
    "timestamp with time zone": pa.timestamp("us", tz="UTC"),
}
"""Primitive DuckDB types (by type id) and the storable type of their rows fetched as Arrow,
whatever the session's time zone and string buffer settings."""


def _stored_type(dtype: DuckDBPyType) -> pa.DataType | None:
    if dtype.id == "decimal":
        precision, scale = (value for _, value in dtype.children)
        assert isinstance(precision, int) and isinstance(scale, int)
        return pa.decimal128(precision, scale)
    return _STORED.get(dtype.id)


def relation_schema(relation: duckdb.DuckDBPyRelation) -> pa.Schema:
    """The relation's rows' schema as Iceberg stores it: `storable_schema` of the Arrow
    schema they are fetched with (raises as it does). Taken from the types DuckDB bound when
    every column has a primitive type (no query runs: an empty fetch binds and plans the
    query once more, 1.5 ms for a query over a large Parquet file); from an empty fetch
    otherwise."""
    types = [_stored_type(dtype) for dtype in relation.types]
    if any(dtype is None for dtype in types):
        return storable_schema(relation.limit(0).to_arrow_table().schema)
    return storable_schema(pa.schema(list(zip(relation.columns, types, strict=True))))


def relation_reader(relation: duckdb.DuckDBPyRelation) -> pa.RecordBatchReader:
    """The relation's rows as a stream of Arrow batches (never all in memory)."""
    return relation.to_arrow_reader(READER_BATCH_ROWS)


def write_relation_files(
    table: Table, relation: duckdb.DuckDBPyRelation, schema: pa.Schema, prefix: str
) -> WrittenFiles:
    """Run `relation` and write its rows, cast to `schema`, as Parquet files (zstd, row groups
    of `ROW_GROUP_ROWS`) into the table's data folder; a file is cut past the table's target
    file size. Requires `direct_writable(table, schema)`.

    Always writes at least one file (possibly empty), like `write_data_files`. On any error the
    files written so far are deleted. DuckDB writes into a folder of this write's own, from
    which the files are moved next to the others: finding them never lists the data folder,
    which holds every file of the table's history until orphan files are removed (20 ms a
    write at 20,000 files). A process killed meanwhile leaves that folder, whose files are
    orphans like any other unpublished file.
    """
    folder = _local_data_folder(table)
    assert folder is not None
    token = f"{prefix}-{uuid.uuid4().hex[:12]}"
    # Compared as DuckDB types: some that Arrow shows as the table's type are written
    # otherwise (a HUGEINT sum is a decimal(38, 0) in Arrow, but a DOUBLE in Parquet).
    types = zip(relation.columns, relation.types, strict=True)
    current = {name: str(dtype) for name, dtype in types}
    casts = []
    for field in schema:
        column = duckdb.ColumnExpression(field.name)
        target = _duckdb_type(field.type)
        assert target is not None
        if current[field.name] != str(target):
            column = column.cast(target)
        casts.append(column.alias(field.name))
    file_bytes = int(table.properties.get("write.target-file-size-bytes", TARGET_FILE_BYTES))
    staging = folder / token
    staging.mkdir(parents=True)
    files: list[Path] = []
    try:
        relation.project(*casts).write_parquet(
            str(staging),
            compression="zstd",
            row_group_size=ROW_GROUP_ROWS,
            file_size_bytes=file_bytes,
            filename_pattern=f"{token}-{{i}}-{{uuid}}",
            append=True,
        )
        for path in _written(staging, token):
            files.append(path.rename(folder / path.name))  # unique names: nothing replaced
    except BaseException:
        for path in (*files, *_written(staging, token)):
            with contextlib.suppress(OSError):
                path.unlink()
        raise
    finally:
        with contextlib.suppress(OSError):
            staging.rmdir()
    location = table.location().rstrip("/")
    return WrittenFiles(
        paths=tuple(f"{location}/data/{path.name}" for path in files),
        rows=None,  # the footers are read once, when the files are described for the commit
        keys=tuple("" for _ in files),
    )


def _written(folder: Path, token: str) -> list[Path]:
    """The files written with `token`, in the order DuckDB wrote them."""
    numbered = []
    for path in folder.iterdir():
        rest = path.stem.removeprefix(f"{token}-")
        number = rest.partition("-")[0]
        if path.suffix == ".parquet" and rest != path.stem and number.isdigit():
            numbered.append((int(number), path))
    return [path for _, path in sorted(numbered)]
