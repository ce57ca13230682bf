-- description: Date dimension: one row per calendar day from the first to the last order date.
-- tags: star, calendar
-- checks: not_null(date_key); unique(date_key); unique(calendar_date); expression(day_of_week BETWEEN 1 AND 7); row_count(min=1)
WITH bounds AS (
    SELECT CAST(min(order_ts) AS DATE) AS first_day, CAST(max(order_ts) AS DATE) AS last_day
    FROM silver.orders
),
days AS (
    SELECT CAST(unnest(generate_series(first_day, last_day, INTERVAL 1 DAY)) AS DATE)
        AS calendar_date
    FROM bounds
)
SELECT
    CAST(year(calendar_date) * 10000 + month(calendar_date) * 100 + day(calendar_date) AS INTEGER)
        AS date_key,
    calendar_date,
    CAST(year(calendar_date) AS INTEGER) AS year,
    CAST(quarter(calendar_date) AS INTEGER) AS quarter,
    CAST(month(calendar_date) AS INTEGER) AS month,
    strftime(calendar_date, '%B') AS month_name,
    CAST(day(calendar_date) AS INTEGER) AS day_of_month,
    CAST(isodow(calendar_date) AS INTEGER) AS day_of_week,
    strftime(calendar_date, '%A') AS day_name,
    CAST(weekofyear(calendar_date) AS INTEGER) AS iso_week,
    isodow(calendar_date) >= 6 AS is_weekend
FROM days
ORDER BY date_key
