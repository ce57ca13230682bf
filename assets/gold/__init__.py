"""Gold: a Kimball star schema (dimensions and an order fact) and a daily revenue mart.

Gold is unpartitioned: each asset is rebuilt whole, reading every published partition of
`silver.orders`, so any new or rebuilt order partition makes `fct_orders`, `dim_date` and
`daily_revenue` stale. At the example's size that is cheap, and it keeps the star consistent in
one publish: `dim_date` spans exactly the first to the last order day, and every fact's keys
resolve in the dimensions published before it.
"""
