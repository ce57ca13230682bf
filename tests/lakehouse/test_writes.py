"""Streaming Arrow batches into Parquet data files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyiceberg.table import Table

from lakehouse import writes
from lakehouse.branches import Lakehouse
from lakehouse.errors import SchemaChangeError
from lakehouse.tables import ensure_table
from lakehouse.writes import write_data_files

SOURCE = pa.schema([("id", pa.int32()), ("name", pa.large_string())])
TARGET = pa.schema([("id", pa.int64()), ("name", pa.string())])


@pytest.fixture
def table(lh: Lakehouse) -> Table:
    return ensure_table(lh.catalog, "w.stream", TARGET)


def _data_dir(table: Table) -> Path:
    return Path(table.location().removeprefix("file://"), "data")


def _on_disk(table: Table) -> set[str]:
    return {p.name for p in _data_dir(table).glob("*.parquet")}


def _batch(start: int, n: int) -> pa.RecordBatch:
    ids = list(range(start, start + n))
    return pa.record_batch(
        [pa.array(ids, pa.int32()), pa.array([f"n{i}" for i in ids], pa.large_string())],
        schema=SOURCE,
    )


@pytest.fixture
def small_files(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writes, "ROW_GROUP_ROWS", 10)
    monkeypatch.setattr(writes, "FILE_ROWS", 20)


@pytest.mark.usefixtures("small_files")
def test_reader_is_streamed_into_several_files(table: Table) -> None:
    files_seen_at_batch: list[int] = []

    def batches() -> Iterator[pa.RecordBatch]:
        for i in range(10):
            files_seen_at_batch.append(len(_on_disk(table)))
            yield _batch(i * 10, 10)

    reader = pa.RecordBatchReader.from_batches(SOURCE, batches())
    written = write_data_files(table, reader, TARGET, prefix="sluice-run")

    # Files were written while the generator was still producing: it was consumed lazily,
    # never collected whole before the first file was opened.
    assert files_seen_at_batch[0] == 0
    assert files_seen_at_batch[-1] >= 4, files_seen_at_batch
    assert files_seen_at_batch == sorted(files_seen_at_batch)

    assert written.rows == 100
    assert len(written.paths) == 5
    assert {Path(p).name for p in written.paths} == _on_disk(table)
    assert all(Path(p).name.startswith("sluice-run-") for p in written.paths)
    parts = [pq.read_table(p.removeprefix("file://")) for p in written.paths]
    assert all(part.schema.equals(TARGET) for part in parts)
    assert all(part.num_rows <= 20 for part in parts)
    combined = pa.concat_tables(parts)
    assert combined.column("id").to_pylist() == list(range(100))
    assert combined.column("name").to_pylist() == [f"n{i}" for i in range(100)]


def test_default_sizes_put_a_small_result_in_one_file(table: Table) -> None:
    reader = pa.RecordBatchReader.from_batches(SOURCE, [_batch(0, 5), _batch(5, 0), _batch(5, 5)])
    written = write_data_files(table, reader, TARGET, prefix="sluice-one")
    assert written.rows == 10
    [path] = written.paths
    assert pq.read_table(path.removeprefix("file://")).column("id").to_pylist() == list(range(10))


def test_empty_reader_still_writes_one_empty_file(table: Table) -> None:
    reader = pa.RecordBatchReader.from_batches(SOURCE, iter(()))
    written = write_data_files(table, reader, TARGET, prefix="sluice-empty")

    assert written.rows == 0
    [path] = written.paths
    content = pq.read_table(path.removeprefix("file://"))
    assert content.num_rows == 0
    assert content.schema.equals(TARGET)


@pytest.mark.usefixtures("small_files")
def test_exception_mid_stream_deletes_the_partial_files(table: Table) -> None:
    files_before_failure: set[str] = set()

    def batches() -> Iterator[pa.RecordBatch]:
        for i in range(5):
            yield _batch(i * 10, 10)
        files_before_failure.update(_on_disk(table))
        raise RuntimeError("upstream query died")

    reader = pa.RecordBatchReader.from_batches(SOURCE, batches())
    with pytest.raises(RuntimeError, match="upstream query died"):
        write_data_files(table, reader, TARGET, prefix="sluice-broken")

    assert len(files_before_failure) >= 2  # the failure really happened mid-write
    assert _on_disk(table) == set()


def test_unsigned_values_that_do_not_fit_a_long_fail_instead_of_wrapping(table: Table) -> None:
    source = pa.schema([("id", pa.uint64()), ("name", pa.string())])
    fits = pa.record_batch([pa.array([1], pa.uint64()), pa.array(["x"])], schema=source)
    too_big = pa.record_batch([pa.array([2**63 + 1], pa.uint64()), pa.array(["y"])], schema=source)
    reader = pa.RecordBatchReader.from_batches(source, [fits, too_big])
    with pytest.raises(SchemaChangeError, match="cannot be written"):
        write_data_files(table, reader, TARGET, prefix="sluice-overflow")
    assert _on_disk(table) == set()
