"""Tests for `orchestrator.selection.select` (pure, hand-built graphs)."""

from __future__ import annotations

import pytest

from orchestrator.assets import Asset, AssetKey
from orchestrator.errors import SelectionError
from orchestrator.graph import AssetGraph, build_graph
from orchestrator.selection import select


def make(key: str, *deps: str, tags: tuple[str, ...] = ()) -> Asset:
    return Asset(
        key=AssetKey.parse(key), kind="sql", code_version="x", deps=deps, tags=frozenset(tags)
    )


def names(keys: list[AssetKey]) -> list[str]:
    return [str(key) for key in keys]


@pytest.fixture
def graph() -> AssetGraph:
    """raw_orders -> orders -> fct_orders -> revenue; raw_customers -> customers -> both gold."""
    return build_graph(
        [
            make("gold.revenue", "fct_orders", tags=("finance", "daily")),
            make("gold.fct_orders", "orders", "customers", tags=("finance",)),
            make("gold.dim_customer", "customers"),
            make("silver.orders", "raw_orders", tags=("daily",)),
            make("silver.customers", "raw_customers"),
            make("bronze.raw_orders"),
            make("bronze.raw_customers"),
        ]
    )


ALL = [
    "bronze.raw_customers",
    "bronze.raw_orders",
    "silver.customers",
    "silver.orders",
    "gold.dim_customer",
    "gold.fct_orders",
    "gold.revenue",
]


def test_empty_selects_everything_in_run_order(graph: AssetGraph) -> None:
    assert names(select(graph, [])) == ALL
    assert names(select(graph, [""])) == ALL
    assert names(select(graph, " , ")) == ALL


def test_star(graph: AssetGraph) -> None:
    assert names(select(graph, ["*"])) == ALL


def test_short_name_and_full_key(graph: AssetGraph) -> None:
    assert names(select(graph, ["orders"])) == ["silver.orders"]
    assert names(select(graph, ["silver.orders"])) == ["silver.orders"]


def test_with_upstream(graph: AssetGraph) -> None:
    assert names(select(graph, ["+fct_orders"])) == [
        "bronze.raw_customers",
        "bronze.raw_orders",
        "silver.customers",
        "silver.orders",
        "gold.fct_orders",
    ]


def test_with_downstream(graph: AssetGraph) -> None:
    assert names(select(graph, ["customers+"])) == [
        "silver.customers",
        "gold.dim_customer",
        "gold.fct_orders",
        "gold.revenue",
    ]


def test_with_both(graph: AssetGraph) -> None:
    assert names(select(graph, ["+silver.orders+"])) == [
        "bronze.raw_orders",
        "silver.orders",
        "gold.fct_orders",
        "gold.revenue",
    ]


def test_layer(graph: AssetGraph) -> None:
    assert names(select(graph, ["layer:silver"])) == ["silver.customers", "silver.orders"]


def test_tag(graph: AssetGraph) -> None:
    assert names(select(graph, ["tag:finance"])) == ["gold.fct_orders", "gold.revenue"]


def test_graph_operators_apply_to_layer_and_tag(graph: AssetGraph) -> None:
    assert names(select(graph, ["layer:bronze+"])) == ALL
    assert names(select(graph, ["+tag:daily"])) == [
        "bronze.raw_customers",
        "bronze.raw_orders",
        "silver.customers",
        "silver.orders",
        "gold.fct_orders",
        "gold.revenue",
    ]


def test_union_of_expressions_in_run_order(graph: AssetGraph) -> None:
    assert names(select(graph, ["revenue", "raw_orders", "layer:silver"])) == [
        "bronze.raw_orders",
        "silver.customers",
        "silver.orders",
        "gold.revenue",
    ]


def test_overlapping_expressions_are_deduplicated(graph: AssetGraph) -> None:
    assert names(select(graph, ["orders", "silver.orders", "+orders"])) == [
        "bronze.raw_orders",
        "silver.orders",
    ]


@pytest.mark.parametrize(
    "expressions",
    [
        ["revenue,raw_orders"],
        ["revenue raw_orders"],
        ["revenue, raw_orders"],
        [" revenue ,\traw_orders "],
        "revenue,raw_orders",
        ["revenue", "raw_orders"],
        ("revenue", "bronze.raw_orders"),
    ],
)
def test_separators(graph: AssetGraph, expressions: list[str] | str) -> None:
    assert names(select(graph, expressions)) == ["bronze.raw_orders", "gold.revenue"]


def test_unknown_name_suggests(graph: AssetGraph) -> None:
    with pytest.raises(SelectionError, match="did you mean 'gold.revenue'") as info:
        select(graph, ["orders", "+revenu"])
    assert "'+revenu'" in info.value.message


def test_unknown_full_key_suggests(graph: AssetGraph) -> None:
    with pytest.raises(SelectionError, match="did you mean 'silver.orders'"):
        select(graph, ["gold.orders"])


def test_ambiguous_name_is_a_selection_error() -> None:
    graph = build_graph([make("bronze.orders"), make("silver.orders")])
    with pytest.raises(SelectionError, match="ambiguous.*'bronze.orders' and 'silver.orders'"):
        select(graph, ["orders"])


def test_unknown_layer_lists_layers(graph: AssetGraph) -> None:
    with pytest.raises(SelectionError) as info:
        select(graph, ["layer:gld"])
    message = info.value.message
    assert "did you mean 'layer:gold'?" in message
    assert "layers: bronze, gold, silver" in message


def test_unknown_tag_lists_tags(graph: AssetGraph) -> None:
    with pytest.raises(SelectionError) as info:
        select(graph, ["tag:hourly"])
    assert "tag 'hourly'" in info.value.message
    assert "tags: daily, finance" in info.value.message


def test_tag_without_any_tags() -> None:
    graph = build_graph([make("s.a")])
    with pytest.raises(SelectionError, match="no tags exist"):
        select(graph, ["tag:x"])


@pytest.mark.parametrize("expression", ["++orders", "orders++", "+", "+orders+x", "+ +"])
def test_unparsable(graph: AssetGraph, expression: str) -> None:
    with pytest.raises(SelectionError, match="cannot parse selection"):
        select(graph, [expression])


def test_unknown_method(graph: AssetGraph) -> None:
    with pytest.raises(SelectionError, match="unknown selector 'owner:'.*'layer:LAYER'"):
        select(graph, ["owner:ana"])


def test_star_on_empty_graph_selects_nothing() -> None:
    assert select(build_graph([]), ["*"]) == []
    assert select(build_graph([]), []) == []
