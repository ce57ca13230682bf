"""`sluice backfill` and `sluice backfills` in process: dry runs, idempotence, failures listed
with exit code 1, resume, and `--ranged` writes."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from conftest import ProjectDir, snapshots
from partition_shop import FILES, PARTITIONED, publishes, set_knobs, table_rows

from lakehouse import wap as wap_module
from orchestrator.assets import AssetKey
from orchestrator.backfill import BackfillRequest, run_backfill
from orchestrator.executor import ThreadExecutor, execute
from orchestrator.loader import load_project
from orchestrator.materialize import make_plan, open_lakehouse
from orchestrator.planner import PartitionSelection, PlannedStep
from orchestrator.published import read_published
from orchestrator.runner import StepOutcome, StepSpec, branch_name, remember, run_step

D1, D2, D3 = "2024-01-01", "2024-01-02", "2024-01-03"
ORDERS_CHAIN = ("bronze.raw_orders", "silver.orders", "gold.total")


@pytest.fixture
def shop(project: ProjectDir) -> ProjectDir:
    return project.write(FILES)


def _backfill_id(out: str) -> str:
    found = re.search(r"backfill (bf-[0-9a-f-]+):", out)
    assert found, out
    return found.group(1)


def test_dry_run_lists_pairs_in_dependency_order_and_publishes_nothing(shop: ProjectDir) -> None:
    result = shop.sluice("backfill", "*", "--from", D1, "--to", D3, "--dry-run")
    assert result.code == 0, result.out
    nodes = [line.split()[0] for line in result.out.splitlines() if "is stale because" in line]
    assert sorted(nodes) == sorted(
        [f"{a}@{d}" for a in PARTITIONED for d in (D1, D2, D3)] + ["gold.total"]
    )
    graph = load_project(shop.root).graph
    position = {n: i for i, n in enumerate(nodes)}
    for node in nodes:
        asset, _, day = node.partition("@")
        for upstream in graph.upstream(AssetKey.parse(asset)):
            for other in nodes:
                if other.partition("@")[0] == str(upstream) and (not day or other.endswith(day)):
                    assert position[other] < position[node], f"{other} listed after {node}"
    assert "10 step(s) would run; 0 fresh" in result.out
    assert snapshots(shop.root) == {}  # not even a table was created
    assert shop.sluice("backfills").out.strip() == ""  # nothing was recorded either

    # Usage mistakes are exit code 2.
    assert shop.sluice("backfill", "*", "--from", D1).code == 2
    assert shop.sluice("backfill", "*", "--from", D3, "--to", D1).code == 2
    assert shop.sluice("backfill", "*", "--from", "01/02/2024", "--to", D3).code == 2


def test_a_second_identical_backfill_publishes_nothing(shop: ProjectDir) -> None:
    first = shop.sluice("backfill", *ORDERS_CHAIN, "--from", D1, "--to", D3)
    assert first.code == 0, first.out
    assert ": 7 published, 0 failed, 0 already fresh" in first.out
    heads = snapshots(shop.root)
    rows = {t: table_rows(shop.root, t) for t in heads}

    second = shop.sluice("backfill", *ORDERS_CHAIN, "--from", D1, "--to", D3)
    assert second.code == 0, second.out
    assert ": 0 published, 0 failed, 7 already fresh" in second.out
    assert snapshots(shop.root) == heads
    assert {t: table_rows(shop.root, t) for t in heads} == rows

    listed = shop.sluice("backfills").out.splitlines()
    assert len(listed) == 2
    pattern = r"succeeded\s+bronze.raw_orders silver.orders gold.total 2024-01-01..2024-01-03\s+"
    assert all(re.search(pattern + "7 published$", line) for line in listed), listed


def test_a_failing_partition_is_listed_the_others_publish_and_resume_does_the_rest(
    shop: ProjectDir,
) -> None:
    set_knobs(shop.root, bad_days=[D2])
    result = shop.sluice("backfill", "*", "--from", D1, "--to", D3)
    assert result.code == 1, result.out
    backfill_id = _backfill_id(result.out)
    failed = dict(re.findall(r"^\s+failed (\S+): (.*)$", result.out, flags=re.MULTILINE))
    assert failed == {f"bronze.raw_orders@{D2}": "audit failed: not_null(order_id) (1 rows)"}
    blocked = dict(re.findall(r"^\s+blocked (\S+): (.*)$", result.out, flags=re.MULTILINE))
    assert blocked[f"silver.orders@{D2}"] == f"upstream bronze.raw_orders@{D2} did not publish"
    summary = ": 5 published, 1 failed, 0 already fresh, 4 blocked by failed upstreams"
    assert summary in result.out, result.out
    assert set(blocked) == {
        f"silver.orders@{D2}",
        f"silver.rolling@{D2}",  # reads orders@D2 (lookback)
        f"silver.rolling@{D3}",
        "gold.total",
    }
    assert f"resume with: sluice backfill --resume {backfill_id}" in result.out

    published = read_published(
        open_lakehouse(load_project(shop.root)),
        load_project(shop.root).graph,
        list(PARTITIONED),
    )
    for node in (f"bronze.raw_orders@{D1}", f"bronze.raw_orders@{D3}", f"silver.orders@{D3}"):
        assert published[node].published, node
    assert f"bronze.raw_orders@{D2}" not in published
    ids = sorted(r["order_id"] for r in table_rows(shop.root, "silver.orders"))
    assert ids == [10, 11, 12, 30, 31, 32]
    [line] = shop.sluice("backfills").out.splitlines()
    assert line.startswith(f"{backfill_id}  failed")
    assert "1 audit_failed, 4 failed, 5 published" in line

    # Fixed: resume does exactly the five that did not publish; the others are not rewritten.
    set_knobs(shop.root)
    resumed = shop.sluice("backfill", "--resume", backfill_id)
    assert resumed.code == 0, resumed.out
    assert f"backfill {backfill_id}: 5 published, 0 failed, 5 already fresh" in resumed.out
    after = read_published(
        open_lakehouse(load_project(shop.root)),
        load_project(shop.root).graph,
        list(PARTITIONED),
    )
    for node, state in published.items():
        if "@" in node and node.partition("@")[0] in PARTITIONED:
            assert after[node] == state, node
    [line] = shop.sluice("backfills").out.splitlines()
    assert line.startswith(f"{backfill_id}  succeeded") and "10 published" in line, line


def test_ranged_backfill_writes_one_snapshot_per_asset_with_the_same_rows(
    make_project: Callable[[str], ProjectDir],
) -> None:
    per_partition, ranged = make_project("per_partition"), make_project("ranged")
    for project in (per_partition, ranged):
        project.write(FILES)
    assert per_partition.sluice("backfill", *ORDERS_CHAIN, "--from", D1, "--to", D3).code == 0
    result = ranged.sluice("backfill", *ORDERS_CHAIN, "--from", D1, "--to", D3, "--ranged")
    assert result.code == 0, result.out
    assert ": 3 published, 0 failed, 0 already fresh" in result.out

    for table in ORDERS_CHAIN:
        assert table_rows(ranged.root, table) == table_rows(per_partition.root, table), table
    assert publishes(ranged.root, "bronze.raw_orders") == [f"{D1}..{D3}"]
    assert publishes(ranged.root, "silver.orders") == [f"{D1}..{D3}"]
    assert publishes(ranged.root, "gold.total") == [None]
    assert publishes(per_partition.root, "silver.orders") == [D1, D2, D3]
    # A range write records every partition's inputs: each partition is fresh afterwards.
    for args in (("--ranged",), ()):
        again = ranged.sluice("backfill", *ORDERS_CHAIN, "--from", D1, "--to", D3, *args)
        assert ": 0 published, 0 failed, 7 already fresh" in again.out, again.out


def test_ranged_backfill_calls_assets_on_at_most_max_partitions_per_call(
    make_project: Callable[[str], ProjectDir],
) -> None:
    per_partition, ranged = make_project("per_partition"), make_project("ranged")
    per_partition.write(FILES)
    ranged.write({**FILES, "sluice.toml": "[backfill]\nmax_partitions_per_call = 2\n"})
    assert per_partition.sluice("backfill", *ORDERS_CHAIN, "--from", D1, "--to", D3).code == 0
    result = ranged.sluice("backfill", *ORDERS_CHAIN, "--from", D1, "--to", D3, "--ranged")
    assert result.code == 0, result.out

    assert (ranged.root / "calls.log").read_text().split() == [f"{D1}..{D2}", D3]
    # Still one write per asset, and each call read only its own partitions' upstream rows
    # (silver's SQL has no filter of its own: a call seeing the whole range would duplicate).
    assert publishes(ranged.root, "bronze.raw_orders") == [f"{D1}..{D3}"]
    assert publishes(ranged.root, "silver.orders") == [f"{D1}..{D3}"]
    for table in ORDERS_CHAIN:
        assert table_rows(ranged.root, table) == table_rows(per_partition.root, table), table


SHIFTING = """
    import pyarrow as pa

    from orchestrator import DailyPartitions, asset


    @asset(layer="bronze", partitions=DailyPartitions(start="2024-01-01", column="ts"))
    def shifting(ctx):
        # A column typed by its values: all nulls (type null) on the first day only.
        first = ctx.partition.key.startswith("2024-01-01")
        return pa.table(
            {
                "ts": pa.array([ctx.partition.start], pa.timestamp("us", tz="UTC")),
                "note": pa.array([None] if first else ["x"]),
            }
        )
"""


def test_ranged_calls_returning_different_columns_fail_naming_the_asset(
    project: ProjectDir,
) -> None:
    project.write(
        {
            "assets/bronze/shifting.py": SHIFTING,
            "sluice.toml": "[backfill]\nmax_partitions_per_call = 1\n",
        }
    )
    result = project.sluice("backfill", "bronze.shifting", "--from", D1, "--to", D2, "--ranged")
    assert result.code == 1, result.out
    assert f"failed bronze.shifting@{D1}..{D2}" in result.out, result.out
    assert (
        f"returned columns (ts timestamp[us, tz=UTC], note string) for {D2}, not those of "
        f"the first call (ts timestamp[us, tz=UTC], note null)"
    ) in result.out, result.out
    assert table_rows(project.root, "bronze.shifting") == []  # main untouched: still empty


def test_ranged_backfill_with_a_failing_partition_publishes_nothing_of_the_range(
    shop: ProjectDir,
) -> None:
    set_knobs(shop.root, bad_days=[D2])
    result = shop.sluice("backfill", *ORDERS_CHAIN, "--from", D1, "--to", D3, "--ranged")
    assert result.code == 1, result.out
    assert f"failed bronze.raw_orders@{D1}..{D3}: audit failed: not_null(order_id)" in result.out
    assert f"blocked silver.orders@{D1}..{D3}: upstream" in result.out
    assert table_rows(shop.root, "bronze.raw_orders") == []  # main untouched: still empty


def test_ranged_backfill_never_spans_a_fresh_partition(shop: ProjectDir) -> None:
    assert shop.sluice("backfill", *ORDERS_CHAIN[:2], "--from", D2, "--to", D2).code == 0
    result = shop.sluice("backfill", *ORDERS_CHAIN[:2], "--from", D1, "--to", D3, "--ranged")
    assert result.code == 0, result.out
    # D2 stays as it was; D1 and D3 are two separate writes.
    assert set(publishes(shop.root, "silver.orders")[1:]) == {D1, D3}
    assert publishes(shop.root, "silver.orders")[0] == D2
    again = shop.sluice("plan", *ORDERS_CHAIN[:2], "--from", D1, "--to", D3)
    assert "nothing to do" in again.out, again.out


def _plan_and_spec(shop: ProjectDir) -> tuple:  # type: ignore[type-arg]
    project = load_project(shop.root)
    lh = open_lakehouse(project)
    remember(project, lh)
    plan = make_plan(
        project, lh, list(ORDERS_CHAIN), partitions=PartitionSelection(first=D1, last=D2)
    )

    def make_spec(step: PlannedStep, inputs: dict[str, int]) -> StepSpec:
        branch = branch_name("run-1", AssetKey.parse(step.asset), step.partition)
        return StepSpec(
            str(shop.root), "run-1", step.asset, inputs, branch, step.partition, step.partitions
        )

    return plan, make_spec


def test_a_whole_table_reader_sees_every_partition_published_in_parallel(
    shop: ProjectDir,
) -> None:
    # silver.orders@D1 publishes first, @D2 publishes on top of it, but @D1's worker returns
    # last: gold.total must still read main after both, not the snapshot of D1's publish.
    plan, make_spec = _plan_and_spec(shop)
    first_published, second_returned = threading.Event(), threading.Event()

    def step(spec: StepSpec) -> StepOutcome:
        if spec.asset == "silver.orders" and spec.partition == D1:
            outcome = run_step(spec)
            first_published.set()
            second_returned.wait(30)
            time.sleep(0.5)  # the executor takes note of D2's outcome first
            return outcome
        if spec.asset == "silver.orders" and spec.partition == D2:
            first_published.wait(30)
            outcome = run_step(spec)
            second_returned.set()
            return outcome
        return run_step(spec)

    results = execute(plan, ThreadExecutor(2, step=step), make_spec)
    assert all(getattr(r, "status", None) == "published" for r in results.values()), results
    assert table_rows(shop.root, "gold.total") == [{"n": 6, "amount": 2 * (33.0 + 63.0)}]


def test_two_backfills_of_the_same_partition_never_both_publish(
    shop: ProjectDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both plan the never-published partition, both write it; neither audits before the other
    # wrote. One publishes, the other fails clearly (a conflict), and main holds one copy.
    barrier = threading.Barrier(2, timeout=30)
    real = wap_module.audit_snapshot

    def audit_after_both_wrote(*args: Any, **kwargs: Any) -> Any:
        barrier.wait()
        return real(*args, **kwargs)

    monkeypatch.setattr(wap_module, "audit_snapshot", audit_after_both_wrote)
    project = load_project(shop.root)
    open_lakehouse(project)  # the catalog exists before the race (opening it is not our subject)
    request = BackfillRequest(("bronze.raw_orders",), D1, D1)
    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(lambda _: run_backfill(project, request), range(2)))

    assert sorted(o.ok for o in outcomes) == [False, True]
    [loser] = [o for o in outcomes if not o.ok]
    [(node, error)] = loser.failed
    assert node == f"bronze.raw_orders@{D1}"
    assert f"{D1} of bronze.raw_orders conflicts" in error and "wrote the same rows" in error
    assert sorted(r["order_id"] for r in table_rows(shop.root, "bronze.raw_orders")) == [10, 11, 12]
