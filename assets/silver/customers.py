"""Silver customers: the latest version of each customer, with PII masked."""

from __future__ import annotations

import duckdb

from assets.silver import query_version
from orchestrator import AssetContext, asset, checks

COUNTRIES = ["AT", "BE", "DE", "DK", "ES", "FR", "IT", "NL", "PL", "SE"]

# `customer_key` is a stable surrogate key: 60 bits of the MD5 of the natural key, the same on
# every run and machine and independent of load order. E-mail addresses survive only as a
# SHA-256 of the normalized address (a join key for marketing, not readable) and as
# `***@domain`; names are dropped.
CUSTOMERS_SQL = """
WITH latest AS (
    SELECT *
    FROM raw_customers
    WHERE NULLIF(trim(customer_id), '') IS NOT NULL
    QUALIFY row_number() OVER (PARTITION BY trim(customer_id) ORDER BY updated_at DESC) = 1
),
normalized AS (
    SELECT
        trim(customer_id) AS customer_id,
        NULLIF(lower(trim(email)), '') AS email,
        upper(trim(country)) AS country,
        TRY_CAST(signup_date AS DATE) AS signup_date,
        updated_at
    FROM latest
)
SELECT
    customer_id,
    CAST(('0x' || left(md5(customer_id), 15)) AS BIGINT) AS customer_key,
    sha256(email) AS email_hash,
    '***@' || split_part(email, '@', 2) AS email_masked,
    split_part(email, '@', 2) AS email_domain,
    country,
    signup_date,
    updated_at
FROM normalized
ORDER BY customer_id
"""


@asset(
    layer="silver",
    checks=[
        checks.not_null("customer_id", "customer_key", "email_hash"),
        checks.unique("customer_id"),
        checks.unique("customer_key"),
        # No readable address survives: masked values are exactly `***@domain`, hashes are hex.
        checks.sql(
            r"SELECT * FROM this"
            r" WHERE NOT regexp_full_match(email_masked, '\*\*\*@[a-z0-9.-]+\.[a-z]{2,}')"
            r" OR NOT regexp_full_match(email_hash, '[0-9a-f]{64}')"
        ),
        # A new market is worth a look, not a blocked publish.
        checks.accepted_values("country", COUNTRIES, severity="warn"),
        checks.row_count(min=1),
    ],
    code_version=query_version(CUSTOMERS_SQL),
    tags=["customers", "pii-masked"],
)
def customers(ctx: AssetContext, raw_customers: duckdb.DuckDBPyRelation) -> duckdb.DuckDBPyRelation:
    """One row per customer, latest version wins; e-mail hashed and masked, names dropped."""
    return ctx.sql(CUSTOMERS_SQL)
