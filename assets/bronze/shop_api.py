"""Bronze assets: the shop API's feeds, landed exactly as they arrive.

`raw_orders` is partitioned by day on `order_date`, the day the API files an order under (the
day it was placed), not by arrival time. A silver partition of orders placed on day D has to
see every version of those orders; partitioned by arrival, that would be in the bronze
partitions D .. D+9 (late arrivals and redeliveries come up to nine days later), a look-ahead
that partition mappings (which only look back) cannot express. The price is the classic one:
records that arrive after day D's partition was built are not in it. The example's feed is
served in its final state, so rebuilding a day always gives the same rows; against a live API,
re-pull the trailing days on a schedule, e.g.
`sluice materialize raw_orders+ --from <today-10> --to <yesterday> --force`, because Sluice
cannot see that an external source changed.
"""

from __future__ import annotations

import pyarrow as pa

from assets import order_feed, source
from orchestrator import AssetContext, DailyPartitions, Retry, asset, checks

OWNERS = ["data-platform@example.com"]
FIRST_DAY = source.FIRST_DAY.isoformat()


@asset(
    layer="bronze",
    partitions=DailyPartitions(start=FIRST_DAY, column="order_date"),
    checks=[
        checks.row_count(min=1),
        checks.not_null("order_id", "order_date", "ingested_at"),
    ],
    retry=Retry(attempts=3, backoff_s=2.0),
    code_version=source.code_version(),
    tags=["source", "orders"],
    owners=OWNERS,
)
def raw_orders(ctx: AssetContext) -> pa.RecordBatchReader:
    """Order records placed on the partition's day(s), as delivered by the shop API: strings,
    redeliveries and defects included, plus the API's `order_date` and `ingested_at`.

    `SLUICE_EXAMPLE_ROWS` records per day, the same ones however often and in whatever order
    days are built. A ranged write (`sluice backfill --ranged`) gets every day of its window.
    Streamed in Arrow record batches, so the feed never has to fit in memory.
    """
    assert ctx.partition is not None, "raw_orders is partitioned"
    first, end = ctx.partition.start.date(), ctx.partition.end.date()
    rows = source.example_rows()
    ctx.log.info("streaming %d order records a day for %s", rows, ctx.partition.key)
    return order_feed.orders_reader(first, end, rows)


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
