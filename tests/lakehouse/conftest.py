"""Lakehouse-only fixtures: turn Arrow data into readers, run a WAP cycle, read a snapshot back.

Helpers are handed out as fixtures (callables) so that test modules never import a conftest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from lakehouse.audits import Check
from lakehouse.branches import Lakehouse, main_snapshot_id
from lakehouse.provenance import Provenance
from lakehouse.reads import create_view
from lakehouse.wap import WapResult, write_audit_publish

Data = pa.Table | dict[str, Any]


def _reader_of(data: Data, batch_rows: int | None = None) -> pa.RecordBatchReader:
    table = data if isinstance(data, pa.Table) else pa.table(data)
    return pa.RecordBatchReader.from_batches(table.schema, table.to_batches(batch_rows))


@pytest.fixture
def reader_of() -> Callable[..., pa.RecordBatchReader]:
    """`reader_of(data, batch_rows=None)`: a stream over a table or a dict of columns."""
    return _reader_of


def _read_snapshot(lh: Lakehouse, identifier: str, snapshot_id: int | None = None) -> pa.Table:
    """What DuckDB sees of one snapshot (default: `main`), sorted by every column."""
    table = lh.table(identifier)
    sid = main_snapshot_id(table) if snapshot_id is None else snapshot_id
    assert sid is not None
    con = duckdb.connect()
    try:
        create_view(con, ("v",), table, sid)
        return con.sql("SELECT * FROM v ORDER BY ALL").to_arrow_table()
    finally:
        con.close()


WapRunner = Callable[..., WapResult]


@pytest.fixture
def wap(lh: Lakehouse) -> WapRunner:
    """`wap(identifier, data, run_id="r1", checks=(), ...)`: one write-audit-publish cycle."""

    def run(
        identifier: str,
        data: Data | pa.RecordBatchReader,
        run_id: str = "r1",
        *,
        checks: Sequence[Check] = (),
        branch: str | None = None,
        code_version: str = "v1",
        inputs: dict[str, int] | None = None,
    ) -> WapResult:
        reader = data if isinstance(data, pa.RecordBatchReader) else _reader_of(data)
        return write_audit_publish(
            lh,
            identifier,
            reader,
            branch=branch or f"sluice-{run_id}",
            provenance=Provenance(run_id=run_id, code_version=code_version, inputs=inputs or {}),
            checks=checks,
        )

    return run


@pytest.fixture
def rows(lh: Lakehouse) -> Callable[..., list[dict[str, Any]]]:
    """`rows(identifier, snapshot_id=None)`: the rows of a snapshot (default main), sorted."""

    def read(identifier: str, snapshot_id: int | None = None) -> list[dict[str, Any]]:
        return list(_read_snapshot(lh, identifier, snapshot_id).to_pylist())

    return read


@pytest.fixture
def snapshot_table(lh: Lakehouse) -> Callable[..., pa.Table]:
    """`snapshot_table(identifier, snapshot_id=None)`: the Arrow table DuckDB reads, sorted."""
    return lambda identifier, snapshot_id=None: _read_snapshot(lh, identifier, snapshot_id)


@pytest.fixture
def data_files(lh: Lakehouse) -> Callable[[str], set[str]]:
    """`data_files(identifier)`: every Parquet file in the table's data folder or below it,
    used or not."""

    def files(identifier: str) -> set[str]:
        location = lh.table(identifier).location().removeprefix("file://")
        return {str(p) for p in Path(location, "data").rglob("*.parquet")}

    return files
