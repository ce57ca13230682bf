-- description: Order fact, one row per order (latest valid version), keyed to the customer, product and date dimensions (order_id is a degenerate dimension).
-- tags: star, orders, finance
-- checks: not_null(order_id); unique(order_id); not_null(date_key); not_null(customer_key); not_null(product_key); relationships(date_key, to=gold.dim_date, field=date_key); relationships(customer_key, to=gold.dim_customer, field=customer_key); relationships(product_key, to=gold.dim_product, field=product_key); accepted_values(status, ['placed','paid','shipped','delivered','cancelled','returned']); expression(amount >= 0); expression(quantity > 0); row_count(min=1)
SELECT
    o.order_id,
    CAST(year(o.order_ts) * 10000 + month(o.order_ts) * 100 + day(o.order_ts) AS INTEGER)
        AS date_key,
    COALESCE(c.customer_key, -1) AS customer_key,
    COALESCE(p.product_key, -1) AS product_key,
    o.channel,
    o.status,
    o.quantity,
    o.amount,
    o.status = 'cancelled' AS is_cancelled,
    o.status = 'returned' AS is_returned,
    o.ingested_at > o.order_ts + INTERVAL 1 DAY AS is_late_arrival,
    o.order_ts,
    o.ingested_at
FROM silver.orders AS o
LEFT JOIN gold.dim_customer AS c ON c.customer_id = o.customer_id AND NOT c.is_unknown
LEFT JOIN gold.dim_product AS p ON p.product_id = o.product_id AND NOT p.is_unknown
ORDER BY o.order_id
