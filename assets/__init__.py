"""Sluice example project: a small, deterministic e-commerce lakehouse.

A seeded generator (`assets.source`, its order feed in `assets.order_feed`) stands in for the
shop's source API. From it:

* bronze - the raw feeds as they arrive, mostly strings: `raw_orders` (partitioned by day,
  streamed in Arrow record batches), `raw_customers` (with PII), `raw_products`;
* silver - typed, cleaned, deduplicated and PII-masked: `orders` and `orders_rejected` (the
  quarantine for malformed order records), both partitioned by day, `customers`, `products`;
* gold - a Kimball star and a mart, unpartitioned: `dim_customer`, `dim_product`, `dim_date`,
  `fct_orders` and `daily_revenue`, each rebuilt whole from every published order partition.

The order feed starts on 2024-01-01 and has no end: `sluice backfill '*' --from 2024-01-01
--to 2024-01-31` builds January 2024, and `sluice materialize` (or the nightly schedule in
`assets/schedules.py`) builds yesterday, the latest complete day. Every materialization is
Write-Audit-Publish: the checks declared on each asset audit the data on its branch (for a
partition, that partition's rows) before it is published. `SLUICE_EXAMPLE_ROWS` sets the
number of order records per day (default 1,000) and scales the customer extract with it; the
same value always produces the same data, day by day.
"""
