-- description: Product dimension: one row per product with its category and list price, plus the unknown member (product_key -1).
-- tags: star, products
-- checks: not_null(product_key); unique(product_key); not_null(product_id); unique(product_id); not_null(category); row_count(min=1)
SELECT
    CAST(('0x' || left(md5(product_id), 15)) AS BIGINT) AS product_key,
    product_id,
    product_name,
    category,
    list_price,
    CASE
        WHEN list_price < 20 THEN 'budget'
        WHEN list_price < 100 THEN 'standard'
        ELSE 'premium'
    END AS price_band,
    false AS is_unknown
FROM silver.products
UNION ALL
SELECT
    CAST(-1 AS BIGINT) AS product_key,
    'UNKNOWN' AS product_id,
    'Unknown product' AS product_name,
    'Unknown' AS category,
    CAST(NULL AS DECIMAL(10, 2)) AS list_price,
    'unknown' AS price_band,
    true AS is_unknown
ORDER BY product_key
