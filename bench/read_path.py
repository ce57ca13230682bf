"""read_path: a gold asset aggregating an N-row upstream vs the same DuckDB query on its files.

The upstream `silver.orders` (N typed order rows) and a first publish of the gold asset are
built once, untimed. The query is `bench.projects.GOLD_SQL` (per day and status: orders, items,
revenue; about 1,800 result rows).

Every side runs its measured operation twice in a fresh process and reports the second run,
and keeps what a process keeps between runs: Sluice its catalog and its DuckDB database, the
baseline its DuckDB database (opening one costs 20-30 ms, more than the difference measured).

- Sluice: `load_project` + `materialize_selection(["gold.order_stats"], force=True)`: pin the
  upstream snapshot, expose it to DuckDB, run the query, write the result, audit
  `not_null(order_date)`, publish.
- Sluice read layer (information): open the catalog, load the upstream, then
  `lakehouse.reads.create_view` over its `main` snapshot + the same query into Arrow, without
  the WAP around it.
- Baseline: DuckDB, the same query over `read_parquet([...files...])` of
  the upstream's `main` snapshot, into Arrow, on a fresh cursor of a database opened once
  and configured as Sluice configures its own (Parquet footers kept), in
  a process that imported pyarrow before its first query, as Sluice's has (imported only by
  that first query's `to_arrow_table`, pyarrow leaves every later query of the process
  15-20 ms slower on this kind of machine: an effect of the process, not of the work).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.harness import (
    BenchFailure,
    Clock,
    Settings,
    alternate,
    clock,
    run_process,
    run_worker,
    worker_argv,
)
from bench.projects import GOLD_SQL, TYPED_ORDERS_SQL, main_count, main_files, write_project
from bench.report import Report

TITLE = "gold aggregation over an N-row upstream as an asset vs DuckDB over read_parquet"

SILVER = '''
from orchestrator import asset

SQL = """{sql}"""


@asset(layer="silver")
def orders(ctx):
    return ctx.sql(SQL)
'''

GOLD = '''
from orchestrator import asset, checks

SQL = """{sql}"""


@asset(layer="gold", checks=[checks.not_null("order_date")])
def order_stats(ctx, orders):
    return ctx.sql(SQL)
'''


def project(root: Path, rows: int) -> Path:
    return write_project(
        root,
        {
            "assets/silver/orders.py": SILVER.format(sql=TYPED_ORDERS_SQL.format(rows=rows)),
            "assets/gold/order_stats.py": GOLD.format(sql=GOLD_SQL),
        },
    )


def setup(root: str) -> dict[str, Any]:
    from bench.projects import materialize

    materialize(root, ["*"])
    return {}


# ---- measured sides ----------------------------------------------------------------------


def sluice_side(root: str, expected: int) -> dict[str, Any]:
    import orchestrator.loader  # noqa: F401  (imports are not timed)
    import orchestrator.materialize  # noqa: F401
    from bench.projects import materialize

    materialize(root, ["gold.order_stats"], force=True)  # warms the process
    result = materialize(root, ["gold.order_stats"], force=True)
    if result["rows"]["gold.order_stats"] != expected:
        raise BenchFailure(f"gold published {result['rows']} rows, expected {expected}")
    return {"seconds": result["total_s"], "cpu_s": result["cpu_s"]}


def read_layer_side(root: str, expected: int) -> dict[str, Any]:
    from lakehouse import duck
    from lakehouse.branches import main_snapshot_id
    from lakehouse.catalog import open_catalog
    from lakehouse.reads import create_view
    from orchestrator.config import load_config

    def read() -> Clock:
        with clock() as measured:
            catalog = open_catalog(load_config(Path(root)).catalog)
            table = catalog.load_table("silver.orders")
            con = duck.connect()
            snapshot = main_snapshot_id(table)
            assert snapshot is not None
            create_view(con, ("orders",), table, snapshot)
            result = con.sql(GOLD_SQL).to_arrow_table()
            con.close()
        if result.num_rows != expected:
            raise BenchFailure(f"read layer returned {result.num_rows} rows, expected {expected}")
        return measured

    read()  # warms the process, as the other sides are warmed
    measured = read()
    return {"seconds": measured.wall, "cpu_s": measured.cpu}


def duckdb_side(files: list[str], expected: int) -> dict[str, Any]:
    import duckdb
    import pyarrow  # noqa: F401  (before the first query: see the module docstring)

    database = duckdb.connect()
    database.execute("SET enable_progress_bar = false; SET GLOBAL parquet_metadata_cache = true")

    def read() -> Clock:
        with clock() as measured:
            con = database.cursor()
            query = f"WITH orders AS (SELECT * FROM read_parquet({files!r})) {GOLD_SQL}"
            result = con.sql(query).to_arrow_table()
            con.close()
        if result.num_rows != expected:
            raise BenchFailure(f"duckdb returned {result.num_rows} rows, expected {expected}")
        return measured

    read()  # warms the process
    measured = read()
    return {"seconds": measured.wall, "cpu_s": measured.cpu}


# ---- driver ------------------------------------------------------------------------------


def run(settings: Settings, report: Report, console: Any) -> None:
    rows = settings.option("rows", 1_000_000 if settings.quick else 10_000_000)
    repeat = settings.repeats(5)
    root = project(settings.workdir / "project", rows)
    console.print(f"building silver.orders ({rows:,} rows) and a first gold publish ...")
    built = run_process(worker_argv("read_path:setup", {"root": str(root)}), timeout=None)
    built.check("read_path setup")
    files = main_files(root, "silver.orders")
    if main_count(root, "silver.orders") != rows:
        raise BenchFailure("silver.orders does not hold the generated rows")
    expected = main_count(root, "gold.order_stats")
    report.params.update(
        {
            "rows": rows,
            "upstream_files": len(files),
            "result_rows": expected,
            "repeat": repeat,
            "setup_s": built.wall_s,
        }
    )

    def sluice(_: int) -> None:
        r = run_worker("read_path:sluice_side", {"root": str(root), "expected": expected})
        report.add_run("sluice asset", r["seconds"], cpu_s=r["cpu_s"], rss_bytes=r["maxrss_bytes"])
        console.print(f"  sluice asset {r['seconds'] * 1000:.0f} ms")

    def layer(_: int) -> None:
        r = run_worker("read_path:read_layer_side", {"root": str(root), "expected": expected})
        report.add_run("sluice read layer", r["seconds"], cpu_s=r["cpu_s"])
        console.print(f"  read layer   {r['seconds'] * 1000:.0f} ms")

    def duck(_: int) -> None:
        r = run_worker("read_path:duckdb_side", {"files": files, "expected": expected})
        report.add_run("duckdb", r["seconds"], cpu_s=r["cpu_s"], rss_bytes=r["maxrss_bytes"])
        console.print(f"  duckdb       {r['seconds'] * 1000:.0f} ms")

    alternate(repeat, {"sluice asset": sluice, "duckdb": duck, "read layer": layer})
    report.ratio("time asset/duckdb", ("sluice asset", "time_s"), ("duckdb", "time_s"), target=1.1)
    report.ratio("time read layer/duckdb", ("sluice read layer", "time_s"), ("duckdb", "time_s"))
    report.ratio("cpu asset/duckdb", ("sluice asset", "cpu_s"), ("duckdb", "cpu_s"))
