"""What an asset function sees: `ctx` and its upstreams as DuckDB relations.

Each materialization gets its own DuckDB connection on which every upstream is a view over the
snapshot pinned for this run, by full name (`bronze.raw_orders`) and, when unambiguous, by
short name (`raw_orders`). The connection's session TimeZone is set explicitly, whatever the
host's: the asset's partition timezone (UTC when unpartitioned), so that `$partition_start` /
`$partition_end` (wall-clock times of that zone) select the same rows of a `timestamptz`
column on every host.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa

from orchestrator.assets import AssetKey
from orchestrator.errors import UnsupportedReturnTypeError


@dataclass(frozen=True)
class Partition:
    """A partition window `[start, end)`; `key` names it (for example `2024-01-31`)."""

    key: str
    start: Any
    end: Any


class AssetContext:
    """The `ctx` argument: which asset, run and partition, a logger, `con` and `sql()`.

    The upstream views are created on `con` the first time `con` or `sql()` is used (`prepare`),
    so an asset that only uses the relations it was passed never pays for them.
    """

    def __init__(
        self,
        asset: AssetKey,
        run_id: str,
        con: duckdb.DuckDBPyConnection,
        partition: Partition | None = None,
        log: logging.Logger | None = None,
        prepare: Callable[[], None] | None = None,
    ) -> None:
        self.asset = asset
        self.run_id = run_id
        self.partition = partition
        self.log = log or logging.getLogger("sluice.asset")
        self._con = con
        self._prepare = prepare

    def __repr__(self) -> str:
        where = f"asset={self.asset!r}, run_id={self.run_id!r}, partition={self.partition!r}"
        return f"AssetContext({where})"

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """This step's DuckDB connection, with every pinned upstream as a view."""
        if self._prepare is not None:
            prepare, self._prepare = self._prepare, None
            prepare()
        return self._con

    def sql(self, query: str, params: Mapping[str, Any] | list[Any] | None = None) -> Any:
        """Run DuckDB SQL over this run's pinned upstreams; returns a lazy relation.

        Values belong in `params` (`$name` or `?` placeholders), never in the query text.
        """
        if params:
            return self.con.sql(query, params=params)
        return self.con.sql(query)


def to_result(value: Any, asset: AssetKey) -> pa.RecordBatchReader | duckdb.DuckDBPyRelation:
    """What an asset returned, ready to write: a DuckDB relation stays one (DuckDB can write
    its rows itself), anything else becomes a stream of Arrow batches (`to_reader`)."""
    if isinstance(value, duckdb.DuckDBPyRelation):
        return value
    return to_reader(value, asset)


def to_reader(value: Any, asset: AssetKey) -> pa.RecordBatchReader:
    """Turn what an asset returned into a stream of Arrow batches (never fully in memory
    for readers and DuckDB relations)."""
    if isinstance(value, pa.RecordBatchReader):
        return value
    if isinstance(value, pa.Table):
        return value.to_reader()
    if isinstance(value, pa.RecordBatch):
        return pa.Table.from_batches([value]).to_reader()
    if isinstance(value, duckdb.DuckDBPyRelation):
        # Not at module level: asset modules import this one, and planning must not load
        # pyiceberg.
        from lakehouse.relation_writes import relation_reader

        return relation_reader(value)
    # Only DataFrames: a Series or a polars LazyFrame is an unsupported type, not a user error.
    # Neither library is imported here; if `value` is one of theirs, it is already loaded.
    pandas, polars = sys.modules.get("pandas"), sys.modules.get("polars")
    if pandas is not None and isinstance(value, pandas.DataFrame):
        return pa.Table.from_pandas(value, preserve_index=False).to_reader()
    if polars is not None and isinstance(value, polars.DataFrame):
        return value.to_arrow().to_reader()
    raise UnsupportedReturnTypeError(
        f"returned {type(value).__module__}.{type(value).__qualname__}; return a "
        "pyarrow.Table, pyarrow.RecordBatchReader, DuckDB relation, or pandas/polars DataFrame",
        asset=str(asset),
    )
