from __future__ import annotations

import pytest

from orchestrator.errors import SqlParseError
from orchestrator.lineage import column_lineage

SCHEMAS = {
    "silver.orders": {
        "order_id": "BIGINT",
        "customer_id": "BIGINT",
        "amount": "DOUBLE",
        "order_ts": "TIMESTAMP",
    },
    "gold.dim_customer": {"customer_id": "BIGINT", "name": "VARCHAR", "region": "VARCHAR"},
}


def test_join_aggregate_and_window() -> None:
    sql = """
    SELECT c.region,
           sum(o.amount) AS revenue,
           count(*) AS n_orders,
           rank() OVER (ORDER BY max(order_ts)) AS recency_rank
    FROM silver.orders o
    JOIN gold.dim_customer c ON c.customer_id = o.customer_id
    GROUP BY c.region
    """
    assert column_lineage(sql, SCHEMAS) == {
        "region": ["gold.dim_customer.region"],
        "revenue": ["silver.orders.amount"],
        "n_orders": [],
        "recency_rank": ["silver.orders.order_ts"],
    }


def test_cte_and_unqualified_names() -> None:
    sql = """
    WITH big AS (SELECT customer_id, amount * 2 AS doubled FROM orders WHERE amount > 10)
    SELECT b.customer_id, doubled + 1 AS plus_one, name
    FROM big b JOIN dim_customer USING (customer_id)
    """
    result = column_lineage(sql, SCHEMAS)
    assert result["plus_one"] == ["silver.orders.amount"]
    assert result["name"] == ["gold.dim_customer.name"]
    assert result["customer_id"] == ["silver.orders.customer_id"]


def test_select_star_with_schema() -> None:
    assert column_lineage("SELECT * FROM silver.orders", SCHEMAS) == {
        "order_id": ["silver.orders.order_id"],
        "customer_id": ["silver.orders.customer_id"],
        "amount": ["silver.orders.amount"],
        "order_ts": ["silver.orders.order_ts"],
    }


def test_literal_columns_and_output_spelling() -> None:
    result = column_lineage(
        "SELECT 1 AS one, 'x' AS Label, Amount AS Total FROM silver.orders", SCHEMAS
    )
    assert result == {"one": [], "Label": [], "Total": ["silver.orders.amount"]}


def test_union_merges_both_sides() -> None:
    sql = "SELECT amount FROM silver.orders UNION ALL SELECT customer_id FROM gold.dim_customer"
    assert column_lineage(sql, SCHEMAS) == {
        "amount": ["gold.dim_customer.customer_id", "silver.orders.amount"]
    }


def test_unknown_tables_still_trace_qualified_columns() -> None:
    assert column_lineage("SELECT t.a FROM raw.events t", {}) == {"a": ["raw.events.a"]}


def test_not_a_query() -> None:
    with pytest.raises(SqlParseError):
        column_lineage("DROP TABLE silver.orders", SCHEMAS)
    with pytest.raises(SqlParseError):
        column_lineage("SELECT FROM WHERE (", SCHEMAS)
