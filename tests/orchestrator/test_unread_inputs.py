"""Upstream parameters a Python asset never reads get no relation made for them; every other
parameter, and anything that reaches an unread one anyway, gets the real relation."""

from __future__ import annotations

import functools
import sys
from typing import Any

import duckdb

from lakehouse import duck
from orchestrator import asset
from orchestrator.assets import AssetKey
from orchestrator.context import AssetContext
from orchestrator.runner import _compute, _Inputs
from orchestrator.unread_inputs import DeferredInput, unread_parameters


def declares_only(ctx: Any, orders: Any) -> Any:
    return ctx.sql("SELECT * FROM orders")


def reads_directly(ctx: Any, orders: Any) -> Any:
    return orders.filter("id > 1")


def captures(ctx: Any, orders: Any) -> Any:
    return lambda: orders


def iterates(ctx: Any, orders: Any) -> Any:
    return [row for row in orders.fetchall()]


def asks_for_locals(ctx: Any, orders: Any) -> Any:
    return locals()


def nested_frame_reader(ctx: Any, orders: Any) -> Any:
    def caller_locals() -> Any:
        return sys._getframe(1).f_locals

    return caller_locals()


def keyword_only(ctx: Any, orders: Any, *, customers: Any) -> Any:
    return customers


def rebinds(ctx: Any, orders: Any) -> Any:
    orders = ctx.sql("SELECT 1")
    return orders


def test_a_parameter_is_unread_only_when_no_code_of_the_function_can_see_it() -> None:
    assert unread_parameters(declares_only) == {"orders"}
    assert unread_parameters(keyword_only) == {"ctx", "orders"}
    for reader in (reads_directly, captures, iterates, rebinds):
        assert "orders" not in unread_parameters(reader), reader.__name__
    for introspecting in (asks_for_locals, nested_frame_reader):
        assert unread_parameters(introspecting) == frozenset(), introspecting.__name__


def test_wrappers_and_other_callables_read_every_parameter() -> None:
    @functools.wraps(declares_only)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return declares_only(*args, **kwargs)

    class Callable:
        def __call__(self, ctx: Any, orders: Any) -> Any:
            return None

    assert unread_parameters(wrapper) == frozenset()
    assert unread_parameters(Callable()) == frozenset()
    assert unread_parameters(functools.partial(declares_only, None)) == frozenset()


def test_a_deferred_input_is_made_at_its_first_use_only_and_once() -> None:
    made: list[duckdb.DuckDBPyRelation] = []
    con = duck.connect()

    def make() -> duckdb.DuckDBPyRelation:
        made.append(con.sql("SELECT range AS id FROM range(3)"))
        return made[-1]

    deferred = DeferredInput(make)
    assert made == []
    assert deferred.filter("id > 0").fetchall() == [(1,), (2,)]
    assert deferred.columns == ["id"]
    assert "id" in repr(deferred)
    assert len(made) == 1
    con.close()


class _RecordingConnection:
    """A step's connection that records the queries made into relations."""

    def __init__(self) -> None:
        self.con = duck.connect()
        self.queries: list[str] = []

    def sql(self, query: str, **kwargs: Any) -> Any:
        self.queries.append(query)
        return self.con.sql(query, **kwargs)


UPSTREAM = "SELECT range AS id FROM range(4)"


def _computed(fn: Any) -> tuple[Any, list[str]]:
    defined = asset(layer="gold")(fn)
    recording = _RecordingConnection()
    con: Any = recording
    inputs = _Inputs({"silver.orders": UPSTREAM}, [(("silver", "orders"), UPSTREAM)], [])
    ctx = AssetContext(asset=AssetKey.parse("gold.x"), run_id="r", con=recording.con)
    graph_inputs = {"orders": AssetKey.parse("silver.orders")}
    result = _compute(defined, graph_inputs, ctx, con, inputs)
    return result, recording.queries


def test_a_step_makes_no_relation_for_an_upstream_its_function_never_reads() -> None:
    def gold(ctx: Any, orders: Any) -> Any:
        return ctx.con.sql("SELECT 42 AS answer")

    result, queries = _computed(gold)
    assert result.fetchall() == [(42,)]
    assert UPSTREAM not in queries


def test_a_function_that_reads_its_upstream_gets_the_relation() -> None:
    def gold(ctx: Any, orders: Any) -> Any:
        return orders.filter("id >= 2")

    result, queries = _computed(gold)
    assert sorted(result.fetchall()) == [(2,), (3,)]
    assert queries == [UPSTREAM]


def _caller_input() -> Any:
    return sys._getframe(1).f_locals["orders"]


def test_an_unread_upstream_reached_through_the_callers_frame_is_the_relation() -> None:
    def gold(ctx: Any, orders: Any) -> Any:
        return _caller_input().filter("id < 2")

    result, queries = _computed(gold)
    assert sorted(result.fetchall()) == [(0,), (1,)]
    assert queries == [UPSTREAM]
