"""A small daily-partitioned project for the partition and backfill tests, and readers of it.

bronze.raw_orders (Python, daily) -> silver.orders (SQL, daily) -> gold.total (whole table),
and silver.rolling (Python, daily, lookback=1) <- silver.orders. `knobs.json` at the project
root steers bronze per day: `bad_days` (a null order_id: fails not_null), `stray_days` (a row
dated the next day: fails partition_window), `slow_days` (touch `reached-<day>`, then sleep),
`gate_days` (touch `reached-<day>`, then wait for a file `go`), `bump` (different amounts: a
real change of the data). Bronze appends each call's partition key to `calls.log`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lakehouse.catalog import open_catalog
from lakehouse.provenance import published_history
from orchestrator.config import load_config

RAW = """
    import json
    import pathlib
    import time
    from datetime import timedelta

    import pyarrow as pa

    from orchestrator import DailyPartitions, asset, checks

    ROOT = pathlib.Path(__file__).resolve().parents[2]


    def knobs():
        path = ROOT / "knobs.json"
        return json.loads(path.read_text()) if path.exists() else {}


    @asset(
        layer="bronze",
        partitions=DailyPartitions(start="2024-01-01", column="order_ts"),
        checks=[checks.not_null("order_id")],
    )
    def raw_orders(ctx):
        k = knobs()
        with (ROOT / "calls.log").open("a") as log:
            log.write(ctx.partition.key + "\\n")
        ids, stamps, amounts = [], [], []
        day = ctx.partition.start
        while day < ctx.partition.end:  # one day, or every day of a --ranged write
            key = day.strftime("%Y-%m-%d")
            if key in k.get("slow_days", []):
                (ROOT / f"reached-{key}").write_text(ctx.run_id)
                time.sleep(120)
            if key in k.get("gate_days", []):
                (ROOT / f"reached-{key}").write_text(ctx.run_id)
                deadline = time.monotonic() + 120
                while not (ROOT / "go").exists() and time.monotonic() < deadline:
                    time.sleep(0.01)
            for i, hour in enumerate((0, 5, 23)):
                ids.append(None if key in k.get("bad_days", []) and i == 1 else day.day * 10 + i)
                stray = key in k.get("stray_days", []) and i == 2
                stamps.append(day + timedelta(hours=hour + (2 if stray else 0)))
                amounts.append(day.day * 10.0 + i + k.get("bump", 0))
            day += timedelta(days=1)
        return pa.table(
            {
                "order_id": pa.array(ids, pa.int64()),
                "order_ts": pa.array(stamps, pa.timestamp("us", tz="UTC")),
                "amount": pa.array(amounts, pa.float64()),
            }
        )
"""

ORDERS = """
    -- partitions: daily(start=2024-01-01, column=order_ts)
    -- checks: unique(order_id); not_null(amount)
    SELECT order_id, order_ts, amount * 2 AS amount FROM bronze.raw_orders
"""

ROLLING = """
    from orchestrator import DailyPartitions, asset, checks


    @asset(
        layer="silver",
        partitions=DailyPartitions(start="2024-01-01", column="day", lookback=1),
        checks=[checks.row_count(min=1, max=1)],
    )
    def rolling(ctx, orders):
        # What this partition saw of its upstream: the window it was given.
        return ctx.sql(
            "SELECT CAST($day AS DATE) AS day, min(order_ts) AS first_ts, "
            "max(order_ts) AS last_ts, count(*) AS n FROM orders",
            params={"day": ctx.partition.key},
        )
"""

TOTAL = """
    -- checks: row_count(min=1, max=1)
    SELECT count(*) AS n, sum(amount) AS amount FROM silver.orders
"""

FILES = {
    "assets/bronze/raw_orders.py": RAW,
    "assets/silver/orders.sql": ORDERS,
    "assets/silver/rolling.py": ROLLING,
    "assets/gold/total.sql": TOTAL,
}
PARTITIONED = ("bronze.raw_orders", "silver.orders", "silver.rolling")


def set_knobs(root: Path, **knobs: Any) -> None:
    (root / "knobs.json").write_text(json.dumps(knobs))


def _catalog(root: Path) -> Any:
    return open_catalog(load_config(root).catalog)


def table_rows(root: Path, identifier: str, *, exclude: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Rows of `main`, sorted, without the `exclude` columns."""
    data = _catalog(root).load_table(identifier).scan().to_arrow()
    data = data.drop_columns([c for c in exclude if c in data.column_names])
    return sorted(data.to_pylist(), key=lambda r: [str(v) for v in r.values()])


def day_rows(root: Path, identifier: str, day: str, column: str = "order_ts") -> list[Any]:
    return [r for r in table_rows(root, identifier) if str(r[column]).startswith(day)]


def publishes(root: Path, identifier: str) -> list[str | None]:
    """The partition (label) of every write Sluice published into `main`'s history."""
    table = _catalog(root).load_table(identifier)
    return [provenance.partition for _, provenance in reversed(published_history(table))]


def live_files(root: Path, identifier: str) -> dict[str, set[str]]:
    """Live data file paths of `main`, by partition value."""
    table = _catalog(root).load_table(identifier)
    found: dict[str, set[str]] = {}
    for task in table.scan().plan_files():
        found.setdefault(str(task.file.partition), set()).add(task.file.file_path)
    return found


def spec(root: Path, identifier: str) -> list[tuple[str, str]]:
    table = _catalog(root).load_table(identifier)
    return [
        (table.schema().find_column_name(f.source_id) or "", str(f.transform))
        for f in table.spec().fields
    ]
