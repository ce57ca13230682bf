-- description: Daily revenue mart: per order day and product category, orders, known customers, units and revenue (gross excludes cancelled orders, net also excludes returns).
-- tags: mart, finance, daily
-- checks: not_null(date_key); not_null(category); unique(date_key, category); relationships(date_key, to=gold.dim_date, field=date_key); expression(gross_revenue >= 0); expression(net_revenue <= gross_revenue); expression(customers <= orders); row_count(min=1)
SELECT
    f.date_key,
    d.calendar_date,
    d.day_name,
    p.category,
    count(*) FILTER (WHERE NOT f.is_cancelled) AS orders,
    count(DISTINCT f.customer_key) FILTER (
        WHERE NOT f.is_cancelled AND f.customer_key <> -1
    ) AS customers,
    count(*) FILTER (WHERE f.is_cancelled) AS cancelled_orders,
    CAST(COALESCE(sum(f.quantity) FILTER (WHERE NOT f.is_cancelled), 0) AS BIGINT) AS units,
    CAST(COALESCE(sum(f.amount) FILTER (WHERE NOT f.is_cancelled), 0) AS DECIMAL(18, 2))
        AS gross_revenue,
    CAST(COALESCE(sum(f.amount) FILTER (WHERE f.is_returned), 0) AS DECIMAL(18, 2))
        AS returned_revenue,
    CAST(
        COALESCE(sum(f.amount) FILTER (WHERE NOT f.is_cancelled AND NOT f.is_returned), 0)
        AS DECIMAL(18, 2)
    ) AS net_revenue
FROM gold.fct_orders AS f
JOIN gold.dim_date AS d ON d.date_key = f.date_key
JOIN gold.dim_product AS p ON p.product_key = f.product_key
GROUP BY f.date_key, d.calendar_date, d.day_name, p.category
ORDER BY f.date_key, p.category
