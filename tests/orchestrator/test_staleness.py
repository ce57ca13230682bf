"""Tests for `orchestrator.staleness`: pure, with fake published states and no I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.staleness import PublishedState, Reason, explain, stale_reasons

# bronze.raw_orders -> silver.orders -> gold.revenue <- silver.customers
ORDER = ["bronze.raw_orders", "silver.customers", "silver.orders", "gold.revenue"]
UPSTREAMS = {
    "bronze.raw_orders": [],
    "silver.customers": [],
    "silver.orders": ["bronze.raw_orders"],
    "gold.revenue": ["silver.orders", "silver.customers"],
}
CODE = {key: f"code-{key}" for key in ORDER}
SNAPSHOTS = {
    "bronze.raw_orders": 10,
    "silver.customers": 20,
    "silver.orders": 30,
    "gold.revenue": 40,
}


def fresh_state() -> dict[str, PublishedState]:
    """Everything published from the current code, each built from its upstreams' snapshots."""
    return {
        key: PublishedState(
            snapshot_id=SNAPSHOTS[key],
            code_version=CODE[key],
            inputs={u: SNAPSHOTS[u] for u in UPSTREAMS[key]},
        )
        for key in ORDER
    }


def kinds(reasons: Sequence[Reason]) -> list[str]:
    return [r.kind for r in reasons]


def run(
    published: Mapping[str, PublishedState],
    order: Sequence[str] = ORDER,
    code: Mapping[str, str] = CODE,
    force: Sequence[str] = (),
) -> dict[str, tuple[Reason, ...]]:
    return stale_reasons(order, UPSTREAMS, code, published, force=force)


def test_fresh_when_nothing_changed() -> None:
    assert run(fresh_state()) == {}


def test_never_published_everything() -> None:
    stale = run({})
    assert list(stale) == ORDER
    assert kinds(stale["bronze.raw_orders"]) == ["never_published"]
    assert kinds(stale["silver.orders"]) == ["never_published", "upstream_stale"]
    assert stale["silver.orders"][1].upstream == "bronze.raw_orders"


def test_a_snapshot_without_provenance_counts_as_never_published() -> None:
    published = fresh_state()
    published["bronze.raw_orders"] = PublishedState(snapshot_id=10, code_version=None)
    stale = run(published)
    assert kinds(stale["bronze.raw_orders"]) == ["never_published"]
    assert not PublishedState(snapshot_id=None, code_version="x").published


def test_code_changed() -> None:
    code = {**CODE, "silver.orders": "new"}
    stale = run(fresh_state(), code=code)
    assert list(stale) == ["silver.orders", "gold.revenue"]
    (reason,) = stale["silver.orders"]
    assert reason.kind == "code_changed"
    assert reason.detail == "code-silver.orders -> new"


def test_upstream_republished() -> None:
    published = fresh_state()
    published["silver.orders"] = PublishedState(
        31, CODE["silver.orders"], {"bronze.raw_orders": 10}
    )
    stale = run(published, order=["gold.revenue"])
    assert stale == {"gold.revenue": (Reason("upstream_changed", "silver.orders", "30 -> 31"),)}


def test_upstream_dropped_counts_as_changed() -> None:
    published = fresh_state()
    del published["silver.customers"]
    stale = run(published, order=["gold.revenue"])
    assert stale == {
        "gold.revenue": (Reason("upstream_changed", "silver.customers", "20 -> None"),)
    }


def test_upstream_stale_in_the_same_plan_propagates() -> None:
    code = {**CODE, "bronze.raw_orders": "new"}
    stale = run(fresh_state(), code=code)
    assert list(stale) == ["bronze.raw_orders", "silver.orders", "gold.revenue"]
    assert stale["silver.orders"] == (Reason("upstream_stale", "bronze.raw_orders"),)
    assert stale["gold.revenue"] == (Reason("upstream_stale", "silver.orders"),)


def test_upstream_stale_outside_the_plan_does_not_propagate() -> None:
    """Staleness is about what `main` holds: an unselected upstream is not rebuilt."""
    code = {**CODE, "silver.orders": "new"}
    assert run(fresh_state(), order=["gold.revenue"], code=code) == {}


def test_added_upstream() -> None:
    published = fresh_state()
    published["gold.revenue"] = PublishedState(40, CODE["gold.revenue"], {"silver.orders": 30})
    stale = run(published)
    assert stale == {"gold.revenue": (Reason("upstreams_changed", detail="+silver.customers"),)}


def test_removed_upstream() -> None:
    published = fresh_state()
    published["silver.orders"] = PublishedState(
        30, CODE["silver.orders"], {"bronze.raw_orders": 10, "bronze.raw_returns": 5}
    )
    stale = run(published)
    assert stale["silver.orders"] == (Reason("upstreams_changed", detail="-bronze.raw_returns"),)
    assert stale["gold.revenue"] == (Reason("upstream_stale", "silver.orders"),)


def test_force() -> None:
    stale = run(fresh_state(), force=["silver.customers"])
    assert list(stale) == ["silver.customers", "gold.revenue"]
    assert kinds(stale["silver.customers"]) == ["forced"]
    assert stale["gold.revenue"] == (Reason("upstream_stale", "silver.customers"),)


def test_every_reason_is_listed() -> None:
    published = fresh_state()
    published["gold.revenue"] = PublishedState(40, "old", {"silver.orders": 29})
    code = {**CODE, "silver.orders": "new"}
    stale = run(published, code=code, force=["gold.revenue"])
    assert kinds(stale["gold.revenue"]) == [
        "forced",
        "code_changed",
        "upstreams_changed",
        "upstream_stale",
    ]


# --- explain ----------------------------------------------------------------------------------


def test_explain_follows_the_chain_to_the_root_cause() -> None:
    code = {**CODE, "silver.orders": "new"}
    stale = run(fresh_state(), code=code)
    assert explain("gold.revenue", stale) == (
        "gold.revenue is stale because silver.orders changed, because its code changed"
    )
    assert explain("silver.orders", stale) == "silver.orders is stale because its code changed"


def test_explain_over_two_hops() -> None:
    stale = run({})
    assert explain("gold.revenue", stale) == (
        "gold.revenue is stale because it was never published"
    )
    published = fresh_state()
    del published["bronze.raw_orders"]
    stale = run(published)
    assert explain("gold.revenue", stale) == (
        "gold.revenue is stale because silver.orders changed, because bronze.raw_orders "
        "changed, because it was never published"
    )


def test_explain_prefers_an_own_reason() -> None:
    published = fresh_state()
    published["gold.revenue"] = PublishedState(40, CODE["gold.revenue"], {"silver.orders": 30})
    code = {**CODE, "silver.orders": "new"}
    stale = run(published, code=code)
    assert explain("gold.revenue", stale) == (
        "gold.revenue is stale because its upstream assets changed (+silver.customers)"
    )


def test_explain_prefers_an_own_reason_listed_after_a_stale_upstream() -> None:
    published = fresh_state()
    published["silver.customers"] = PublishedState(22, CODE["silver.customers"], {})
    code = {**CODE, "silver.orders": "new"}
    stale = run(published, order=["silver.orders", "gold.revenue"], code=code)
    assert [(r.kind, r.upstream) for r in stale["gold.revenue"]] == [
        ("upstream_stale", "silver.orders"),
        ("upstream_changed", "silver.customers"),
    ]
    assert explain("gold.revenue", stale) == (
        "gold.revenue is stale because silver.customers was republished since it was built"
    )


def test_explain_names_a_republished_upstream() -> None:
    published = fresh_state()
    published["silver.orders"] = PublishedState(
        31, CODE["silver.orders"], {"bronze.raw_orders": 10}
    )
    stale = run(published, order=["gold.revenue"])
    assert explain("gold.revenue", stale).startswith(
        "gold.revenue is stale because silver.orders was republished since it was built"
    )


def test_reason_texts_keep_their_details() -> None:
    assert Reason("code_changed", detail="a -> b").text() == "its code changed (a -> b)"
    assert Reason("forced").text() == "--force was given"
    assert Reason("never_published").text() == "it was never published"


# --- property: stale iff a defined condition holds --------------------------------------------

NAMES = [f"l.a{i}" for i in range(7)]


@st.composite
def scenarios(
    draw: st.DrawFn,
) -> tuple[list[str], dict[str, list[str]], dict[str, str], dict[str, PublishedState], set[str]]:
    """A random DAG (edges go from lower to higher index), states, a selection and force."""
    n = draw(st.integers(1, len(NAMES)))
    names = NAMES[:n]
    upstreams = {
        name: draw(st.lists(st.sampled_from(names[:i]), unique=True)) if i else []
        for i, name in enumerate(names)
    }
    code = {name: draw(st.sampled_from(["v1", "v2"])) for name in names}
    snapshot = st.integers(1, 3)
    published: dict[str, PublishedState] = {}
    for name in names:
        if not draw(st.booleans()) and draw(st.booleans()):
            continue  # absent: never published
        recorded = draw(
            st.one_of(
                st.just(upstreams[name]),
                st.lists(st.sampled_from(names), unique=True, max_size=3),
            )
        )
        published[name] = PublishedState(
            snapshot_id=draw(st.one_of(snapshot, st.none())) if draw(st.booleans()) else 1,
            code_version=draw(st.sampled_from(["v1", "v2", None])),
            inputs={u: draw(snapshot) for u in recorded},
        )
    selected = [name for name in names if draw(st.booleans())] or names
    force = set(draw(st.lists(st.sampled_from(selected), unique=True, max_size=2)))
    return selected, upstreams, code, published, force


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_stale_iff_a_condition_holds(
    scenario: tuple[
        list[str], dict[str, list[str]], dict[str, str], dict[str, PublishedState], set[str]
    ],
) -> None:
    order, upstreams, code, published, force = scenario
    stale = stale_reasons(order, upstreams, code, published, force=force)

    # The conditions, each on its own, without looking at other assets' staleness.
    def own_conditions(key: str) -> set[str]:
        state = published.get(key)
        found = {"forced"} if key in force else set()
        if state is None or state.snapshot_id is None or state.code_version is None:
            return found | {"never_published"}
        if state.code_version != code[key]:
            found.add("code_changed")
        if set(upstreams[key]) != set(state.inputs):
            found.add("upstreams_changed")
        for upstream, built in state.inputs.items():
            if upstream in upstreams[key]:
                now = published[upstream].snapshot_id if upstream in published else None
                if now != built:
                    found.add("upstream_changed")
        return found

    # Stale = reachable, through selected assets only, from an asset with an own condition.
    selected = set(order)
    rebuilt = {key for key in order if own_conditions(key)}
    frontier = list(rebuilt)
    while frontier:
        node = frontier.pop()
        for key in selected:
            if node in upstreams[key] and key not in rebuilt:
                rebuilt.add(key)
                frontier.append(key)

    assert set(stale) == rebuilt
    assert list(stale) == [key for key in order if key in rebuilt]  # run order kept
    for key, reasons in stale.items():
        assert reasons
        own = {r.kind for r in reasons} - {"upstream_stale", "upstream_changed"}
        assert own == own_conditions(key) - {"upstream_changed"}
        assert {r.upstream for r in reasons if r.kind == "upstream_stale"} == {
            u for u in upstreams[key] if u in rebuilt and u in selected
        }
        state = published.get(key)
        assert {r.upstream for r in reasons if r.kind == "upstream_changed"} == {
            u
            for u in upstreams[key]
            if state is not None
            and state.published
            and u in state.inputs
            and u not in stale
            and (published[u].snapshot_id if u in published else None) != state.inputs[u]
        }
        text = explain(key, stale)
        assert text.startswith(f"{key} is stale because ")
    for key in order:
        for upstream in upstreams[key]:
            if upstream in stale:
                assert key in stale, f"{key} is downstream of stale {upstream}"
