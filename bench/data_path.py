"""data_path: a silver transform of N synthetic raw orders, Sluice asset vs raw DuckDB COPY.

The transform (`bench.projects.SILVER_SQL`): dedupe (latest `ingested_at` per `order_id`), cast
strings to decimal/integer/timestamp, mask the e-mail with md5. The upstream `bronze.raw_orders`
(N rows, 4% redeliveries) is built once by Sluice, untimed; so is a first silver publish.

- Sluice: the whole process `sluice materialize silver.orders_clean --force`: read the pinned
  upstream, run the query, stream the result to Parquet, audit `not_null(order_id)` and
  `unique(order_id)` on the branch, publish.
- Baseline: a whole Python process running DuckDB
  `COPY (same query over read_parquet(<upstream files>)) TO 'out.parquet'` (zstd, as Sluice).

Both sides are measured as whole processes: wall time and peak RSS (`os.wait4`). Row counts
of both outputs are checked against the number of distinct orders.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from bench.harness import BenchFailure, Settings, alternate, run_process, run_worker, worker_argv
from bench.projects import RAW_ORDERS_SQL, SILVER_SQL, main_count, main_files, sluice_argv
from bench.report import Report, mb

TITLE = "silver transform (dedupe, cast, mask) as a WAP asset vs raw DuckDB COPY ... TO Parquet"

BRONZE = '''
from orchestrator import asset

SQL = """{sql}"""


@asset(layer="bronze")
def raw_orders(ctx):
    return ctx.sql(SQL)
'''

SILVER = '''
from orchestrator import asset, checks

SQL = """{sql}"""


@asset(layer="silver", checks=[checks.not_null("order_id"), checks.unique("order_id")])
def orders_clean(ctx, raw_orders):
    return ctx.sql(SQL)
'''


def project(root: Path, rows: int) -> Path:
    from bench.projects import write_project

    return write_project(
        root,
        {
            "assets/bronze/raw_orders.py": BRONZE.format(sql=RAW_ORDERS_SQL.format(rows=rows)),
            "assets/silver/orders_clean.py": SILVER.format(sql=SILVER_SQL),
        },
    )


def setup(root: str) -> dict[str, Any]:
    from bench.projects import materialize

    start = time.perf_counter()
    materialize(root, ["bronze.raw_orders"])
    bronze_s = time.perf_counter() - start
    materialize(root, ["silver.orders_clean"])
    return {"bronze_s": bronze_s}


# ---- measured side (baseline) ------------------------------------------------------------


def duckdb_copy(files: list[str], out: str) -> dict[str, Any]:
    import duckdb

    start = time.perf_counter()
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    con.execute(
        f"COPY (WITH raw_orders AS (SELECT * FROM read_parquet({files!r})) {SILVER_SQL}) "
        f"TO '{out}' (FORMAT parquet, COMPRESSION zstd)"
    )
    con.close()
    return {"seconds": time.perf_counter() - start}


# ---- driver ------------------------------------------------------------------------------


def run(settings: Settings, report: Report, console: Any) -> None:
    rows = settings.option("rows", 1_000_000 if settings.quick else 10_000_000)
    repeat = settings.repeats(3)
    root = project(settings.workdir / "project", rows)
    console.print(f"building bronze.raw_orders ({rows:,} rows) and a first silver publish ...")
    built = run_worker("data_path:setup", {"root": str(root)}, timeout=None)
    files = main_files(root, "bronze.raw_orders")
    expected = main_count(root, "bronze.raw_orders", "count(DISTINCT order_id)")
    report.params.update(
        {
            "rows": rows,
            "distinct_orders": expected,
            "upstream_files": len(files),
            "repeat": repeat,
            "bronze_build_s": built["bronze_s"],
        }
    )

    def sluice(_: int) -> None:
        argv = sluice_argv("--project", str(root), "materialize", "silver.orders_clean", "--force")
        r = run_process(argv, cwd=root).check("sluice materialize")
        got = main_count(root, "silver.orders_clean")
        if got != expected:
            raise BenchFailure(f"sluice published {got} rows, expected {expected}")
        report.add_run("sluice", r.wall_s, cpu_s=r.cpu_s, rss_bytes=r.maxrss_bytes)
        step = re.search(r"published silver\.orders_clean: .* in ([0-9.]+)s", r.stdout)
        if step:
            report.add("sluice", "step_s", float(step.group(1)))
        console.print(f"  sluice  {r.wall_s:.2f} s, {mb(r.maxrss_bytes):,.0f} MB")

    def duck(i: int) -> None:
        out = settings.workdir / f"copy_{i}.parquet"
        r = run_process(worker_argv("data_path:duckdb_copy", {"files": files, "out": str(out)}))
        r.check("duckdb COPY")
        import duckdb

        counted = duckdb.execute("SELECT count(*) FROM read_parquet($out)", {"out": str(out)})
        got = counted.fetchall()[0][0]
        if got != expected:
            raise BenchFailure(f"COPY wrote {got} rows, expected {expected}")
        out.unlink()
        report.add_run("duckdb COPY", r.wall_s, cpu_s=r.cpu_s, rss_bytes=r.maxrss_bytes)
        if r.payload:
            report.add("duckdb COPY", "in_process_s", r.payload["seconds"])
        console.print(f"  duckdb  {r.wall_s:.2f} s, {mb(r.maxrss_bytes):,.0f} MB")

    alternate(repeat, {"sluice": sluice, "duckdb COPY": duck})
    report.ratio("time sluice/COPY", ("sluice", "time_s"), ("duckdb COPY", "time_s"), target=1.3)
    report.ratio(
        "peak RSS sluice/COPY",
        ("sluice", "peak_rss_mb"),
        ("duckdb COPY", "peak_rss_mb"),
        target=1.2,
    )
    report.ratio("cpu sluice/COPY", ("sluice", "cpu_s"), ("duckdb COPY", "cpu_s"))
    report.note("both sides are whole processes (interpreter start and imports included)")
