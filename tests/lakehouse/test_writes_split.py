"""Split writes (a ranged write: one file per partition): bounded memory and open files, one
file per partition whatever the order of the rows, and the split keys themselves."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from pyiceberg.table import Table

from lakehouse import writes
from lakehouse.branches import Lakehouse
from lakehouse.tables import ensure_table
from lakehouse.windows import SPLIT_FORMATS, RowWindow
from lakehouse.writes import write_data_files

SCHEMA = pa.schema([("key", pa.string()), ("n", pa.int64()), ("pad", pa.string())])


def by_key(rows: pa.Table) -> pa.Array:
    return rows.column("key").combine_chunks()


@pytest.fixture
def table(lh: Lakehouse) -> Table:
    return ensure_table(lh.catalog, "w.split", SCHEMA)


@pytest.fixture
def spill_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(folder))
    return folder


def _batch(keys: list[str], start: int) -> pa.RecordBatch:
    n = list(range(start, start + len(keys)))
    return pa.record_batch(
        [pa.array(keys), pa.array(n, pa.int64()), pa.array(["x" * 50] * len(keys))], schema=SCHEMA
    )


def _content(path: str) -> pa.Table:
    return pq.read_table(path.removeprefix("file://"))


def _interleaved(keys: int, rows: int, batch_rows: int) -> list[pa.RecordBatch]:
    """`rows` rows whose keys cycle through `keys` partitions: every batch touches them all."""
    names = [f"k{i % keys:02d}" for i in range(rows)]
    return [_batch(names[i : i + batch_rows], i) for i in range(0, rows, batch_rows)]


def test_interleaved_partitions_over_the_buffer_still_get_one_file_each(
    table: Table, spill_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writes, "ROW_GROUP_ROWS", 1_000)  # no key fills one: all are held
    monkeypatch.setattr(writes, "BUFFER_BYTES", 100_000)  # about 1,500 rows
    monkeypatch.setattr(writes, "OPEN_FILES", 2)
    batches = _interleaved(keys=12, rows=6_000, batch_rows=250)
    spilled_meanwhile: list[int] = []

    def produce() -> Iterator[pa.RecordBatch]:
        for batch in batches:
            spilled_meanwhile.append(len(list(spill_dir.rglob("*.arrow"))))
            yield batch

    written = write_data_files(
        table, pa.RecordBatchReader.from_batches(SCHEMA, produce()), SCHEMA, "sluice-x", by_key
    )

    assert max(spilled_meanwhile) > 1  # the buffer overflowed, more than once
    assert written.rows == 6_000
    assert sorted(written.keys) == [f"k{i:02d}" for i in range(12)]  # one file per key
    source = pa.Table.from_batches(batches)
    for key, [path] in written.paths_by_key().items():
        expected = source.filter(pc.equal(source.column("key"), key))
        assert _content(path).equals(expected), key  # every row of the key, in input order
    assert list(spill_dir.iterdir()) == []  # the spill is gone


def test_a_spilled_partition_that_grows_large_streams_on_in_order(
    table: Table, spill_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writes, "ROW_GROUP_ROWS", 1_000)
    monkeypatch.setattr(writes, "BUFFER_BYTES", 100_000)
    # First every key a little (spilled), then key k00 alone for many row groups.
    batches = _interleaved(keys=12, rows=3_000, batch_rows=250)
    batches += [_batch(["k00"] * 250, 3_000 + i * 250) for i in range(40)]
    written = write_data_files(
        table, pa.RecordBatchReader.from_batches(SCHEMA, batches), SCHEMA, "sluice-g", by_key
    )
    source = pa.Table.from_batches(batches)
    assert sorted(written.keys) == [f"k{i:02d}" for i in range(12)]
    for key, [path] in written.paths_by_key().items():
        expected = source.filter(pc.equal(source.column("key"), key))
        assert _content(path).equals(expected), key
    assert list(spill_dir.iterdir()) == []


def test_never_more_files_open_than_the_limit(
    table: Table, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writes, "ROW_GROUP_ROWS", 10)  # every key writes as it streams
    monkeypatch.setattr(writes, "OPEN_FILES", 4)
    open_now: list[int] = [0]
    most: list[int] = [0]

    class CountingWriter(pq.ParquetWriter):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            open_now[0] += 1
            most[0] = max(most[0], open_now[0])

        def close(self) -> None:
            super().close()
            open_now[0] -= 1

    monkeypatch.setattr(writes.pq, "ParquetWriter", CountingWriter)
    batches = _interleaved(keys=10, rows=2_000, batch_rows=100)
    written = write_data_files(
        table, pa.RecordBatchReader.from_batches(SCHEMA, batches), SCHEMA, "sluice-o", by_key
    )
    assert most[0] <= 4
    assert open_now[0] == 0
    assert written.rows == 2_000
    assert sum(_content(p).num_rows for p in written.paths) == 2_000
    assert set(written.keys) == {f"k{i:02d}" for i in range(10)}


def test_a_large_partition_streams_to_its_file_before_the_end(
    table: Table, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writes, "ROW_GROUP_ROWS", 100)
    data_dir = Path(table.location().removeprefix("file://"), "data")
    files_seen: list[int] = []

    def produce() -> Iterator[pa.RecordBatch]:
        for i in range(10):  # 10 batches of key "a", then one of "b"
            files_seen.append(len(list(data_dir.glob("*.parquet"))))
            yield _batch(["a"] * 100, i * 100)
        files_seen.append(len(list(data_dir.glob("*.parquet"))))
        yield _batch(["b"] * 5, 1_000)

    written = write_data_files(
        table, pa.RecordBatchReader.from_batches(SCHEMA, produce()), SCHEMA, "sluice-s", by_key
    )
    assert files_seen[0] == 0 and files_seen[-1] == 1  # "a" was being written meanwhile
    assert written.keys == ("a", "b")
    content = _content(written.paths[0])
    assert content.column("n").to_pylist() == list(range(1_000))
    assert pq.ParquetFile(written.paths[0].removeprefix("file://")).num_row_groups == 10


def test_a_failure_after_a_spill_leaves_no_file_and_no_spill(
    table: Table, spill_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writes, "ROW_GROUP_ROWS", 1_000)
    monkeypatch.setattr(writes, "BUFFER_BYTES", 100_000)
    data_dir = Path(table.location().removeprefix("file://"), "data")

    def produce() -> Iterator[pa.RecordBatch]:
        yield from _interleaved(keys=12, rows=6_000, batch_rows=250)
        assert list(spill_dir.rglob("*.arrow"))
        raise RuntimeError("upstream query died")

    with pytest.raises(RuntimeError, match="upstream query died"):
        write_data_files(
            table, pa.RecordBatchReader.from_batches(SCHEMA, produce()), SCHEMA, "sluice-f", by_key
        )
    assert list(data_dir.glob("*.parquet")) == []
    assert list(spill_dir.iterdir()) == []


def test_an_empty_split_result_still_writes_one_empty_file(table: Table) -> None:
    reader = pa.RecordBatchReader.from_batches(SCHEMA, iter(()))
    written = write_data_files(table, reader, SCHEMA, "sluice-e", by_key)
    assert written.rows == 0
    [path] = written.paths
    assert _content(path).num_rows == 0


def _reference_split(window: RowWindow, rows: pa.Table) -> list[str]:
    """Each row's local wall-clock time formatted per row (the definition of the key)."""
    values = rows.column(window.column).combine_chunks()
    if pa.types.is_timestamp(values.type) and values.type.tz is not None:
        zone = getattr(window.start.tzinfo, "key", "UTC")
        values = values.cast(pa.timestamp(values.type.unit, tz=zone))
    keys = pc.strftime(values, format=SPLIT_FORMATS[window.transform])
    return list(pc.fill_null(keys, "null").to_pylist())


@pytest.mark.parametrize("transform", ["hour", "day", "month"])
@pytest.mark.parametrize("zone", ["America/New_York", "Europe/London", "Asia/Kolkata", "UTC"])
def test_split_keys_are_each_rows_local_partition(transform: str, zone: str) -> None:
    tz = ZoneInfo(zone)
    first, end = datetime(2024, 1, 1, tzinfo=tz), datetime(2025, 1, 1, tzinfo=tz)
    window = RowWindow("ts", first, end, "2024", transform)  # type: ignore[arg-type]
    rng = random.Random(7)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    # Around both DST changes of the year (and anywhere), plus the repeated New York hour.
    instants = [start + timedelta(seconds=rng.randrange(366 * 86400)) for _ in range(3_000)]
    instants += [datetime(2024, 3, 10, 6, tzinfo=UTC) + timedelta(minutes=m) for m in range(300)]
    instants += [datetime(2024, 11, 3, 4, tzinfo=UTC) + timedelta(minutes=m) for m in range(300)]
    aware = pa.table({"ts": pa.array([*instants, None], pa.timestamp("us", tz="UTC"))})
    assert window.split(aware).to_pylist() == _reference_split(window, aware)
    naive = pa.table({"ts": pa.array([i.replace(tzinfo=None) for i in instants] + [None])})
    assert window.split(naive).to_pylist() == _reference_split(window, naive)
    dates = pa.table({"ts": pa.array([i.date() for i in instants] + [None], pa.date32())})
    assert window.split(dates).to_pylist() == _reference_split(window, dates)
    seconds = pa.table({"ts": aware.column("ts").cast(pa.timestamp("s", tz="UTC"))})
    assert window.split(seconds).to_pylist() == _reference_split(window, seconds)
