"""Built-in checks (audits), for `from orchestrator import checks`.

Each builder returns a `Check` that runs as a DuckDB query over the branch being audited;
`severity="error"` (the default) blocks the publish, `"warn"` is recorded only.

`expression` and `sql` parse their SQL when the check is built, so a typo fails at definition
time. While a project loads, the check built from a text is remembered (see
`orchestrator.sql_assets.QueryCache`): loading an unchanged project parses none of it again.
"""

from lakehouse import audits
from lakehouse.audits import Check as Check
from lakehouse.audits import CheckResult as CheckResult
from lakehouse.audits import Severity
from lakehouse.audits import accepted_values as accepted_values
from lakehouse.audits import freshness as freshness
from lakehouse.audits import not_null as not_null
from lakehouse.audits import relationships as relationships
from lakehouse.audits import row_count as row_count
from lakehouse.audits import unique as unique
from orchestrator.sql_assets import remembered_check

__all__ = [
    "Check",
    "CheckResult",
    "accepted_values",
    "expression",
    "freshness",
    "not_null",
    "relationships",
    "row_count",
    "sql",
    "unique",
]


def expression(sql_predicate: str, *, severity: Severity = "error") -> Check:
    """Every row satisfies `sql_predicate`; rows where it is false or NULL fail.

    The predicate is parsed now (DuckDB dialect) and must be a single expression, so a typo or
    a smuggled second statement is rejected with its position before anything runs.
    """
    return remembered_check("expression", sql_predicate, severity, audits.expression)


def sql(query: str, *, severity: Severity = "error") -> Check:
    """A custom audit: the rows returned by `query` are the failing rows.

    Inside the query the audited data is available as `this`. The query is parsed now and must
    be exactly one read-only query (SELECT, set operation, ...).
    """
    return remembered_check("sql", query, severity, audits.sql)
