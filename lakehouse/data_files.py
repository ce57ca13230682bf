"""Parquet files described as Iceberg data files, as pyiceberg's `add_files` describes them.

For every file, pyiceberg's `parquet_file_to_data_file` also derives what depends only on the
table: whether the file's columns are the table schema's (an Arrow-to-Iceberg schema conversion
and comparison, 0.5 ms), which statistics to collect for each column, which Parquet column is
which field. Here these are kept per table schema (table uuid and schema id: Iceberg never
gives a schema id of a table to another schema), the compatibility per Arrow schema of a file
too; only a compatible schema is kept, so an incompatible file is refused every time. The
footer's statistics, the file size and the partition are read from each file, as pyiceberg
reads them.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.parquet as pq
from pyiceberg.io import FileIO
from pyiceberg.io.pyarrow import (
    StatisticsCollector,
    _check_pyarrow_schema_compatible,
    compute_statistics_plan,
    data_file_statistics_from_parquet_metadata,
    parquet_path_to_id_mapping,
)
from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
from pyiceberg.schema import Schema
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.utils.concurrent import ExecutorFactory

from lakehouse.lru import LruCache

KEPT = 256
_compatible: LruCache[bool] = LruCache(KEPT)
_plans: LruCache[dict[int, StatisticsCollector]] = LruCache(KEPT)
_column_ids: LruCache[dict[str, int]] = LruCache(KEPT)


def _check(metadata: TableMetadata, schema: Schema, file_schema: pa.Schema) -> None:
    version = metadata.format_version

    def checked() -> bool:  # raises for an incompatible file: nothing is kept then
        _check_pyarrow_schema_compatible(schema, file_schema, format_version=version)
        return True

    key = (str(metadata.table_uuid), schema.schema_id, version, file_schema)
    _compatible.get_or_make(key, checked)


def _statistics_plan(metadata: TableMetadata, schema: Schema) -> dict[int, StatisticsCollector]:
    key = (str(metadata.table_uuid), schema.schema_id, tuple(sorted(metadata.properties.items())))
    return _plans.get_or_make(key, lambda: compute_statistics_plan(schema, metadata.properties))


def _ids(metadata: TableMetadata, schema: Schema) -> dict[str, int]:
    key = (str(metadata.table_uuid), schema.schema_id)
    return _column_ids.get_or_make(key, lambda: parquet_path_to_id_mapping(schema))


def describe_file(io: FileIO, metadata: TableMetadata, path: str) -> DataFile:
    """The data file entry of Parquet file `path` for the table of `metadata` (its current
    schema and default spec); a `ValueError` if the file's columns are not the table's."""
    input_file = io.new_input(path)
    with input_file.open() as stream:
        footer = pq.read_metadata(stream)
    schema = metadata.schema()
    _check(metadata, schema, footer.schema.to_arrow_schema())
    statistics = data_file_statistics_from_parquet_metadata(
        parquet_metadata=footer,
        stats_columns=_statistics_plan(metadata, schema),
        parquet_column_mapping=_ids(metadata, schema),
    )
    return DataFile.from_args(
        content=DataFileContent.DATA,
        file_path=path,
        file_format=FileFormat.PARQUET,
        partition=statistics.partition(metadata.spec(), schema),
        file_size_in_bytes=len(input_file),
        sort_order_id=None,
        spec_id=metadata.default_spec_id,
        equality_ids=None,
        key_metadata=None,
        **statistics.to_serialized_dict(),
    )


def describe_files(io: FileIO, metadata: TableMetadata, paths: Sequence[str]) -> list[DataFile]:
    """`describe_file` of each path, in order (several on pyiceberg's worker threads)."""
    if len(paths) == 1:
        return [describe_file(io, metadata, paths[0])]
    executor = ExecutorFactory.get_or_create()
    return list(executor.map(lambda path: describe_file(io, metadata, path), paths))
