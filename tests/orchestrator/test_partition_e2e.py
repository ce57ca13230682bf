"""Partitioned assets end to end through the CLI: one partition per WAP cycle, per-partition
staleness and checks, lookback windows, and partition bounds as SQL parameters."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

import duckdb
import pytest
from conftest import ProjectDir, snapshots
from partition_shop import (
    FILES,
    day_rows,
    live_files,
    publishes,
    set_knobs,
    spec,
    table_rows,
)

from lakehouse import duck
from lakehouse.branches import list_branches
from lakehouse.catalog import open_catalog
from lakehouse.provenance import snapshot_provenance
from orchestrator.config import load_config
from orchestrator.loader import load_project
from orchestrator.materialize import open_lakehouse
from orchestrator.published import read_published

D1, D2, D3 = "2024-01-01", "2024-01-02", "2024-01-03"


@pytest.fixture
def shop(project: ProjectDir) -> ProjectDir:
    return project.write(FILES)


def _published(shop: ProjectDir) -> dict[str, Any]:
    project = load_project(shop.root)
    keys = [str(k) for k in project.graph.order]
    return read_published(open_lakehouse(project), project.graph, keys)


def test_one_partition_is_one_publish_with_provenance_and_a_day_spec(shop: ProjectDir) -> None:
    result = shop.sluice("materialize", "bronze.raw_orders", "silver.orders", "--partition", D2)
    assert result.code == 0, result.out
    assert "published bronze.raw_orders@2024-01-02" in result.out

    assert spec(shop.root, "bronze.raw_orders") == [("order_ts", "day")]
    assert spec(shop.root, "silver.orders") == [("order_ts", "day")]
    assert [r["order_id"] for r in table_rows(shop.root, "silver.orders")] == [20, 21, 22]
    catalog = open_catalog(load_config(shop.root).catalog)
    heads = snapshots(shop.root)
    provenance = snapshot_provenance(catalog.load_table("silver.orders"), heads["silver.orders"])
    assert provenance is not None
    assert provenance.partition == D2
    assert provenance.inputs == {f"bronze.raw_orders@{D2}": heads["bronze.raw_orders"]}
    assert provenance.window == (
        "order_ts",
        "2024-01-02T00:00:00+00:00",
        "2024-01-03T00:00:00+00:00",
    )
    # The same partition again: fresh, nothing to do.
    again = shop.sluice("materialize", "bronze.raw_orders", "silver.orders", "--partition", D2)
    assert again.code == 0 and "nothing to do" in again.out, again.out
    assert snapshots(shop.root) == heads


def test_rerunning_a_partition_is_idempotent_and_other_partitions_are_untouched(
    shop: ProjectDir,
) -> None:
    tables = ("bronze.raw_orders", "silver.orders")
    assert shop.sluice("backfill", *tables, "--from", D1, "--to", D3, "--parallel", "2").code == 0
    rows_before = {t: table_rows(shop.root, t) for t in tables}
    files_before = {t: live_files(shop.root, t) for t in rows_before}

    result = shop.sluice("materialize", *tables, "--partition", D2, "--force")
    assert result.code == 0, result.out
    for table, rows in rows_before.items():
        assert table_rows(shop.root, table) == rows  # same rows, no duplicates

    for table, before in files_before.items():
        after = live_files(shop.root, table)
        changed = [p for p in before if after[p] != before[p]]
        # Only partition 2024-01-02's file was replaced; the others' files are the same files.
        assert len(changed) == 1 and len(after) == 3, (before, after)
    assert set(publishes(shop.root, "silver.orders")[:3]) == {D1, D2, D3}
    assert publishes(shop.root, "silver.orders")[3:] == [D2]


def test_republishing_one_bronze_partition_makes_only_that_partition_stale(
    shop: ProjectDir,
) -> None:
    assert shop.sluice("backfill", "*", "--from", D1, "--to", D3).code == 0
    versions = _published(shop)
    set_knobs(shop.root, bump=1000)  # bronze data really changes
    result = shop.sluice("materialize", "bronze.raw_orders", "--partition", D2, "--force")
    assert result.code == 0, result.out

    plan = shop.sluice("plan", "--from", D1, "--to", D3)
    stale = sorted(line.split()[1] for line in plan.out.splitlines() if " is stale because" in line)
    # Same-partitioned silver.orders: only @D2. silver.rolling (lookback 1) reads D2 from D2 and
    # D3. The unpartitioned gold.total reads every partition.
    assert stale == [
        "gold.total",
        f"silver.orders@{D2}",
        f"silver.rolling@{D2}",
        f"silver.rolling@{D3}",
    ], plan.out
    assert (
        f"silver.orders@{D2} is stale because bronze.raw_orders@{D2} was republished since it "
        "was built"
    ) in plan.out

    result = shop.sluice("materialize", "--from", D1, "--to", D3)
    assert result.code == 0, result.out
    after = _published(shop)
    for node in (f"silver.orders@{D1}", f"silver.orders@{D3}", f"silver.rolling@{D1}"):
        assert after[node] == versions[node], node  # untouched
    for node in (f"silver.orders@{D2}", f"silver.rolling@{D2}", f"silver.rolling@{D3}"):
        assert after[node].snapshot_id != versions[node].snapshot_id, node
    assert [r["amount"] for r in day_rows(shop.root, "silver.orders", D2)] == [
        2 * (1020.0 + i) for i in range(3)
    ]
    assert "nothing to do" in shop.sluice("plan", "--from", D1, "--to", D3).out


def test_checks_see_only_their_partition(project: ProjectDir) -> None:
    # Order ids restart every day: unique(order_id) holds per partition, not across them.
    project.write(
        {
            "assets/bronze/raw_orders.py": FILES["assets/bronze/raw_orders.py"],
            "assets/silver/daily.sql": """
                -- partitions: daily(start=2024-01-01, column=order_ts)
                -- checks: unique(order_id); row_count(min=3, max=3)
                SELECT order_id % 10 AS order_id, order_ts FROM bronze.raw_orders
            """,
        }
    )
    result = project.sluice("backfill", "*", "--from", D1, "--to", D3)
    assert result.code == 0, result.out
    assert len(table_rows(project.root, "silver.daily")) == 9
    assert sorted({r["order_id"] for r in table_rows(project.root, "silver.daily")}) == [0, 1, 2]


def test_rows_outside_the_partition_fail_the_partition_window_audit(shop: ProjectDir) -> None:
    assert shop.sluice("backfill", "bronze.raw_orders", "--from", D1, "--to", D2).code == 0
    before = snapshots(shop.root)
    rows = table_rows(shop.root, "bronze.raw_orders")
    set_knobs(shop.root, stray_days=[D2])

    result = shop.sluice("materialize", "+silver.orders", "--partition", D2, "--force")
    assert result.code == 1, result.out
    assert "audit failed bronze.raw_orders@2024-01-02" in result.out
    assert "partition_window(order_ts in 2024-01-02)" in result.out
    assert "blocked   silver.orders@2024-01-02" in result.out
    assert snapshots(shop.root)["bronze.raw_orders"] == before["bronze.raw_orders"]
    assert table_rows(shop.root, "bronze.raw_orders") == rows
    catalog = open_catalog(load_config(shop.root).catalog)
    assert [b.identifier for b in list_branches(catalog)] == ["bronze.raw_orders"]


def test_lookback_reads_the_partitions_it_maps_to(shop: ProjectDir) -> None:
    result = shop.sluice("backfill", "+silver.rolling", "--from", D1, "--to", D3, "--parallel", "2")
    assert result.code == 0, result.out
    saw = {r["day"]: r for r in table_rows(shop.root, "silver.rolling")}

    def ts(day: int, hour: int) -> datetime:
        return datetime.fromisoformat(f"2024-01-{day:02}T{hour:02}:00:00+00:00")

    # lookback=1: partition D reads D-1..D of silver.orders (3 rows a day), clipped at the start.
    assert {d: (r["first_ts"], r["last_ts"], r["n"]) for d, r in saw.items()} == {
        date(2024, 1, 1): (ts(1, 0), ts(1, 23), 3),
        date(2024, 1, 2): (ts(1, 0), ts(2, 23), 6),
        date(2024, 1, 3): (ts(2, 0), ts(3, 23), 6),
    }
    # ...and its provenance records exactly those input partitions.
    state = _published(shop)[f"silver.rolling@{D3}"]
    assert sorted(state.inputs) == [f"silver.orders@{D2}", f"silver.orders@{D3}"]


EVENTS = """
    from datetime import date

    import pyarrow as pa

    from orchestrator import asset


    @asset(layer="bronze")
    def events(ctx):
        days = [date(2024, 1, d) for d in (1, 2, 2, 3, 4)]
        return pa.table({"event_date": days, "event_id": [1, 2, 3, 4, 5]})
"""
DAILY_EVENTS = """
    -- partitions: daily(start=2024-01-01, column=event_date)
    SELECT event_date, event_id FROM bronze.events
    WHERE event_date >= $partition_start AND event_date < $partition_end
"""


class _Recording:
    """A DuckDB connection that records the queries (and parameters) it is asked to run."""

    def __init__(self, con: Any, calls: list[tuple[str, Any]]) -> None:
        self._con, self._calls = con, calls

    def sql(self, query: str, *args: Any, **kwargs: Any) -> Any:
        self._calls.append((query, kwargs.get("params")))
        return self._con.sql(query, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


def test_partition_bounds_reach_sql_as_bound_parameters(
    project: ProjectDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.write(
        {"assets/bronze/events.py": EVENTS, "assets/silver/daily_events.sql": DAILY_EVENTS}
    )
    calls: list[tuple[str, Any]] = []
    real = duck.connect
    monkeypatch.setattr(duck, "connect", lambda *a, **k: _Recording(real(*a, **k), calls))

    result = project.sluice("materialize", "--partition", D2)
    assert result.code == 0, result.out
    asset = load_project(project.root).graph.assets[
        next(k for k in load_project(project.root).graph.assets if k.name == "daily_events")
    ]
    [(query, params)] = [(q, p) for q, p in calls if "$partition_start" in q]
    assert query == asset.sql  # the text as written: no value spliced in
    assert "2024" not in query
    assert params == {
        "partition_start": datetime(2024, 1, 2),
        "partition_end": datetime(2024, 1, 3),
    }
    assert table_rows(project.root, "silver.daily_events") == [
        {"event_date": date(2024, 1, 2), "event_id": 2},
        {"event_date": date(2024, 1, 2), "event_id": 3},
    ]


STAMPS = """
    from datetime import datetime, timezone

    import pyarrow as pa

    from orchestrator import asset


    @asset(layer="bronze")
    def stamps(ctx):
        hours = [(2, 1), (2, 23), (3, 1)]  # (day, hour) of January 2024, UTC
        ts = [datetime(2024, 1, d, h, tzinfo=timezone.utc) for d, h in hours]
        return pa.table({"ts": pa.array(ts, pa.timestamp("us", tz="UTC"))})
"""
DAILY_STAMPS = """
    -- partitions: daily(start=2024-01-01, column=ts)
    SELECT ts FROM bronze.stamps WHERE ts >= $partition_start AND ts < $partition_end
"""


@pytest.fixture
def new_york_host(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A host in New York: a DuckDB database opened there defaults to the host's TimeZone."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("new_york_host")
def test_partition_bounds_do_not_depend_on_the_hosts_timezone(
    project: ProjectDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(duck, "_database", None)  # Sluice opens its database on this host
    [(default,)] = duckdb.connect().execute("SELECT current_setting('TimeZone')").fetchall()
    assert default == "America/New_York"
    project.write(
        {"assets/bronze/stamps.py": STAMPS, "assets/silver/daily_stamps.sql": DAILY_STAMPS}
    )
    result = project.sluice("materialize", "--partition", D2)
    assert result.code == 0, result.out
    assert [r["ts"].hour for r in table_rows(project.root, "silver.daily_stamps")] == [1, 23]
