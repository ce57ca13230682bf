"""Tests for `orchestrator.planner`: plans from a graph and fake published states (no I/O)."""

from __future__ import annotations

import pytest

from orchestrator.assets import Asset, AssetKey
from orchestrator.graph import AssetGraph, build_graph
from orchestrator.planner import Plan, build_plan, plan_inputs
from orchestrator.staleness import PublishedState

SNAPSHOTS = {
    "bronze.raw_orders": 10,
    "bronze.raw_customers": 11,
    "silver.orders": 20,
    "silver.customers": 21,
    "gold.revenue": 30,
}


def make(key: str, *deps: str, code: str = "v1") -> Asset:
    return Asset(key=AssetKey.parse(key), kind="sql", code_version=code, deps=deps)


def k(key: str) -> AssetKey:
    return AssetKey.parse(key)


def graph_with(**code: str) -> AssetGraph:
    """raw_orders -> orders -> revenue <- customers <- raw_customers; `code` overrides versions."""
    definitions = {
        "gold.revenue": ("silver.orders", "customers"),
        "silver.orders": ("raw_orders",),
        "silver.customers": ("bronze.raw_customers",),
        "bronze.raw_orders": (),
        "bronze.raw_customers": (),
    }
    return build_graph(
        make(key, *deps, code=code.get(key.split(".")[1], "v1"))
        for key, deps in definitions.items()
    )


def all_fresh(graph: AssetGraph) -> dict[str, PublishedState]:
    return {
        str(key): PublishedState(
            snapshot_id=SNAPSHOTS[str(key)],
            code_version="v1",
            inputs={str(u): SNAPSHOTS[str(u)] for u in graph.upstream(key)},
        )
        for key in graph.order
    }


def step_keys(plan: Plan) -> list[str]:
    return [s.asset for s in plan.steps]


def test_nothing_published_plans_everything_in_run_order() -> None:
    graph = graph_with()
    plan = build_plan(graph, list(reversed(graph.order)), {})
    keys = step_keys(plan)
    assert sorted(keys) == sorted(SNAPSHOTS)
    for step in plan.steps:
        for upstream in step.upstream:
            assert keys.index(upstream) < keys.index(step.asset), f"{upstream} before {step.asset}"
        assert step.reasons[0].kind == "never_published"
        assert step.pinned == {}  # every upstream is built by this run
        assert step.blocked is None
    assert plan.fresh == ()
    assert plan.runnable == plan.steps


def test_fresh_assets_are_listed_not_planned() -> None:
    graph = graph_with()
    plan = build_plan(graph, list(graph.order), all_fresh(graph))
    assert plan.steps == ()
    assert plan.fresh == tuple(str(key) for key in graph.order)


def test_code_change_plans_the_asset_and_its_downstream() -> None:
    graph = graph_with(orders="v2")
    plan = build_plan(graph, list(graph.order), all_fresh(graph))
    assert step_keys(plan) == ["silver.orders", "gold.revenue"]
    assert plan.fresh == ("bronze.raw_customers", "bronze.raw_orders", "silver.customers")
    orders, revenue = plan.steps
    assert [r.kind for r in orders.reasons] == ["code_changed"]
    assert orders.pinned == {"bronze.raw_orders": 10}
    assert revenue.upstream == ("silver.orders", "silver.customers")
    # silver.orders is rebuilt by this run, so only the fresh upstream is pinned now
    assert revenue.pinned == {"silver.customers": 21}
    assert revenue.explanation == (
        "gold.revenue is stale because silver.orders changed, because its code changed"
    )


def test_upstream_outside_the_plan_is_pinned_to_its_published_snapshot() -> None:
    graph = graph_with()
    published = all_fresh(graph)
    published["silver.orders"] = PublishedState(22, "v1", {"bronze.raw_orders": 10})
    plan = build_plan(graph, [k("gold.revenue")], published)
    (step,) = plan.steps
    assert step.asset == "gold.revenue"
    assert [(r.kind, r.upstream) for r in step.reasons] == [("upstream_changed", "silver.orders")]
    assert step.pinned == {"silver.orders": 22, "silver.customers": 21}
    assert step.blocked is None


def test_stale_upstream_outside_the_plan_is_pinned_not_rebuilt() -> None:
    graph = graph_with(orders="v2")
    plan = build_plan(graph, [k("gold.revenue")], all_fresh(graph))
    assert plan.steps == ()
    assert plan.fresh == ("gold.revenue",)
    forced = build_plan(graph, [k("gold.revenue")], all_fresh(graph), force=True)
    (step,) = forced.steps
    assert step.pinned == {"silver.orders": 20, "silver.customers": 21}


def test_upstream_never_published_and_not_selected_blocks_the_step() -> None:
    graph = graph_with()
    published = all_fresh(graph)
    del published["silver.customers"]
    plan = build_plan(graph, [k("gold.revenue")], published)
    (step,) = plan.steps
    assert step.blocked is not None
    assert "silver.customers" in step.blocked
    assert "never published" in step.blocked
    assert "+gold.revenue" in step.blocked
    assert step.pinned == {"silver.orders": 20}
    assert plan.runnable == ()


def test_upstream_never_published_but_selected_is_built_first() -> None:
    graph = graph_with()
    published = all_fresh(graph)
    del published["silver.customers"]
    plan = build_plan(graph, [k("silver.customers"), k("gold.revenue")], published)
    assert step_keys(plan) == ["silver.customers", "gold.revenue"]
    assert all(step.blocked is None for step in plan.steps)
    assert plan.steps[1].pinned == {"silver.orders": 20}


def test_force_plans_everything_selected() -> None:
    graph = graph_with()
    selected = [k("silver.orders"), k("bronze.raw_orders"), k("gold.revenue")]
    plan = build_plan(graph, selected, all_fresh(graph), force=True)
    assert step_keys(plan) == ["bronze.raw_orders", "silver.orders", "gold.revenue"]
    assert plan.fresh == ()
    for step in plan.steps:
        assert step.reasons[0].kind == "forced"
        assert step.explanation == f"{step.asset} is stale because --force was given"
    assert plan.steps[2].pinned == {"silver.customers": 21}


def test_duplicate_selection_plans_once() -> None:
    graph = graph_with()
    plan = build_plan(graph, [k("silver.orders"), k("silver.orders")], {}, force=True)
    assert step_keys(plan) == ["silver.orders"]


def test_plan_inputs_are_the_selection_and_direct_upstreams() -> None:
    graph = graph_with()
    assert plan_inputs(graph, [k("gold.revenue")]) == {
        k("gold.revenue"),
        k("silver.orders"),
        k("silver.customers"),
    }
    assert plan_inputs(graph, []) == set()


def test_plan_is_a_value() -> None:
    graph = graph_with(orders="v2")
    first = build_plan(graph, list(graph.order), all_fresh(graph))
    second = build_plan(graph, list(graph.order), all_fresh(graph))
    assert first == second
    with pytest.raises(AttributeError):
        first.steps = ()  # type: ignore[misc]
