"""Streaming Arrow batches into Parquet data files under a table's location.

Batches are cast to the table's types and written as they arrive, in bounded row groups, so a
`RecordBatchReader` larger than memory is never held whole. The files are registered on a branch
by the write-audit-publish cycle, not here.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
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
    keys: tuple[str, ...] = ()
    """The split key of each path (same order; `""` without a split)."""

    def paths_by_key(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for key, path in zip(self.keys, self.paths, strict=True):
            found.setdefault(key, []).append(path)
        return found


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


class _DataFiles:
    """Open Parquet files by partition key; a file is cut when it reaches `FILE_ROWS`."""

    def __init__(self, table: Table, schema: pa.Schema, prefix: str) -> None:
        self.table, self.schema, self.prefix = table, schema, prefix
        self.paths: list[str] = []
        self.keys: list[str] = []
        self._open: dict[str, tuple[pq.ParquetWriter, Any, int]] = {}

    def write(self, key: str, chunk: pa.Table) -> None:
        if key not in self._open:
            path = f"{self.table.location()}/data/{self.prefix}-{uuid.uuid4().hex[:12]}.parquet"
            stream = self.table.io.new_output(path).create(overwrite=True)
            self.paths.append(path)
            self.keys.append(key)
            self._open[key] = (pq.ParquetWriter(stream, self.schema, compression="zstd"), stream, 0)
        writer, stream, rows = self._open[key]
        writer.write_table(chunk, row_group_size=ROW_GROUP_ROWS)
        self._open[key] = (writer, stream, rows + chunk.num_rows)
        if rows + chunk.num_rows >= FILE_ROWS:
            self.close(key)

    def close(self, key: str) -> None:
        writer, stream, _ = self._open.pop(key)
        try:
            writer.close()
        finally:
            stream.close()

    def close_all(self) -> None:
        for key in list(self._open):
            self.close(key)


def write_data_files(
    table: Table,
    reader: pa.RecordBatchReader,
    schema: pa.Schema,
    prefix: str,
    split: Callable[[pa.Table], pa.Array] | None = None,
) -> WrittenFiles:
    """Write `reader` as Parquet files of `schema` into the table's data folder.

    With `split`, rows go to one file per key that `split` assigns them (a partition), so each
    file holds exactly one partition. Always writes at least one file (possibly empty) so that
    the branch snapshot exists and carries provenance even for an empty result. On any error
    the files written so far are deleted.
    """
    files = _DataFiles(table, schema, prefix)
    total = 0
    try:
        casted = (cast_batch(batch, schema) for batch in reader)
        for chunk in _rechunk(casted, ROW_GROUP_ROWS):
            total += chunk.num_rows
            if split is None:
                files.write("", chunk)
                continue
            keys = split(chunk)
            for key in pc.unique(keys).to_pylist():
                files.write(str(key), chunk.filter(pc.equal(keys, key)))
        if not files.paths:
            files.write("", schema.empty_table())
        files.close_all()
    except BaseException as exc:
        with contextlib.suppress(Exception):
            files.close_all()
        for path in files.paths:
            with contextlib.suppress(OSError):
                table.io.delete(path)
        if isinstance(exc, pa.ArrowInvalid | pa.ArrowNotImplementedError):
            raise SchemaChangeError(f"result cannot be written to the table: {exc}") from exc
        raise
    return WrittenFiles(paths=tuple(files.paths), rows=total, keys=tuple(files.keys))
