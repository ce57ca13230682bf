"""Tests for `orchestrator.assets`: `@asset`, `AssetKey`, `Retry` and code versions.

Asset modules are written into `tmp_path` and imported from there, so `inspect` sees real
source files exactly as it does for a project's `assets/` folder.
"""

from __future__ import annotations

import importlib.util
import itertools
import textwrap
from fractions import Fraction
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator import checks
from orchestrator.assets import Asset, AssetKey, Retry, asset, python_code_version
from orchestrator.errors import DefinitionError, InvalidNameError

_counter = itertools.count()


def load_module(directory: Path, source: str) -> tuple[ModuleType, Path]:
    """Write `source` to a fresh file under `directory` and import it (never cached)."""
    name = f"sluice_test_assets_{next(_counter)}"
    path = directory / f"{name}.py"
    path.write_text(textwrap.dedent(source).lstrip("\n"))
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, path


def version_of(directory: Path, source: str, attr: str = "orders") -> str:
    module, _ = load_module(directory, source)
    found = getattr(module, attr)
    assert isinstance(found, Asset)
    return found.code_version


# --- @asset -----------------------------------------------------------------------------------


def test_asset_without_parentheses() -> None:
    @asset
    def orders(ctx: Any, raw_orders: Any) -> Any:
        """Orders, deduplicated."""
        return raw_orders

    assert isinstance(orders, Asset)
    assert orders.key == AssetKey("default", "orders")
    assert orders.kind == "python"
    assert orders.inputs == (("raw_orders", "raw_orders"),)
    assert orders.description == "Orders, deduplicated."
    assert orders.retry == Retry()
    assert orders.fn is not None and orders.fn(None, 5) == 5


def test_asset_with_parentheses_and_options() -> None:
    not_null = checks.not_null("order_id")

    @asset(
        name="clean_orders",
        layer="silver",
        deps=["bronze.raw_returns", AssetKey("bronze", "raw_refunds")],
        checks=[not_null],
        retry=Retry(attempts=3),
        tags=["finance", "finance"],
        description="explicit",
        owners=["data@example.com"],
    )
    def orders(context: Any, raw_orders: Any, customers: Any) -> Any:
        """Docstring loses to the explicit description."""
        return raw_orders

    assert orders.key == AssetKey("silver", "clean_orders")
    assert orders.inputs == (("raw_orders", "raw_orders"), ("customers", "customers"))
    assert orders.deps == ("bronze.raw_returns", "bronze.raw_refunds")
    assert orders.checks == (not_null,)
    assert orders.retry == Retry(attempts=3)
    assert orders.tags == frozenset({"finance"})
    assert orders.description == "explicit"
    assert orders.owners == ("data@example.com",)
    assert orders.references == (
        "raw_orders",
        "customers",
        "bronze.raw_returns",
        "bronze.raw_refunds",
    )


def test_empty_parentheses_equal_no_parentheses() -> None:
    @asset()
    def a(ctx: Any) -> None: ...

    @asset
    def b(ctx: Any) -> None: ...

    assert a.key == AssetKey("default", "a") and b.key == AssetKey("default", "b")
    assert a.inputs == b.inputs == ()


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("def f(ctx, a, b): ...", (("a", "a"), ("b", "b"))),
        ("def f(context, a): ...", (("a", "a"),)),
        ("def f(a, b): ...", (("a", "a"), ("b", "b"))),
        ("def f(ctx, *, a): ...", (("a", "a"),)),
        ("def f(): ...", ()),
        ("def f(ctx): ...", ()),
    ],
)
def test_parameters_become_inputs_except_the_context(
    source: str, expected: tuple[tuple[str, str], ...]
) -> None:
    namespace: dict[str, Any] = {}
    exec(source, namespace)
    assert asset(namespace["f"]).inputs == expected


@pytest.mark.parametrize("signature", ["ctx, *upstreams", "ctx, **upstreams"])
def test_var_args_cannot_name_upstreams(tmp_path: Path, signature: str) -> None:
    source = f"""
        from orchestrator import asset

        @asset(layer="silver")
        def orders({signature}):
            return None
    """
    with pytest.raises(DefinitionError, match=r"silver\.orders.*\*args") as info:
        load_module(tmp_path, source)
    assert info.value.line == 3


@pytest.mark.parametrize(
    ("decorator", "bad"),
    [
        ('@asset(name="bad-name")', "'bad-name'"),
        ('@asset(name="1orders")', "'1orders'"),
        ('@asset(layer="sil ver")', "'sil ver'"),
        ('@asset(layer="")', "''"),
    ],
)
def test_invalid_name_names_file_and_line(tmp_path: Path, decorator: str, bad: str) -> None:
    source = f"""
        from orchestrator import asset


        {decorator}
        def orders(ctx):
            return None
    """
    with pytest.raises(InvalidNameError) as info:
        load_module(tmp_path, source)
    error = info.value
    path = next(tmp_path.glob("*.py"))
    assert error.file == str(path)
    assert error.line == 4
    assert f"{path}:4" in str(error)
    assert bad in str(error)


# --- AssetKey ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["silver.orders", ("silver", "orders"), ["silver", "orders"], AssetKey("silver", "orders")],
)
def test_asset_key_parse(value: Any) -> None:
    key = AssetKey.parse(value)
    assert key == AssetKey("silver", "orders")
    assert (key.layer, key.name) == ("silver", "orders")
    assert str(key) == "silver.orders"


@pytest.mark.parametrize(
    "value",
    [
        "orders",
        "",
        ".",
        "silver.",
        ".orders",
        "gold.silver.orders",
        "silver.or-ders",
        "1silver.orders",
        "silver. orders",
        ("silver",),
        ("a", "b", "c"),
        ("silver", "bad name"),
    ],
)
def test_asset_key_parse_rejects(value: Any) -> None:
    with pytest.raises(InvalidNameError):
        AssetKey.parse(value)


def test_asset_keys_sort_by_layer_then_name() -> None:
    keys = [AssetKey.parse(k) for k in ("silver.b", "gold.a", "silver.a", "bronze.z")]
    assert [str(k) for k in sorted(keys)] == ["bronze.z", "gold.a", "silver.a", "silver.b"]


# --- code versions ----------------------------------------------------------------------------

BASE = '''
    from orchestrator import asset


    @asset(layer="silver")
    def orders(ctx, raw_orders):
        """Orders, newest row per order."""
        # keep the newest row of every order
        latest = "ingested_at"
        return ctx.sql(f"SELECT * FROM raw_orders ORDER BY order_id, {latest} DESC")
'''

SAME_LOGIC = {
    "reformatted": """
        from orchestrator import asset

        @asset( layer = 'silver' )
        def orders(
            ctx,
            raw_orders,
        ):
            latest = 'ingested_at'


            return ctx.sql(
                f'SELECT * FROM raw_orders ORDER BY order_id, {latest} DESC'
            )
    """,
    "comments edited": '''
        from orchestrator import asset


        @asset(layer="silver")  # the silver copy
        def orders(ctx, raw_orders):
            """Orders, newest row per order."""
            # a different comment
            latest = "ingested_at"  # trailing comment
            # and another one
            return ctx.sql(f"SELECT * FROM raw_orders ORDER BY order_id, {latest} DESC")
    ''',
    "docstring edited": '''
        from orchestrator import asset


        @asset(layer="silver")
        def orders(ctx, raw_orders):
            """A completely different description.

            Spanning several lines.
            """
            latest = "ingested_at"
            return ctx.sql(f"SELECT * FROM raw_orders ORDER BY order_id, {latest} DESC")
    ''',
    "docstring removed": """
        from orchestrator import asset


        @asset(layer="silver")
        def orders(ctx, raw_orders):
            latest = "ingested_at"
            return ctx.sql(f"SELECT * FROM raw_orders ORDER BY order_id, {latest} DESC")
    """,
    "decorator changed": '''
        from orchestrator import asset, checks, Retry


        @asset(
            layer="silver",
            checks=[checks.not_null("order_id")],
            retry=Retry(attempts=3),
            tags=["finance"],
        )
        def orders(ctx, raw_orders):
            """Orders, newest row per order."""
            latest = "ingested_at"
            return ctx.sql(f"SELECT * FROM raw_orders ORDER BY order_id, {latest} DESC")
    ''',
    "moved down the file": '''
        from orchestrator import asset

        HELPER = 1


        def unrelated():
            return HELPER


        @asset(layer="silver")
        def orders(ctx, raw_orders):
            """Orders, newest row per order."""
            latest = "ingested_at"
            return ctx.sql(f"SELECT * FROM raw_orders ORDER BY order_id, {latest} DESC")
    ''',
}

CHANGED_LOGIC = {
    "query edited": '''
        from orchestrator import asset


        @asset(layer="silver")
        def orders(ctx, raw_orders):
            """Orders, newest row per order."""
            latest = "ingested_at"
            return ctx.sql(f"SELECT * FROM raw_orders ORDER BY order_id, {latest} ASC")
    ''',
    "statement added": '''
        from orchestrator import asset


        @asset(layer="silver")
        def orders(ctx, raw_orders):
            """Orders, newest row per order."""
            latest = "ingested_at"
            ctx.log.info("building")
            return ctx.sql(f"SELECT * FROM raw_orders ORDER BY order_id, {latest} DESC")
    ''',
    "upstream parameter renamed": '''
        from orchestrator import asset


        @asset(layer="silver")
        def orders(ctx, raw_orders_v2):
            """Orders, newest row per order."""
            latest = "ingested_at"
            return ctx.sql(f"SELECT * FROM raw_orders ORDER BY order_id, {latest} DESC")
    ''',
}


@pytest.mark.parametrize("variant", sorted(SAME_LOGIC))
def test_code_version_ignores_form(tmp_path: Path, variant: str) -> None:
    assert version_of(tmp_path, SAME_LOGIC[variant]) == version_of(tmp_path, BASE)


@pytest.mark.parametrize("variant", sorted(CHANGED_LOGIC))
def test_code_version_changes_with_logic(tmp_path: Path, variant: str) -> None:
    assert version_of(tmp_path, CHANGED_LOGIC[variant]) != version_of(tmp_path, BASE)


def test_code_version_is_stable_across_imports(tmp_path: Path) -> None:
    assert version_of(tmp_path, BASE) == version_of(tmp_path, BASE)


def test_nested_function_docstrings_are_logic(tmp_path: Path) -> None:
    """Only the asset's own docstring is ignored, not a string inside a nested function."""
    template = """
        from orchestrator import asset


        @asset
        def orders(ctx):
            def helper():
                "{text}"
                return 1
            return helper()
    """
    first = version_of(tmp_path, template.replace("{text}", "one"))
    second = version_of(tmp_path, template.replace("{text}", "two"))
    assert first != second


def test_explicit_code_version_wins(tmp_path: Path) -> None:
    source = """
        from orchestrator import asset

        @asset(code_version="v7")
        def orders(ctx):
            return 1
    """
    assert version_of(tmp_path, source) == "v7"


def test_python_code_version_of_a_plain_function(tmp_path: Path) -> None:
    module, _ = load_module(
        tmp_path,
        """
        def f(x):
            return x + 1

        def g(x):
            return x + 2
        """,
    )
    assert python_code_version(module.f) != python_code_version(module.g)
    assert len(python_code_version(module.f)) == 16


# --- Retry ------------------------------------------------------------------------------------


def test_retry_delay_doubles_then_caps() -> None:
    retry = Retry(attempts=10, backoff_s=2.0, max_backoff_s=30.0)
    assert [retry.delay(n) for n in range(1, 8)] == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_retry_zero_backoff_is_zero() -> None:
    assert Retry(attempts=5, backoff_s=0.0).delay(4) == 0.0


@given(
    backoff=st.floats(min_value=0.0, max_value=1e6, allow_nan=False),
    cap=st.floats(min_value=0.0, max_value=1e6, allow_nan=False),
    attempt=st.integers(min_value=1, max_value=5_000),
)
def test_retry_delay_is_exponential_and_capped(backoff: float, cap: float, attempt: int) -> None:
    retry = Retry(attempts=attempt + 1, backoff_s=backoff, max_backoff_s=cap)
    delay = retry.delay(attempt)
    assert 0.0 <= delay <= cap
    assert delay <= retry.delay(attempt + 1)
    uncapped = Fraction(backoff) * 2 ** (attempt - 1)  # exact: no float overflow
    assert delay == (cap if uncapped > cap else float(uncapped))


@pytest.mark.parametrize(
    "kwargs",
    [{"attempts": 0}, {"backoff_s": -1.0}, {"max_backoff_s": -1.0}, {"jitter": 1.5}],
)
def test_retry_rejects_nonsense(kwargs: dict[str, Any]) -> None:
    with pytest.raises(DefinitionError):
        Retry(**kwargs)
