"""Streaming Arrow batches into Parquet data files under a table's location.

Batches are cast to the table's types and written as they arrive, in bounded row groups, so a
`RecordBatchReader` larger than memory is never held whole. The files are registered on a branch
by the write-audit-publish cycle, not here.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq
from pyiceberg.table import Table

from lakehouse.errors import SchemaChangeError
from lakehouse.tables import cast_batch

ROW_GROUP_ROWS = 131_072
FILE_ROWS = 2_000_000


@dataclass(frozen=True)
class WrittenFiles:
    """Data files written for one cycle and the rows they hold."""

    paths: tuple[str, ...]
    rows: int


def _rechunk(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.Table]:
    """Group small batches into tables of about `rows` rows (bounded memory)."""
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        pending.append(batch)
        pending_rows += batch.num_rows
        if pending_rows >= rows:
            yield pa.Table.from_batches(pending)
            pending, pending_rows = [], 0
    if pending:
        yield pa.Table.from_batches(pending)


def write_data_files(
    table: Table, reader: pa.RecordBatchReader, schema: pa.Schema, prefix: str
) -> WrittenFiles:
    """Write `reader` as Parquet files of `schema` into the table's data folder.

    Always writes at least one file (possibly empty) so that the branch snapshot exists and
    carries provenance even for an empty result.
    """
    paths: list[str] = []
    total = 0
    writer: pq.ParquetWriter | None = None
    stream = None
    file_rows = 0

    def open_file() -> pq.ParquetWriter:
        nonlocal stream
        path = f"{table.location()}/data/{prefix}-{uuid.uuid4().hex[:12]}.parquet"
        paths.append(path)
        stream = table.io.new_output(path).create(overwrite=True)
        return pq.ParquetWriter(stream, schema, compression="zstd")

    def close_file() -> None:
        nonlocal writer, stream
        if writer is not None:
            writer.close()
        if stream is not None:
            stream.close()
        writer, stream = None, None

    try:
        casted = (cast_batch(batch, schema) for batch in reader)
        for chunk in _rechunk(casted, ROW_GROUP_ROWS):
            if writer is None:
                writer = open_file()
                file_rows = 0
            writer.write_table(chunk, row_group_size=ROW_GROUP_ROWS)
            file_rows += chunk.num_rows
            total += chunk.num_rows
            if file_rows >= FILE_ROWS:
                close_file()
        if not paths:
            writer = open_file()
        close_file()
    except BaseException as exc:
        close_file()
        for path in paths:
            with contextlib.suppress(OSError):
                table.io.delete(path)
        if isinstance(exc, pa.ArrowInvalid | pa.ArrowNotImplementedError):
            raise SchemaChangeError(f"result cannot be written to the table: {exc}") from exc
        raise
    return WrittenFiles(paths=tuple(paths), rows=total)
