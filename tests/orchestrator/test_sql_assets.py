from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pytest

from lakehouse import audits
from orchestrator.assets import Asset, AssetKey, Retry
from orchestrator.errors import DefinitionError, InvalidNameError, SqlParseError
from orchestrator.sql_assets import discover_sql_assets, load_sql_asset


def write(assets_dir: Path, relative: str, text: str) -> Path:
    path = assets_dir / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def assets_dir(tmp_path: Path) -> Path:
    return tmp_path / "assets"


def load(assets_dir: Path, text: str, relative: str = "gold/report.sql") -> Asset:
    return load_sql_asset(write(assets_dir, relative, text), assets_dir)


# --- basics and upstreams ----------------------------------------------------------------------


def test_basic_asset_fields(assets_dir: Path) -> None:
    path = write(
        assets_dir, "silver/orders.sql", "-- a comment\n\nSELECT * FROM bronze.raw_orders;\n"
    )
    asset = load_sql_asset(path, assets_dir)
    assert asset.key == AssetKey("silver", "orders")
    assert asset.kind == "sql"
    assert asset.sql == "SELECT * FROM bronze.raw_orders"
    assert asset.deps == ("bronze.raw_orders",)
    assert asset.file == str(path)
    assert asset.line == 3
    assert asset.checks == ()
    assert asset.retry == Retry()
    assert len(asset.code_version) == 16


def test_deps_through_joins_ctes_and_subqueries(assets_dir: Path) -> None:
    asset = load(
        assets_dir,
        """
WITH recent AS (
    SELECT * FROM silver.orders WHERE ts > now() - INTERVAL 7 DAY
),
big AS (SELECT * FROM recent WHERE amount > (SELECT avg(amount) FROM payments))
SELECT b.*, c.name, r.region
FROM big AS b
JOIN silver.customers c ON c.customer_id = b.customer_id
LEFT JOIN (SELECT * FROM bronze.regions) r ON r.id = c.region_id
LEFT JOIN read_parquet('lookup.parquet') l ON l.k = b.k
CROSS JOIN range(3) AS t(i)
WHERE b.customer_id IN (SELECT customer_id FROM silver.customers)
  AND EXISTS (SELECT 1 FROM Recent)
""",
    )
    assert asset.deps == ("silver.orders", "payments", "silver.customers", "bronze.regions")


def test_cte_shadowing_its_upstream_is_not_a_cte_reference(assets_dir: Path) -> None:
    asset = load(
        assets_dir,
        "WITH orders AS (SELECT * FROM orders WHERE amount > 0)\nSELECT * FROM orders",
    )
    assert asset.deps == ("orders",)


def test_file_reads_and_table_functions_are_not_upstreams(assets_dir: Path) -> None:
    asset = load(
        assets_dir,
        "SELECT * FROM 'data/x.csv' JOIN generate_series(1, 3) g ON true JOIN orders ON true",
    )
    assert asset.deps == ("orders",)


def test_header_keys(assets_dir: Path) -> None:
    asset = load(
        assets_dir,
        """-- description: Revenue per day.
-- description: One row per day.
-- tags: finance, daily
-- owners: alice, bob
-- deps: bronze.fx_rates, calendar
-- retry: attempts=3, backoff_s=2
-- TODO: this line is an ordinary comment
SELECT * FROM silver.orders
""",
    )
    assert asset.description == "Revenue per day.\nOne row per day."
    assert asset.tags == frozenset({"finance", "daily"})
    assert asset.owners == ("alice", "bob")
    assert asset.deps == ("silver.orders", "bronze.fx_rates", "calendar")
    assert asset.retry == Retry(attempts=3, backoff_s=2)
    assert asset.line == 8


def test_code_version_header_overrides(assets_dir: Path) -> None:
    asset = load(assets_dir, "-- code_version: v7\nSELECT 1 AS x")
    assert asset.code_version == "v7"


# --- checks ------------------------------------------------------------------------------------


def test_header_checks_become_check_objects(assets_dir: Path) -> None:
    asset = load(
        assets_dir,
        """-- checks: not_null(order_id, customer_id); unique(order_id)
-- checks: accepted_values(status, ['placed', 'shipped'], severity='warn')
-- checks: relationships(customer_id, to=gold.dim_customer, field=customer_id)
-- checks: row_count(min=1); expression(amount >= 0 AND amount < 1e6)
-- checks: freshness(order_ts, max_age='2d'); expression(status <> 'x;y', severity='warn')
SELECT * FROM silver.orders
""",
    )
    assert asset.checks == (
        audits.not_null("order_id", "customer_id"),
        audits.unique("order_id"),
        audits.accepted_values("status", ["placed", "shipped"], severity="warn"),
        audits.relationships("customer_id", to="gold.dim_customer", field="customer_id"),
        audits.row_count(min=1),
        audits.expression("amount >= 0 AND amount < 1e6"),
        audits.freshness("order_ts", max_age=dt.timedelta(days=2)),
        audits.expression("status <> 'x;y'", severity="warn"),
    )
    relationships = asset.checks[3]
    assert relationships.kind == "relationships"
    assert dict(relationships.params) == {
        "column": "customer_id",
        "to": "gold.dim_customer",
        "field": "customer_id",
    }
    assert relationships.references == ("gold.dim_customer",)
    assert "gold.dim_customer" in asset.references
    expression = asset.checks[5]
    assert expression.kind == "expression"
    assert expression.severity == "error"
    assert dict(expression.params)["predicate"] == "amount >= 0 AND amount < 1e6"
    assert asset.checks[2].severity == "warn"


def test_unknown_check_names_file_line_and_known_checks(assets_dir: Path) -> None:
    path = write(
        assets_dir,
        "gold/report.sql",
        "-- tags: x\n-- checks: not_null(id); is_positive(amount)\nSELECT 1 AS id",
    )
    with pytest.raises(DefinitionError) as info:
        load_sql_asset(path, assets_dir)
    err = info.value
    assert err.file == str(path)
    assert err.line == 2
    assert "is_positive" in err.message
    for known in ("not_null", "unique", "accepted_values", "relationships", "expression"):
        assert known in err.message
    assert f"{path}:2" in str(err)


@pytest.mark.parametrize(
    "call",
    [
        "accepted_values(status)",
        "row_count(mn=1)",
        "not_null(f(x))",
        "row_count(min='many')",
        "freshness(ts, max_age='soon')",
        "relationships(customer_id, to=dim_customer)",
        "not_null(id, severity='fatal')",
        "expression(amount >)",
        "not_null order_id",
    ],
)
def test_bad_check_arguments(assets_dir: Path, call: str) -> None:
    path = write(assets_dir, "gold/report.sql", f"-- checks: {call}\nSELECT 1 AS id")
    with pytest.raises(DefinitionError) as info:
        load_sql_asset(path, assets_dir)
    assert info.value.file == str(path)
    assert info.value.line == 1


def test_partitions_header_declares_time_partitions(assets_dir: Path) -> None:
    text = (
        "-- tags: x\n-- partitions: daily(start=2024-01-01, column=order_date, lookback=6)\n"
        "SELECT 1 AS x FROM silver.orders\n"
        "WHERE order_date >= $partition_start AND order_date < $partition_end"
    )
    asset = load(assets_dir, text)
    assert asset.partitions is not None
    assert (asset.partitions.granularity, asset.partitions.column) == ("day", "order_date")
    assert (asset.partitions.start, asset.partitions.lookback) == ("2024-01-01", 6)
    unpartitioned = load(assets_dir, text.replace("-- partitions", "-- nothing"), "gold/b.sql")
    assert unpartitioned.code_version != asset.code_version


@pytest.mark.parametrize(
    "value",
    ["daily", "weekly(start=2024-01-01, column=d)", "daily(column=d)", "daily(start=x, column=d)"],
)
def test_bad_partitions_header_names_the_line(assets_dir: Path, value: str) -> None:
    path = write(
        assets_dir, "gold/report.sql", f"-- tags: x\n-- partitions: {value}\nSELECT 1 AS x"
    )
    with pytest.raises(DefinitionError, match="partitions") as info:
        load_sql_asset(path, assets_dir)
    assert (info.value.file, info.value.line) == (str(path), 2)


def test_bad_retry_header(assets_dir: Path) -> None:
    for value in ("attempts=0", "tries=3", "attempts=1.5", "3"):
        path = write(assets_dir, "gold/report.sql", f"-- retry: {value}\nSELECT 1 AS x")
        with pytest.raises(DefinitionError) as info:
            load_sql_asset(path, assets_dir)
        assert info.value.line == 1


# --- errors ------------------------------------------------------------------------------------


def test_parse_error_reports_file_line_and_column(assets_dir: Path) -> None:
    path = write(
        assets_dir,
        "gold/report.sql",
        "-- checks: not_null(id)\n-- tags: x\n"
        "SELECT id,\n       amount\nFROM t WHERE amount = = 1\n",
    )
    with pytest.raises(SqlParseError) as info:
        load_sql_asset(path, assets_dir)
    err = info.value
    assert err.file == str(path)
    assert err.line == 5
    assert "line 5, column 23" in err.message
    assert str(path) in str(err)


def test_tokenizer_error_reports_position(assets_dir: Path) -> None:
    path = write(assets_dir, "gold/report.sql", "-- tags: x\nSELECT 1 AS a,\n  'unterminated AS b")
    with pytest.raises(SqlParseError) as info:
        load_sql_asset(path, assets_dir)
    assert info.value.line == 3
    assert "line 3, column 3" in info.value.message


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO gold.report SELECT 1",
        "CREATE TABLE gold.report AS SELECT 1",
        "DROP TABLE silver.orders",
        "SELECT 1; SELECT 2",
    ],
)
def test_statements_other_than_one_query_are_rejected(assets_dir: Path, sql: str) -> None:
    path = write(assets_dir, "gold/report.sql", f"-- tags: x\n{sql}\n")
    with pytest.raises(SqlParseError) as info:
        load_sql_asset(path, assets_dir)
    assert info.value.file == str(path)
    assert info.value.line == 2


@pytest.mark.parametrize("text", ["", "  \n\n", "-- tags: x\n-- only comments\n"])
def test_empty_file_is_a_definition_error(assets_dir: Path, text: str) -> None:
    path = write(assets_dir, "gold/report.sql", text)
    with pytest.raises(DefinitionError) as info:
        load_sql_asset(path, assets_dir)
    assert info.value.file == str(path)


def test_invalid_file_name(assets_dir: Path) -> None:
    path = write(assets_dir, "gold/1bad.sql", "SELECT 1 AS x")
    with pytest.raises(InvalidNameError, match="1bad") as info:
        load_sql_asset(path, assets_dir)
    assert info.value.file == str(path)


def test_invalid_layer_name(assets_dir: Path) -> None:
    path = write(assets_dir, "my-layer/report.sql", "SELECT 1 AS x")
    with pytest.raises(InvalidNameError, match="my-layer"):
        load_sql_asset(path, assets_dir)


# --- code version ------------------------------------------------------------------------------


BASE = """-- checks: not_null(order_id)
SELECT order_id, amount
FROM silver.orders
WHERE status = 'shipped'
"""


def version(assets_dir: Path, text: str) -> str:
    return load(assets_dir, text).code_version


def test_code_version_ignores_formatting_and_comments(assets_dir: Path) -> None:
    base = version(assets_dir, BASE)
    reformatted = """-- checks: not_null(order_id)
select   order_id,
         AMOUNT -- the amount
from Silver.Orders /* only shipped */ where status='shipped';
"""
    assert version(assets_dir, reformatted) == base


def test_code_version_changes_with_logic(assets_dir: Path) -> None:
    base = version(assets_dir, BASE)
    assert version(assets_dir, BASE.replace("'shipped'", "'placed'")) != base
    assert version(assets_dir, BASE.replace("amount", "amount, customer_id")) != base
    assert version(assets_dir, BASE.replace("silver.orders", "bronze.orders")) != base


def test_code_version_ignores_header(assets_dir: Path) -> None:
    base = version(assets_dir, BASE)
    edited = BASE.replace("not_null(order_id)", "unique(order_id)\n-- tags: a, b\n-- owners: c")
    assert version(assets_dir, edited) == base


# --- partitions parameters ---------------------------------------------------------------------


def test_partition_parameters_parse_and_run_in_duckdb(assets_dir: Path) -> None:
    asset = load(
        assets_dir,
        "SELECT * FROM silver.orders\n"
        "WHERE ts >= $partition_start AND ts < $partition_end; -- bounds are bound parameters\n",
    )
    assert asset.deps == ("silver.orders",)
    assert asset.sql is not None and "$partition_start" in asset.sql
    con = duckdb.connect()
    con.execute("CREATE SCHEMA silver")
    con.execute(
        "CREATE TABLE silver.orders AS SELECT * FROM (VALUES (1, DATE '2024-01-01'), "
        "(2, DATE '2024-01-02')) AS t(id, ts)"
    )
    rows = con.execute(
        f"SELECT id FROM (\n{asset.sql}\n)",
        {"partition_start": dt.date(2024, 1, 2), "partition_end": dt.date(2024, 1, 3)},
    ).fetchall()
    assert rows == [(2,)]


# --- discovery ---------------------------------------------------------------------------------


def test_discovery_loads_depth_two_files_sorted(assets_dir: Path) -> None:
    write(assets_dir, "silver/orders.sql", "SELECT * FROM bronze.raw_orders")
    write(assets_dir, "gold/revenue.sql", "SELECT sum(amount) AS total FROM silver.orders")
    write(assets_dir, "gold/daily.sql", "SELECT 1 AS x")
    write(assets_dir, "gold/notes.md", "not SQL")
    write(assets_dir, ".scratch/tmp.sql", "not even SQL")
    keys = [str(a.key) for a in discover_sql_assets(assets_dir)]
    assert keys == ["gold.daily", "gold.revenue", "silver.orders"]


def test_discovery_of_missing_folder_is_empty(tmp_path: Path) -> None:
    assert discover_sql_assets(tmp_path / "nope") == []


@pytest.mark.parametrize("relative", ["top.sql", "gold/sub/deep.sql"])
def test_misplaced_sql_file(assets_dir: Path, relative: str) -> None:
    write(assets_dir, "gold/ok.sql", "SELECT 1 AS x")
    path = write(assets_dir, relative, "SELECT 1 AS x")
    with pytest.raises(DefinitionError, match="must live at") as info:
        discover_sql_assets(assets_dir)
    assert info.value.file == str(path)
    assert relative in info.value.message
