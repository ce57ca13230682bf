"""Sluice example project: a small, deterministic e-commerce lakehouse.

A seeded generator (`assets.source`) stands in for the shop's source API. From it:

* bronze - the raw feeds as they arrive, mostly strings: `raw_orders` (streamed in Arrow record
  batches), `raw_customers` (with PII), `raw_products`;
* silver - typed, cleaned, deduplicated and PII-masked: `orders`, `orders_rejected` (the
  quarantine for malformed order records), `customers`, `products`;
* gold - a Kimball star and a mart: `dim_customer`, `dim_product`, `dim_date`, `fct_orders` and
  `daily_revenue`.

Every materialization is Write-Audit-Publish: the checks declared on each asset audit the data on
its branch before it is published. `SLUICE_EXAMPLE_ROWS` sets the number of order records
(default 20,000); the same value always produces the same data.
"""
