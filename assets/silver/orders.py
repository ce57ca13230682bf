"""Silver order assets: typed and validated order records, and the quarantine for the rest.

Both assets read the same validation query, so a record lands in exactly one of them: valid
versions in `silver.orders` (the latest per order), malformed ones in `silver.orders_rejected`
with the reason.

Both are partitioned by day like `bronze.raw_orders`, so partition D reads bronze partition D
only. `silver.orders` is partitioned on the parsed `order_ts`; a record whose `order_ts` falls
on another day than the `order_date` the API filed it under is rejected
(`order_ts_outside_order_date`) rather than written into the wrong partition. The quarantine
keeps the raw strings, so it is partitioned on the API's `order_date`. Every version of an
order is filed under the same day, so deduplicating within a partition deduplicates globally.
"""

from __future__ import annotations

import duckdb

from assets.silver import query_version
from orchestrator import AssetContext, DailyPartitions, asset, checks

FIRST_DAY = "2024-01-01"

STATUSES = ["placed", "paid", "shipped", "delivered", "cancelled", "returned"]
REJECT_REASONS = [
    "missing_order_id",
    "missing_customer_id",
    "unparseable_order_ts",
    "order_ts_outside_order_date",
    "unparseable_amount",
    "negative_amount",
    "invalid_quantity",
    "unknown_status",
]

# Parse every raw record and name its first defect (NULL when it has none). DuckDB's TRY_CAST
# accepts both timestamp formats the source sends ("2024-01-31 12:34:56" and the app's
# "2024-01-31T12:34:56Z", both UTC) and yields NULL for anything else.
VALIDATED = """
WITH parsed AS (
    SELECT
        raw_orders.*,
        NULLIF(trim(raw_orders.order_id), '') AS order_id_clean,
        NULLIF(trim(raw_orders.customer_id), '') AS customer_id_clean,
        TRY_CAST(raw_orders.order_ts AS TIMESTAMP) AS order_ts_parsed,
        TRY_CAST(raw_orders.amount AS DECIMAL(12, 2)) AS amount_parsed,
        TRY_CAST(raw_orders.quantity AS INTEGER) AS quantity_parsed,
        lower(trim(raw_orders.status)) AS status_clean
    FROM raw_orders
)
SELECT
    *,
    CASE
        WHEN order_id_clean IS NULL THEN 'missing_order_id'
        WHEN customer_id_clean IS NULL THEN 'missing_customer_id'
        WHEN order_ts_parsed IS NULL THEN 'unparseable_order_ts'
        WHEN CAST(order_ts_parsed AS DATE) <> order_date THEN 'order_ts_outside_order_date'
        WHEN amount_parsed IS NULL THEN 'unparseable_amount'
        WHEN amount_parsed < 0 THEN 'negative_amount'
        WHEN quantity_parsed IS NULL OR quantity_parsed <= 0 THEN 'invalid_quantity'
        WHEN status_clean NOT IN ({statuses}) THEN 'unknown_status'
    END AS reject_reason
FROM parsed
""".format(statuses=", ".join(f"'{status}'" for status in STATUSES))

ORDERS_SQL = f"""
WITH validated AS ({VALIDATED})
SELECT
    order_id_clean AS order_id,
    customer_id_clean AS customer_id,
    trim(product_id) AS product_id,
    quantity_parsed AS quantity,
    amount_parsed AS amount,
    status_clean AS status,
    lower(trim(channel)) AS channel,
    order_ts_parsed AS order_ts,
    ingested_at
FROM validated
WHERE reject_reason IS NULL
QUALIFY row_number() OVER (
    PARTITION BY order_id_clean ORDER BY ingested_at DESC, status_clean
) = 1
ORDER BY order_id
"""

REJECTED_SQL = f"""
WITH validated AS ({VALIDATED})
SELECT
    reject_reason,
    order_id,
    customer_id,
    product_id,
    quantity,
    amount,
    status,
    channel,
    order_ts,
    order_date,
    ingested_at
FROM validated
WHERE reject_reason IS NOT NULL
ORDER BY ingested_at, order_id
"""


@asset(
    layer="silver",
    partitions=DailyPartitions(start=FIRST_DAY, column="order_ts"),
    checks=[
        checks.not_null("order_id", "customer_id", "product_id", "order_ts", "amount"),
        checks.unique("order_id"),
        checks.accepted_values("status", STATUSES),
        checks.expression("amount >= 0"),
        checks.expression("quantity > 0"),
        checks.sql("SELECT * FROM this WHERE ingested_at < order_ts"),
        checks.expression("ingested_at <= order_ts + INTERVAL 14 DAY", severity="warn"),
        checks.row_count(min=1),
    ],
    code_version=query_version(ORDERS_SQL),
    tags=["orders"],
)
def orders(ctx: AssetContext, raw_orders: duckdb.DuckDBPyRelation) -> duckdb.DuckDBPyRelation:
    """One row per order placed in the partition's day(s): the latest valid version of each
    order record, typed.

    Timestamps and amounts are parsed, status normalized, malformed records left out (they go to
    `silver.orders_rejected`), and redeliveries collapsed to the latest `ingested_at`. Every
    `order_ts` lies in the partition's window.
    """
    return ctx.sql(ORDERS_SQL)


@asset(
    layer="silver",
    partitions=DailyPartitions(start=FIRST_DAY, column="order_date"),
    checks=[
        checks.not_null("reject_reason", "order_date"),
        checks.accepted_values("reject_reason", REJECT_REASONS),
    ],
    code_version=query_version(REJECTED_SQL),
    tags=["orders", "quarantine"],
)
def orders_rejected(
    ctx: AssetContext, raw_orders: duckdb.DuckDBPyRelation
) -> duckdb.DuckDBPyRelation:
    """Quarantine: every malformed order record filed under the partition's day(s), as it
    arrived, with the reason it was rejected (a day may have none)."""
    return ctx.sql(REJECTED_SQL)
