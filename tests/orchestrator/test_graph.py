"""Tests for `orchestrator.graph`: validation, run order and graph queries (pure, no I/O)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lakehouse.audits import Check
from orchestrator.assets import Asset, AssetKey
from orchestrator.errors import CycleError, DuplicateAssetError, UnknownAssetError
from orchestrator.graph import AssetGraph, build_graph


def make(
    key: str,
    *deps: str,
    inputs: Sequence[tuple[str, str]] = (),
    checks: Sequence[Check] = (),
    file: str | None = None,
    line: int | None = None,
) -> Asset:
    """An asset `layer.name` with the given upstream references."""
    return Asset(
        key=AssetKey.parse(key),
        kind="sql",
        code_version="x",
        deps=deps,
        inputs=tuple(inputs),
        checks=tuple(checks),
        file=file if file is not None else f"assets/{key.replace('.', '/')}.py",
        line=line if line is not None else 1,
    )


def k(key: str) -> AssetKey:
    return AssetKey.parse(key)


def ks(*keys: str) -> set[AssetKey]:
    return {k(key) for key in keys}


def assert_respects_edges(graph: AssetGraph) -> None:
    position = {key: pos for pos, key in enumerate(graph.order)}
    assert set(position) == set(graph.assets)
    assert len(position) == len(graph.order)
    for key in graph.order:
        for parent in graph.upstream(key):
            assert position[parent] < position[key], f"{parent} must run before {key}"


@pytest.fixture
def lakehouse() -> AssetGraph:
    """raw_orders, raw_customers -> orders, customers -> fct_orders -> revenue; dim_customer."""
    return build_graph(
        [
            make("gold.revenue", "fct_orders"),
            make("gold.fct_orders", "silver.orders", "customers"),
            make("gold.dim_customer", "customers"),
            make("silver.orders", "raw_orders"),
            make("silver.customers", "bronze.raw_customers"),
            make("bronze.raw_orders"),
            make("bronze.raw_customers"),
        ]
    )


# --- order ------------------------------------------------------------------------------------


def test_order_respects_every_edge(lakehouse: AssetGraph) -> None:
    assert_respects_edges(lakehouse)


def test_order_is_by_generation_then_key(lakehouse: AssetGraph) -> None:
    assert [str(key) for key in lakehouse.order] == [
        "bronze.raw_customers",
        "bronze.raw_orders",
        "silver.customers",
        "silver.orders",
        "gold.dim_customer",
        "gold.fct_orders",
        "gold.revenue",
    ]


def test_order_does_not_depend_on_input_order() -> None:
    assets = [make("s.c", "a", "b"), make("s.b", "a"), make("s.a"), make("s.d")]
    orders = {build_graph(perm).order for perm in (assets, assets[::-1], assets[1:] + assets[:1])}
    assert len(orders) == 1


def test_assets_iterate_in_run_order(lakehouse: AssetGraph) -> None:
    assert tuple(lakehouse.assets) == lakehouse.order
    assert lakehouse.assets[k("silver.orders")].key == k("silver.orders")
    assert len(lakehouse) == 7
    assert k("gold.revenue") in lakehouse


def test_diamond() -> None:
    graph = build_graph(
        [make("g.d", "b", "c"), make("s.c", "a"), make("s.b", "a"), make("b.a")],
    )
    assert graph.order == (k("b.a"), k("s.b"), k("s.c"), k("g.d"))
    assert graph.upstream(k("g.d")) == (k("s.b"), k("s.c"))
    assert graph.downstream(k("b.a")) == (k("s.b"), k("s.c"))
    assert graph.ancestors(k("g.d")) == ks("s.b", "s.c", "b.a")
    assert graph.descendants(k("b.a")) == ks("s.b", "s.c", "g.d")


def test_empty_graph() -> None:
    graph = build_graph([])
    assert graph.order == ()
    assert dict(graph.assets) == {}


def test_ten_thousand_assets_build() -> None:
    layers, width = 10, 1_000
    assets = [
        make(
            f"l{layer}.a{layer}_{i}",
            *(
                ()
                if layer == 0
                else (f"l{layer - 1}.a{layer - 1}_{i}", f"a{layer - 1}_{(i * 7 + 3) % width}")
            ),
        )
        for layer in range(layers)
        for i in range(width)
    ]
    graph = build_graph(assets)
    assert len(graph.order) == layers * width
    assert graph.order[0] == k("l0.a0_0")
    assert graph.order[-1].layer == "l9"
    assert len(graph.ancestors(k("l9.a9_0"))) > 9


# --- references -------------------------------------------------------------------------------


def test_short_names_and_full_keys_resolve_to_the_same_upstream() -> None:
    graph = build_graph([make("s.x", "a", "b.a"), make("b.a")])
    assert graph.upstream(k("s.x")) == (k("b.a"),)


def test_inputs_map_parameters_to_resolved_keys() -> None:
    graph = build_graph(
        [
            make("s.joined", "bronze.extra", inputs=[("orders", "orders"), ("c", "b.customers")]),
            make("b.orders"),
            make("b.customers"),
            make("bronze.extra"),
        ]
    )
    assert graph.inputs(k("s.joined")) == {"orders": k("b.orders"), "c": k("b.customers")}
    assert graph.upstream(k("s.joined")) == (k("b.orders"), k("b.customers"), k("bronze.extra"))
    assert graph.inputs(k("b.orders")) == {}


def test_check_targets_are_upstreams() -> None:
    check = Check(kind="relationships", name="fk", references=("gold.dim_customer",))
    graph = build_graph([make("gold.fct", checks=[check]), make("gold.dim_customer")])
    assert graph.upstream(k("gold.fct")) == (k("gold.dim_customer"),)
    assert graph.order == (k("gold.dim_customer"), k("gold.fct"))


def test_ambiguous_short_name_lists_candidates() -> None:
    assets = [make("bronze.orders"), make("silver.orders"), make("gold.x", "orders", line=12)]
    with pytest.raises(UnknownAssetError) as info:
        build_graph(assets)
    message = str(info.value)
    assert "ambiguous" in message
    assert "'bronze.orders'" in message and "'silver.orders'" in message
    assert "full key" in message
    assert info.value.asset == "gold.x"
    assert info.value.file == "assets/gold/x.py" and info.value.line == 12


def test_unknown_upstream_suggests_and_locates() -> None:
    assets = [make("silver.orders"), make("gold.revenue", "ordrs", file="defs.py", line=42)]
    with pytest.raises(UnknownAssetError) as info:
        build_graph(assets)
    error = info.value
    assert "did you mean 'silver.orders'?" in error.message
    assert "'gold.revenue'" in error.message and "'ordrs'" in error.message
    assert (error.asset, error.file, error.line) == ("gold.revenue", "defs.py", 42)
    assert str(error).startswith("defs.py:42 (asset gold.revenue): ")


def test_unknown_full_key_suggests_by_short_name() -> None:
    assets = [make("silver.orders"), make("gold.revenue", "bronze.orders")]
    with pytest.raises(UnknownAssetError, match="did you mean 'silver.orders'"):
        build_graph(assets)


def test_unknown_upstream_without_close_match() -> None:
    with pytest.raises(UnknownAssetError, match="unknown asset 'zzz'; no asset has a similar"):
        build_graph([make("silver.orders"), make("gold.x", "zzz")])


def test_malformed_reference_is_unknown() -> None:
    with pytest.raises(UnknownAssetError, match="unknown asset 'a.b.c'"):
        build_graph([make("s.a"), make("s.x", "a.b.c")])


def test_resolve(lakehouse: AssetGraph) -> None:
    assert lakehouse.resolve("orders") == k("silver.orders")
    assert lakehouse.resolve("gold.revenue") == k("gold.revenue")
    assert lakehouse.resolve(k("gold.revenue")) == k("gold.revenue")
    with pytest.raises(UnknownAssetError, match="did you mean 'gold.revenue'"):
        lakehouse.resolve("revenu")
    with pytest.raises(UnknownAssetError, match="did you mean 'silver.orders'"):
        lakehouse.resolve("gold.orders")
    with pytest.raises(UnknownAssetError):
        lakehouse.resolve(k("gold.nope"))


# --- duplicates and cycles --------------------------------------------------------------------


def test_duplicate_names_both_locations() -> None:
    assets = [make("s.a", file="one.py", line=3), make("s.b"), make("s.a", file="two.py", line=9)]
    with pytest.raises(DuplicateAssetError) as info:
        build_graph(assets)
    assert "'s.a'" in info.value.message
    assert "one.py:3" in info.value.message and "two.py:9" in info.value.message
    assert info.value.asset == "s.a"


def test_duplicates_are_reported_before_unknown_references() -> None:
    with pytest.raises(DuplicateAssetError):
        build_graph([make("s.a", "missing"), make("s.a", "missing")])


def test_unknown_references_are_reported_before_cycles() -> None:
    with pytest.raises(UnknownAssetError):
        build_graph([make("s.a", "b"), make("s.b", "a"), make("s.c", "missing")])


def test_three_cycle_prints_the_path() -> None:
    assets = [
        make("silver.a", "silver.c", file="a.py", line=5),
        make("silver.b", "silver.a"),
        make("silver.c", "silver.b"),
        make("silver.ok"),
    ]
    for perm in (assets, assets[::-1]):
        with pytest.raises(CycleError) as info:
            build_graph(perm)
        # arrows point downstream: a feeds b, b feeds c, c feeds a
        assert (
            info.value.message == "dependency cycle: silver.a -> silver.b -> silver.c -> silver.a"
        )
        assert (info.value.asset, info.value.file, info.value.line) == ("silver.a", "a.py", 5)


def test_two_cycle() -> None:
    with pytest.raises(CycleError, match=r"dependency cycle: s\.a -> s\.b -> s\.a$"):
        build_graph([make("s.a", "b"), make("s.b", "a")])


def test_self_cycle() -> None:
    with pytest.raises(CycleError) as info:
        build_graph([make("s.a", "a")])
    assert info.value.message == "dependency cycle: s.a -> s.a"
    assert info.value.asset == "s.a"


# --- queries ----------------------------------------------------------------------------------


def test_upstream_and_downstream(lakehouse: AssetGraph) -> None:
    assert lakehouse.upstream(k("gold.fct_orders")) == (k("silver.orders"), k("silver.customers"))
    assert lakehouse.upstream(k("bronze.raw_orders")) == ()
    assert lakehouse.downstream(k("silver.customers")) == (
        k("gold.dim_customer"),
        k("gold.fct_orders"),
    )
    assert lakehouse.downstream(k("gold.revenue")) == ()


def test_ancestors_and_descendants(lakehouse: AssetGraph) -> None:
    assert lakehouse.ancestors(k("gold.revenue")) == ks(
        "gold.fct_orders",
        "silver.orders",
        "silver.customers",
        "bronze.raw_orders",
        "bronze.raw_customers",
    )
    assert lakehouse.descendants([k("bronze.raw_customers")]) == ks(
        "silver.customers", "gold.dim_customer", "gold.fct_orders", "gold.revenue"
    )
    assert lakehouse.ancestors([k("gold.revenue"), k("gold.dim_customer")]) >= ks(
        "silver.customers"
    )
    assert lakehouse.ancestors(set()) == set()
    assert lakehouse.descendants(k("gold.revenue")) == set()


def test_transitive_sets_exclude_the_given_keys(lakehouse: AssetGraph) -> None:
    assert k("gold.revenue") not in lakehouse.ancestors(k("gold.revenue"))
    assert k("bronze.raw_orders") not in lakehouse.descendants(k("bronze.raw_orders"))


def test_sorted_keys(lakehouse: AssetGraph) -> None:
    keys = [k("gold.revenue"), k("bronze.raw_orders"), k("silver.orders"), k("gold.revenue")]
    assert lakehouse.sorted_keys(keys) == [
        k("bronze.raw_orders"),
        k("silver.orders"),
        k("gold.revenue"),
    ]
    assert lakehouse.sorted_keys([]) == []


def test_queries_reject_unknown_keys(lakehouse: AssetGraph) -> None:
    with pytest.raises(UnknownAssetError, match="did you mean 'gold.revenue'"):
        lakehouse.upstream(k("gold.revenu"))
    with pytest.raises(UnknownAssetError):
        lakehouse.descendants([k("x.y")])
    with pytest.raises(UnknownAssetError):
        lakehouse.sorted_keys([k("x.y")])


# --- properties -------------------------------------------------------------------------------


@st.composite
def random_dags(draw: st.DrawFn) -> tuple[list[Asset], list[tuple[int, int]]]:
    """Assets `lN.nI` where every edge goes from a lower to a higher index, and those edges."""
    size = draw(st.integers(min_value=0, max_value=25))
    layers = draw(
        st.lists(st.sampled_from(["bronze", "silver", "gold"]), min_size=size, max_size=size)
    )
    keys = [AssetKey(layers[i], f"n{i}") for i in range(size)]
    edges: list[tuple[int, int]] = []
    assets: list[Asset] = []
    for child in range(size):
        parents = draw(st.sets(st.integers(0, child - 1), max_size=child)) if child else set()
        refs = [str(keys[p]) if draw(st.booleans()) else keys[p].name for p in sorted(parents)]
        edges.extend((parent, child) for parent in parents)
        assets.append(Asset(key=keys[child], kind="sql", code_version="x", deps=tuple(refs)))
    return assets, edges


@settings(max_examples=200, deadline=None)
@given(random_dags(), st.data())
def test_order_is_topological_and_permutation_invariant(
    dag: tuple[list[Asset], list[tuple[int, int]]], data: st.DataObject
) -> None:
    assets, edges = dag
    graph = build_graph(assets)
    position = {key: pos for pos, key in enumerate(graph.order)}
    for parent, child in edges:
        assert position[assets[parent].key] < position[assets[child].key]
    assert_respects_edges(graph)
    shuffled = data.draw(st.permutations(assets))
    assert build_graph(shuffled).order == graph.order


@settings(max_examples=100, deadline=None)
@given(random_dags(), st.data())
def test_any_back_edge_is_a_cycle(
    dag: tuple[list[Asset], list[tuple[int, int]]], data: st.DataObject
) -> None:
    assets, edges = dag
    if not edges:
        return
    parent, child = data.draw(st.sampled_from(edges))
    back = assets[parent]
    assets[parent] = Asset(
        key=back.key, kind="sql", code_version="x", deps=(*back.deps, str(assets[child].key))
    )
    with pytest.raises(CycleError, match="dependency cycle: "):
        build_graph(assets)
