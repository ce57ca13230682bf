"""Built-in checks (audits), for `from orchestrator import checks`.

Each builder returns a `Check` that runs as a DuckDB query over the branch being audited;
`severity="error"` (the default) blocks the publish, `"warn"` is recorded only.
"""

from lakehouse.audits import Check as Check
from lakehouse.audits import CheckResult as CheckResult
from lakehouse.audits import accepted_values as accepted_values
from lakehouse.audits import expression as expression
from lakehouse.audits import freshness as freshness
from lakehouse.audits import not_null as not_null
from lakehouse.audits import relationships as relationships
from lakehouse.audits import row_count as row_count
from lakehouse.audits import sql as sql
from lakehouse.audits import unique as unique

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
