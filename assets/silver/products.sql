-- description: The product catalogue, typed: one row per product, latest export wins.
-- tags: products
-- checks: not_null(product_id); unique(product_id); not_null(product_name); not_null(category); not_null(list_price); expression(list_price > 0); row_count(min=1)
SELECT
    trim(product_id) AS product_id,
    trim(product_name) AS product_name,
    trim(category) AS category,
    TRY_CAST(list_price AS DECIMAL(10, 2)) AS list_price,
    updated_at
FROM bronze.raw_products
WHERE NULLIF(trim(product_id), '') IS NOT NULL
QUALIFY row_number() OVER (PARTITION BY trim(product_id) ORDER BY updated_at DESC) = 1
ORDER BY product_id
