"""`--ranged` writes audit per partition: one write and one publish for the whole range, but each
check means what it means for one partition, and a failure names its partition."""

from __future__ import annotations

import pytest
from conftest import ProjectDir
from partition_shop import publishes, set_knobs, table_rows

from lakehouse import snapshot_audits
from lakehouse.catalog import open_catalog
from lakehouse.provenance import published_history
from orchestrator.backfill import BackfillRequest, run_backfill
from orchestrator.config import load_config
from orchestrator.loader import load_project
from orchestrator.runner import StepOutcome

D1, D2, D3 = "2024-01-01", "2024-01-02", "2024-01-03"

# Every day holds order ids 1, 2, 3: unique within a day, not across days; three rows a day.
DAILY = """
    import json
    import pathlib
    from datetime import timedelta

    import pyarrow as pa

    from orchestrator import DailyPartitions, asset, checks

    ROOT = pathlib.Path(__file__).resolve().parents[2]


    @asset(
        layer="bronze",
        partitions=DailyPartitions(start="2024-01-01", column="order_ts"),
        checks=[checks.unique("order_id"), checks.row_count(min=3, max=3)],
    )
    def orders(ctx):
        knobs = ROOT / "knobs.json"
        dup_days = json.loads(knobs.read_text()).get("dup_days", []) if knobs.exists() else []
        ids, stamps = [], []
        day = ctx.partition.start
        while day < ctx.partition.end:
            key = day.strftime("%Y-%m-%d")
            ids += [1, 1, 2] if key in dup_days else [1, 2, 3]
            stamps += [day + timedelta(hours=h) for h in (1, 8, 20)]
            day += timedelta(days=1)
        return pa.table(
            {
                "order_id": pa.array(ids, pa.int64()),
                "order_ts": pa.array(stamps, pa.timestamp("us", tz="UTC")),
            }
        )
    """


@pytest.fixture
def daily(project: ProjectDir) -> ProjectDir:
    return project.write({"assets/bronze/orders.py": DAILY})


def _step(project: ProjectDir, first: str, last: str) -> StepOutcome:
    outcome = run_backfill(
        load_project(project.root), BackfillRequest(("bronze.orders",), first, last, ranged=True)
    )
    assert outcome.summary is not None
    [result] = outcome.summary.results.values()
    assert isinstance(result, StepOutcome), result
    return result


def test_checks_that_hold_per_partition_pass_a_ranged_write(daily: ProjectDir) -> None:
    # Over the whole range, order ids repeat and there are 9 rows: both checks would fail.
    step = _step(daily, D1, D3)
    assert step.status == "published", step.error
    assert sorted(c.name for c in step.checks if c.kind != "partition_window") == sorted(
        f"{check} [{day}]"
        for check in ("unique(order_id)", "row_count(min=3, max=3)")
        for day in (D1, D2, D3)
    )
    assert all(c.passed for c in step.checks)
    assert publishes(daily.root, "bronze.orders") == [f"{D1}..{D3}"]  # one write, one publish
    assert len(table_rows(daily.root, "bronze.orders")) == 9


def test_a_partition_breaking_a_check_fails_the_whole_range_and_is_named(
    daily: ProjectDir,
) -> None:
    set_knobs(daily.root, dup_days=[D2])
    step = _step(daily, D1, D3)
    assert step.status == "audit_failed"
    failed = [c for c in step.checks if c.blocking]
    assert [c.name for c in failed] == [f"unique(order_id) [{D2}]"]
    assert failed[0].failing_rows == 1 and failed[0].samples == [{"order_id": 1, "n": 2}]
    assert step.error is not None and f"unique(order_id) [{D2}]" in step.error
    # The other partitions passed the same check; row_count holds on every day.
    assert {c.name for c in step.checks if c.passed} >= {
        f"unique(order_id) [{D1}]",
        f"unique(order_id) [{D3}]",
        f"row_count(min=3, max=3) [{D2}]",
    }
    # main is untouched: nothing of the range was published.
    table = open_catalog(load_config(daily.root).catalog).load_table("bronze.orders")
    assert published_history(table) == []
    assert table_rows(daily.root, "bronze.orders") == []

    cli = daily.sluice("backfill", "bronze.orders", "--from", D1, "--to", D3, "--ranged")
    assert cli.code == 1
    assert f"audit failed: unique(order_id) [{D2}]" in cli.out, cli.out


def test_a_failing_partition_in_a_later_audit_batch_is_named_with_its_samples(
    daily: ProjectDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Checks are counted for a few partitions at a time: the failure is in the third batch.
    monkeypatch.setattr(snapshot_audits, "AUDIT_BATCH", 2)
    days = [f"2024-01-0{d}" for d in range(1, 8)]
    set_knobs(daily.root, dup_days=[days[5]])
    step = _step(daily, days[0], days[-1])
    assert step.status == "audit_failed"
    [failed] = [c for c in step.checks if c.blocking]
    assert failed.name == f"unique(order_id) [{days[5]}]"
    assert (failed.failing_rows, failed.samples) == (1, [{"order_id": 1, "n": 2}])
    audited = [c for c in step.checks if c.kind != "partition_window"]
    assert [c.name for c in audited] == [
        f"{check} [{day}]"
        for day in days
        for check in ("unique(order_id)", "row_count(min=3, max=3)")
    ]
    assert all(c.samples == [] for c in audited if c.passed)
    assert table_rows(daily.root, "bronze.orders") == []  # main untouched


# Partitions in New York time over a timestamptz column: each partition's checks see exactly
# its New York day, and `$partition_start` / `$partition_end` select the same rows whatever the
# host's timezone (the step's DuckDB session runs in the partitions' timezone).
STAMPS = """
    from datetime import datetime, timezone

    import pyarrow as pa

    from orchestrator import asset


    @asset(layer="bronze")
    def stamps(ctx):
        # New York days 01-01..01-03 (UTC-5): 05:00 UTC starts the day, 04:59 UTC next day ends it.
        utc = [(1, 5), (2, 3), (2, 6), (3, 4), (3, 12), (4, 2), (4, 6)]
        ts = [datetime(2024, 1, d, h, tzinfo=timezone.utc) for d, h in utc]
        return pa.table({"ts": pa.array(ts, pa.timestamp("us", tz="UTC"))})
    """
NY_DAILY = """
    -- partitions: daily(start=2024-01-01, column=ts, timezone=America/New_York)
    -- checks: row_count(min=2, max=2)
    SELECT ts FROM bronze.stamps WHERE ts >= $partition_start AND ts < $partition_end
    """


def test_ranged_audits_and_partition_bounds_in_the_partitions_timezone(
    project: ProjectDir,
) -> None:
    project.write({"assets/bronze/stamps.py": STAMPS, "assets/silver/ny_daily.sql": NY_DAILY})
    assert project.sluice("materialize", "bronze.stamps").code == 0
    result = project.sluice("backfill", "silver.ny_daily", "--from", D1, "--to", D3, "--ranged")
    assert result.code == 0, result.out
    hours = sorted((r["ts"].day, r["ts"].hour) for r in table_rows(project.root, "silver.ny_daily"))
    assert hours == [(1, 5), (2, 3), (2, 6), (3, 4), (3, 12), (4, 2)]  # not (4, 6): 01-04
