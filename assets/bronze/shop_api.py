"""Bronze assets: the shop API's feeds, landed exactly as they arrive."""

from __future__ import annotations

import pyarrow as pa

from assets import source
from orchestrator import AssetContext, Retry, asset, checks

OWNERS = ["data-platform@example.com"]


@asset(
    layer="bronze",
    checks=[
        checks.row_count(min=1),
        checks.not_null("order_id", "ingested_at"),
    ],
    retry=Retry(attempts=3, backoff_s=2.0),
    code_version=source.code_version(),
    tags=["source", "orders"],
    owners=OWNERS,
)
def raw_orders(ctx: AssetContext) -> pa.RecordBatchReader:
    """Order records as delivered by the shop API: strings, redeliveries and defects included.

    Streamed in Arrow record batches, so the feed never has to fit in memory.
    """
    rows = source.example_rows()
    ctx.log.info("streaming %d order records in batches of %d", rows, source.BATCH_ROWS)
    return source.orders_reader(rows)


@asset(
    layer="bronze",
    checks=[
        checks.row_count(min=1),
        checks.not_null("customer_id", "updated_at"),
    ],
    retry=Retry(attempts=3, backoff_s=2.0),
    code_version=source.code_version(),
    tags=["source", "customers", "pii"],
    owners=OWNERS,
)
def raw_customers(ctx: AssetContext) -> pa.Table:
    """The customer extract, one record per customer version; contains PII (names, e-mail)."""
    table = source.customers(source.example_rows())
    ctx.log.info("extracted %d customer records", table.num_rows)
    return table


@asset(
    layer="bronze",
    checks=[
        checks.row_count(min=1),
        checks.not_null("product_id"),
        checks.unique("product_id"),
    ],
    code_version=source.code_version(sized=False),
    tags=["source", "products"],
    owners=OWNERS,
)
def raw_products(ctx: AssetContext) -> pa.Table:
    """The product catalogue as exported by the shop: ids, names, categories, prices as text."""
    return source.products()
