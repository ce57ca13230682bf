"""backfill's baseline: the raw script, the same rows into the same tables with pyiceberg and
DuckDB only (no audits, no branches, no state store). Run in a worker process by
`bench.backfill`, whose docstring describes both sides.
"""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.backfill import LAYERS


def raw_backfill(
    uri: str, warehouse: str, first: str, days: int, rows: int, batched: bool
) -> dict[str, Any]:
    """The raw script: the same rows into the same tables with pyiceberg + DuckDB only.

    Per table, the first result's Arrow schema creates the table (plus a `day` partition
    spec on its partition column). Per-partition: each day's result is written by DuckDB as
    one Parquet file in the table location and added with `add_files` (one commit per table
    and day). Batched: one query per table over the whole range, written one file per day
    (`partition_by` a helper day column, which is left out of the files), one `add_files`.
    """
    import uuid

    import duckdb
    from pyiceberg.catalog import load_catalog
    from pyiceberg.table import Table
    from pyiceberg.transforms import DayTransform

    started = time.perf_counter()
    catalog = load_catalog("raw", type="sql", uri=uri, warehouse=warehouse)
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    tables: dict[str, Table] = {}

    def table_for(identifier: str, column: str, relation: duckdb.DuckDBPyRelation) -> Table:
        if identifier not in tables:
            namespace = identifier.split(".")[0]
            catalog.create_namespace_if_not_exists(namespace)
            schema = relation.limit(0).to_arrow_table().schema
            table = catalog.create_table(identifier, schema=schema)
            with table.update_spec() as spec:
                spec.add_field(column, DayTransform(), f"{column}_day")
            tables[identifier] = catalog.load_table(identifier)
            data = tables[identifier].location().removeprefix("file://") + "/data"
            Path(data).mkdir(parents=True, exist_ok=True)
        return tables[identifier]

    def relation(query: str, upstream: str | None, files: list[str], params: dict[str, Any]) -> Any:
        if upstream is None:
            return con.sql(query, params=params)
        con.read_parquet(files, hive_partitioning=False).create_view(upstream, replace=True)
        return con.sql(query)

    day0 = datetime.combine(date.fromisoformat(first), datetime.min.time())
    written: dict[str, list[str]] = {}
    commits = 0
    if batched:
        params = {"start": day0, "end": day0 + timedelta(days=days), "rows": rows}
        upstream_files: list[str] = []
        for identifier, column, upstream, query in LAYERS:
            result = relation(query, upstream, upstream_files, params)
            table = table_for(identifier, column, result)
            folder = f"{table.location()}/data/raw-{uuid.uuid4().hex[:12]}"
            out = Path(folder.removeprefix("file://"))
            key = duckdb.ColumnExpression(column).cast(duckdb.sqltype("DATE")).alias("_raw_day")
            result.project(duckdb.StarExpression(), key).write_parquet(
                str(out), compression="zstd", partition_by=["_raw_day"]
            )
            paths = sorted(str(p) for p in out.rglob("*.parquet"))
            table.add_files([f"file://{p}" for p in paths])
            commits += 1
            written[identifier] = upstream_files = paths
    else:
        for day in range(days):
            params = {
                "start": day0 + timedelta(days=day),
                "end": day0 + timedelta(days=day + 1),
                "rows": rows,
            }
            upstream_files = []
            for identifier, column, upstream, query in LAYERS:
                result = relation(query, upstream, upstream_files, params)
                table = table_for(identifier, column, result)
                path = f"{table.location()}/data/raw-{uuid.uuid4().hex[:12]}.parquet"
                local = path.removeprefix("file://")
                result.write_parquet(local, compression="zstd")
                table.add_files([path])
                commits += 1
                written.setdefault(identifier, []).append(local)
                upstream_files = [local]
    con.close()
    return {
        "seconds": time.perf_counter() - started,
        "commits": commits,
        "files": {k: len(v) for k, v in written.items()},
    }
