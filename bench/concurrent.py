"""concurrent: two processes backfilling partitions of one table vs the same work in one.

The asset `bench.daily_orders` is daily-partitioned on `order_date`; each partition holds
`rows` generated rows with `order_id` unique within the day, audited by `not_null(order_id)`
and `unique(order_id)`. Every repetition starts from a fresh catalog.

- one process: `sluice backfill bench.daily_orders --from D1 --to DN`.
- two processes, started together on the same catalog: `--from D1 --to Dk` and
  `--from Dk+1 --to DN`. Their publishes race for `main` of the same table.

Throughput is rows published per second of wall time, whole processes included. After every
run the table must hold exactly the N partitions, each with exactly `rows` rows and no
duplicated `order_id`: no lost and no duplicated row.
"""

from __future__ import annotations

import inspect
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from bench.harness import (
    BenchFailure,
    Settings,
    SkipBenchmark,
    alternate,
    run_process,
    run_together,
)
from bench.projects import main_files, sluice_argv, write_project
from bench.report import Report

TITLE = "two processes backfilling partitions of one table vs one process"
IDENTIFIER = "bench.daily_orders"
START = date(2024, 1, 1)

ASSET = """
from orchestrator import DailyPartitions, asset, checks


@asset(
    layer="bench",
    partitions=DailyPartitions(start="2024-01-01", column="order_date"),
    checks=[checks.not_null("order_id"), checks.unique("order_id")],
)
def daily_orders(ctx):
    day = str(ctx.partition.key)[:10]
    return ctx.sql(
        "SELECT CAST($day AS DATE) AS order_date, $day || '-' || CAST(i AS VARCHAR) AS order_id, "
        "CAST(i AS DOUBLE) * 0.5 AS amount FROM range({rows}) t(i)",
        params={{"day": day}},
    )
"""


def missing_prerequisite() -> str | None:
    """Why date partitions cannot be benchmarked yet, or None when they can."""
    try:
        import orchestrator
    except ImportError as exc:  # pragma: no cover
        return f"cannot import orchestrator: {exc}"
    if not hasattr(orchestrator, "DailyPartitions"):
        return "needs date partitions: orchestrator does not export DailyPartitions yet"
    if "partitions" not in inspect.signature(orchestrator.asset).parameters:
        return "needs date partitions: @asset has no partitions= option yet"
    backfill = run_process(sluice_argv("backfill", "--help"))
    if backfill.returncode != 0 or "--from" not in backfill.stdout:
        return "needs date partitions: there is no `sluice backfill --from D --to D` yet"
    return None


def project(root: Path, rows: int) -> Path:
    return write_project(root, {"assets/bench/daily_orders.py": ASSET.format(rows=rows)})


def verify(root: Path, days: int, rows: int) -> None:
    import duckdb

    files = main_files(root, IDENTIFIER)
    found = duckdb.execute(
        "SELECT CAST(order_date AS VARCHAR), count(*), count(DISTINCT order_id) "
        "FROM read_parquet($files) GROUP BY 1 ORDER BY 1",
        {"files": files},
    ).fetchall()
    expected = [(str(START + timedelta(days=d)), rows, rows) for d in range(days)]
    if found != expected:
        lost = sum(max(0, rows - n) for _, n, _ in found) + rows * (days - len(found))
        raise BenchFailure(
            f"table content differs from {days} partitions x {rows} rows "
            f"(got {len(found)} partitions; first differences: "
            f"{[f for f in found if f[1:] != (rows, rows)][:5]}; about {lost} rows lost)"
        )


def run(settings: Settings, report: Report, console: Any) -> None:
    reason = missing_prerequisite()
    if reason:
        raise SkipBenchmark(reason)
    days = settings.option("days", 6 if settings.quick else 20)
    rows = settings.option("partition_rows", 10_000)
    repeat = settings.repeats(3)
    last = START + timedelta(days=days - 1)
    split = START + timedelta(days=days // 2 - 1)
    report.params.update({"partitions": days, "rows_per_partition": rows, "repeat": repeat})

    def backfill(root: Path, first: date, to: date) -> list[str]:
        return sluice_argv(
            "--project", str(root), "backfill", IDENTIFIER, "--from", str(first), "--to", str(to)
        )

    def one(i: int) -> None:
        root = project(settings.workdir / f"one_{i}", rows)
        r = run_process(backfill(root, START, last), cwd=root).check("one-process backfill")
        verify(root, days, rows)
        report.add_run("one process", r.wall_s, cpu_s=r.cpu_s)
        report.add("one process", "rows_per_s", days * rows / r.wall_s)
        console.print(f"  one process   {r.wall_s:.2f} s")

    def two(i: int) -> None:
        root = project(settings.workdir / f"two_{i}", rows)
        wall, results = run_together(
            [
                backfill(root, START, split),
                backfill(root, split + timedelta(days=1), last),
            ],
            cwd=root,
        )
        for result in results:
            result.check("concurrent backfill")
        verify(root, days, rows)
        report.add_run("two processes", wall, cpu_s=sum(x.cpu_s for x in results))
        report.add("two processes", "rows_per_s", days * rows / wall)
        console.print(f"  two processes {wall:.2f} s")

    alternate(repeat, {"one": one, "two": two})
    report.ratio(
        "throughput two/one",
        ("two processes", "rows_per_s"),
        ("one process", "rows_per_s"),
        target=0.9,
        op=">=",
    )
    report.note("no lost or duplicated row: asserted after every run (partition counts, ids)")
