"""Streaming Arrow batches into Parquet data files under a table's location.

Batches are cast to the table's types and written as they arrive, so a `RecordBatchReader`
larger than memory is never held whole. With a split (a ranged write: one file per partition)
rows are held back per partition to make whole row groups; when all partitions together hold
more than `BUFFER_BYTES`, the held rows go to a local spill file and are written to their
partition's file at the end. So memory does not grow with the number of partitions nor with
the number of rows, and each partition still gets one file (more only past `FILE_ROWS`), in
whatever order the result delivers its rows. The files are registered on a branch by the
write-audit-publish cycle, not here.
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
import tempfile
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyiceberg.table import Table

from lakehouse.errors import SchemaChangeError
from lakehouse.tables import cast_batch

ROW_GROUP_ROWS = 131_072
FILE_ROWS = 2_000_000
BUFFER_BYTES = 32 * 1024 * 1024
"""Rows held in memory (all partitions together, including those being written)."""
WRITE_THREADS = 2
"""Threads encoding and writing Parquet files (pyarrow's encoder is single-threaded)."""
OPEN_FILES = 16
"""Files open at once (all threads together). An open file costs its output stream's buffer
(a megabyte locally, a multipart part on an object store), so they are capped; a partition
whose file was closed to make room and that receives more rows later continues in a new file
(only partitions that fill row groups as they stream are written before the end)."""


@dataclass(frozen=True)
class WrittenFiles:
    """Data files written for one cycle and the rows they hold."""

    paths: tuple[str, ...]
    rows: int | None
    """None when the writer did not count them (DuckDB wrote the files): the snapshot that
    adds the files says."""
    keys: tuple[str, ...] = ()
    """The split key of each path (same order; `""` without a split)."""

    def paths_by_key(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for key, path in zip(self.keys, self.paths, strict=True):
            found.setdefault(key, []).append(path)
        return found


def _group_bytes() -> int:
    """Bytes of one key that are written at once even short of `ROW_GROUP_ROWS` rows (wide
    rows): a large partition streams to its file instead of filling the buffer."""
    return BUFFER_BYTES // 4


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


def _by_key(chunk: pa.Table, keys: pa.Array) -> Iterator[tuple[str, pa.Table]]:
    """The rows of `chunk` per key, in first-seen key order, each key's rows in input order.

    One stable sort and one gather per key, rather than one filter of the whole chunk per key;
    each part is a compact copy (a slice would keep the whole chunk alive while buffered).
    """
    encoded = pc.dictionary_encode(keys)
    names = encoded.dictionary.to_pylist()
    if len(names) == 1 and encoded.indices.null_count == 0:
        yield str(names[0]), chunk
        return
    codes = encoded.indices
    order = pc.sort_indices(codes)  # stable
    counts = pc.value_counts(codes)
    sizes = dict(
        zip(
            counts.field("values").to_pylist(),
            counts.field("counts").to_pylist(),
            strict=True,
        )
    )
    offset = 0
    for code in sorted(sizes, key=lambda c: (c is None, c)):
        size = sizes[code]
        name = "null" if code is None else str(names[code])
        yield name, chunk.take(order.slice(offset, size))
        offset += size


@dataclass
class _Pending:
    parts: list[pa.Table] = field(default_factory=list)
    rows: int = 0
    nbytes: int = 0


class _Files:
    """The open Parquet files of some keys, at most `limit` at once, used by one thread."""

    def __init__(self, table: Table, schema: pa.Schema, prefix: str, limit: int) -> None:
        self.table, self.schema, self.prefix, self.limit = table, schema, prefix, limit
        self.created: list[tuple[int, str, str]] = []
        """(creation order, key, path) of every file."""
        self._open: OrderedDict[str, tuple[pq.ParquetWriter, Any, int]] = OrderedDict()

    def write(self, key: str, rows: pa.Table, last: bool) -> None:
        start = 0
        while start < rows.num_rows:
            writer, stream, written = self._writer(key)
            size = min(rows.num_rows - start, FILE_ROWS - written)
            writer.write_table(rows.slice(start, size), row_group_size=ROW_GROUP_ROWS)
            start += size
            self._open[key] = (writer, stream, written + size)
            self._open.move_to_end(key)
            if written + size >= FILE_ROWS:
                self.close(key)
        if last and key in self._open:
            self.close(key)

    def write_empty(self) -> None:
        self._writer("")[0].write_table(self.schema.empty_table())

    def _writer(self, key: str) -> tuple[pq.ParquetWriter, Any, int]:
        if key not in self._open:
            while len(self._open) >= self.limit:
                self.close(next(iter(self._open)))
            path = f"{self.table.location()}/data/{self.prefix}-{uuid.uuid4().hex[:12]}.parquet"
            stream = self.table.io.new_output(path).create(overwrite=True)
            self.created.append((next(_created), key, path))
            try:
                writer = pq.ParquetWriter(stream, self.schema, compression="zstd")
            except BaseException:
                stream.close()
                raise
            self._open[key] = (writer, stream, 0)
        return self._open[key]

    def close(self, key: str) -> None:
        writer, stream, _ = self._open.pop(key)
        try:
            writer.close()
        finally:
            stream.close()

    def close_all(self) -> None:
        for key in list(self._open):
            self.close(key)


_created = itertools.count()
SPILL_READERS = 64


class _Spill:
    """Rows set aside by key until the end of the write, in Arrow IPC files (uncompressed: the
    fastest to write and read back) in a folder of the temporary directory (`TMPDIR`), which
    is removed with them."""

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema
        self._folder: Path | None = None
        self._files: list[Path] = []
        self._where: dict[str, list[tuple[int, int]]] = {}
        """key -> (file, batch) of its rows, in spill order."""
        self._readers: OrderedDict[int, tuple[Any, pa.ipc.RecordBatchFileReader]] = OrderedDict()

    def put(self, tables: dict[str, pa.Table]) -> None:
        """Write `tables` (rows by key) to one new spill file, one record batch per key."""
        if self._folder is None:
            self._folder = Path(tempfile.mkdtemp(prefix="sluice-spill-"))
        path = self._folder / f"{len(self._files)}.arrow"
        number = 0
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, self.schema) as out:
            for key, rows in tables.items():
                for batch in rows.combine_chunks().to_batches():  # one, unless empty
                    out.write_batch(batch)
                    self._where.setdefault(key, []).append((len(self._files), number))
                    number += 1
        self._files.append(path)

    def keys(self) -> list[str]:
        return list(self._where)

    def take(self, key: str) -> Iterator[pa.RecordBatch]:
        """The spilled rows of `key`, in spill order, read one record batch at a time."""
        for file, number in self._where.pop(key, []):
            yield self._reader(file).get_batch(number)

    def _reader(self, file: int) -> pa.ipc.RecordBatchFileReader:
        """An open reader of spill `file` (the last `SPILL_READERS` stay open)."""
        if file not in self._readers:
            if len(self._readers) >= SPILL_READERS:
                self._readers.popitem(last=False)[1][0].close()
            source = pa.OSFile(str(self._files[file]))
            self._readers[file] = (source, pa.ipc.open_file(source))
        self._readers.move_to_end(file)
        return self._readers[file][1]

    def close(self) -> None:
        for source, _ in self._readers.values():
            source.close()
        self._readers.clear()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)


class _DataFiles:
    """Parquet files by partition key, at most `OPEN_FILES` open; a file is cut when it
    reaches `FILE_ROWS`.

    Rows are buffered per key: a key that reaches a row group (`ROW_GROUP_ROWS`, or a quarter
    of the buffer) is written at once, with what it spilled before (a large partition streams
    to its file); when the buffer exceeds `BUFFER_BYTES`, every buffered row is spilled
    (`_Spill`); at the end each key's spilled and buffered rows are written to its file, one
    key after the other. Files are encoded and written by `WRITE_THREADS` background
    threads (each key always by the same one, so its rows keep their order) while the caller's
    thread pulls and splits the next chunk; all of them release the GIL. Rows handed to a
    thread count against `BUFFER_BYTES` until written, and `end_chunk` lets the writes lag by
    one chunk at most. Only the writing threads touch the files until `close`.
    """

    def __init__(self, table: Table, schema: pa.Schema, prefix: str) -> None:
        threads = WRITE_THREADS
        self._schema = schema
        self._files = [
            _Files(table, schema, prefix, max(1, OPEN_FILES // threads)) for _ in range(threads)
        ]
        self._threads = [
            ThreadPoolExecutor(1, thread_name_prefix="sluice-write") for _ in range(threads)
        ]
        self._shard: dict[str, int] = {}
        self._pending: dict[str, _Pending] = {}
        self._pending_bytes = 0
        self._spill = _Spill(schema)
        self._chunk = 0
        self._writing: deque[tuple[Future[None], int, int]] = deque()
        self._writing_bytes = 0

    def add(self, key: str, part: pa.Table) -> None:
        """Buffer `part` for `key`."""
        pending = self._pending.setdefault(key, _Pending())
        pending.parts.append(part)
        pending.rows += part.num_rows
        pending.nbytes += part.nbytes
        self._pending_bytes += part.nbytes
        if pending.rows >= ROW_GROUP_ROWS or pending.nbytes >= _group_bytes():
            self._write_key(key, last=False)
        self._reap(lambda chunk: False)
        while self._pending_bytes + self._writing_bytes > BUFFER_BYTES:
            if self._writing_bytes >= self._pending_bytes:
                self._reap(lambda chunk: True, at_least_one=True)
            else:
                self._spill.put({k: pa.concat_tables(p.parts) for k, p in self._pending.items()})
                self._pending.clear()
                self._pending_bytes = 0

    def end_chunk(self) -> None:
        """After each chunk of input: wait for the writes handed over before this chunk."""
        this = self._chunk
        self._reap(lambda chunk: chunk < this)
        self._chunk += 1

    def _write_key(self, key: str, *, last: bool) -> None:
        """Hand every row of `key` held so far, spilled ones first (they came first), to its
        writing thread in row groups (`last`: then close its file)."""
        pending = self._pending.pop(key, None)
        if pending is not None:
            self._pending_bytes -= pending.nbytes
        spilled = (pa.Table.from_batches([batch]) for batch in self._spill.take(key))
        parts: list[pa.Table] = []
        rows = nbytes = 0
        for part in itertools.chain(spilled, pending.parts if pending is not None else ()):
            parts.append(part)
            rows += part.num_rows
            nbytes += part.nbytes
            if rows >= ROW_GROUP_ROWS or nbytes >= _group_bytes():
                self._submit(key, pa.concat_tables(parts), nbytes, last=False)
                parts, rows, nbytes = [], 0, 0
        if parts or last:
            rest = pa.concat_tables(parts) if parts else self._schema.empty_table()
            self._submit(key, rest, nbytes, last=last)

    def _submit(self, key: str, rows: pa.Table, nbytes: int, *, last: bool) -> None:
        """Hand `rows` of `key` to its writing thread (`last`: then close its file)."""
        shard = self._shard.setdefault(key, len(self._shard) % len(self._threads))
        future = self._threads[shard].submit(self._files[shard].write, key, rows, last)
        self._writing.append((future, nbytes, self._chunk))
        self._writing_bytes += nbytes
        while self._writing_bytes > BUFFER_BYTES:
            self._reap(lambda chunk: True, at_least_one=True)

    def _reap(self, wait_for: Callable[[int], bool], *, at_least_one: bool = False) -> None:
        """Account for the writes that are done, waiting for those handed over during a chunk
        for which `wait_for(chunk)` holds (and for the oldest one, with `at_least_one`);
        re-raises a write's error."""
        while self._writing:
            future, nbytes, chunk = self._writing[0]
            if not (future.done() or wait_for(chunk) or at_least_one):
                return
            self._writing.popleft()
            self._writing_bytes -= nbytes
            future.result()
            at_least_one = False

    def finish(self) -> None:
        """Write every spilled and buffered row (at least one file, possibly empty) and close
        the files. Each key's rows go out in row groups as they are read back, so this holds
        no more than `BUFFER_BYTES` either."""
        for key in list(dict.fromkeys([*self._spill.keys(), *self._pending])):
            self._write_key(key, last=True)
        self._reap(lambda chunk: True)
        if not any(files.created for files in self._files):
            self._files[0].write_empty()
        self.close()

    def close(self) -> None:
        """Stop the writing threads (dropping writes not started), close every open file and
        drop the spill."""
        try:
            for thread in self._threads:
                thread.shutdown(wait=True, cancel_futures=True)
            for files in self._files:
                files.close_all()
        finally:
            self._spill.close()

    def written(self) -> list[tuple[str, str]]:
        """(key, path) of every file, in the order they were created."""
        return [(key, path) for _, key, path in sorted(c for f in self._files for c in f.created)]


def write_data_files(
    table: Table,
    reader: pa.RecordBatchReader,
    schema: pa.Schema,
    prefix: str,
    split: Callable[[pa.Table], pa.Array] | None = None,
) -> WrittenFiles:
    """Write `reader` as Parquet files of `schema` into the table's data folder.

    With `split`, rows go to files per key that `split` assigns them (a partition), so each
    file holds exactly one partition: one file per partition, whatever the order of the rows
    (more only past `FILE_ROWS`, or when more than `OPEN_FILES` partitions each fill row groups
    at the same time). Each key's rows keep their input order. The rows held stay within about
    `BUFFER_BYTES` plus one chunk of input, however many partitions and rows.

    Always writes at least one file (possibly empty) so that the branch snapshot exists and
    carries provenance even for an empty result. On any error the files written so far are
    deleted. `reader` is closed on return.
    """
    files = _DataFiles(table, schema, prefix)
    total = 0
    try:
        casted = (cast_batch(batch, schema) for batch in reader)
        for chunk in _rechunk(casted, ROW_GROUP_ROWS):
            total += chunk.num_rows
            if split is None:
                files.add("", chunk)
                files.end_chunk()
                continue
            for key, part in _by_key(chunk, split(chunk)):
                files.add(key, part)
            files.end_chunk()
        files.finish()
    except BaseException as exc:
        with contextlib.suppress(Exception):
            files.close()
        for _, path in files.written():
            with contextlib.suppress(OSError):
                table.io.delete(path)
        if isinstance(exc, pa.ArrowInvalid | pa.ArrowNotImplementedError):
            raise SchemaChangeError(f"result cannot be written to the table: {exc}") from exc
        raise
    finally:
        # The reader is spent: closing it frees what its producer holds (a DuckDB query keeps
        # its result, e.g. a window's rows, until then). Arrow's allocator keeps freed memory
        # for reuse, but what runs next (audits, the next step) is mostly DuckDB, which
        # cannot reuse it: without releasing it, the next peak would come on top of this one.
        reader.close()
        pa.default_memory_pool().release_unused()
    written = files.written()
    return WrittenFiles(
        paths=tuple(path for _, path in written),
        rows=total,
        keys=tuple(key for key, _ in written),
    )
