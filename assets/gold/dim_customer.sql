-- description: Customer dimension (SCD type 1, PII-masked): one row per customer, plus the unknown member (customer_key -1) for orders whose customer is not in the extract yet.
-- tags: star, customers
-- checks: not_null(customer_key); unique(customer_key); not_null(customer_id); unique(customer_id); row_count(min=1)
SELECT
    customer_key,
    customer_id,
    email_hash,
    email_masked,
    email_domain,
    country,
    signup_date,
    CAST(date_trunc('month', signup_date) AS DATE) AS signup_month,
    false AS is_unknown
FROM silver.customers
UNION ALL
SELECT
    CAST(-1 AS BIGINT) AS customer_key,
    'UNKNOWN' AS customer_id,
    CAST(NULL AS VARCHAR) AS email_hash,
    CAST(NULL AS VARCHAR) AS email_masked,
    CAST(NULL AS VARCHAR) AS email_domain,
    CAST(NULL AS VARCHAR) AS country,
    CAST(NULL AS DATE) AS signup_date,
    CAST(NULL AS DATE) AS signup_month,
    true AS is_unknown
ORDER BY customer_key
