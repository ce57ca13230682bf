"""Checks (audits) as DuckDB SQL that returns the offending rows.

A check is plain data (`Check`): a kind plus JSON-able parameters. `failing_rows_sql` turns it
into one DuckDB query whose rows are the violations, so "passed" simply means "no rows".
Guarantees that the rest of Sluice relies on:

* user *values* (accepted values, bounds, ages) are always bound parameters, never SQL text;
* identifiers (columns, schemas, tables) are always quoted through sqlglot;
* user *SQL* (`expression`, `sql`) is parsed by sqlglot when the check is built, so a typo
  fails at definition time with a position, and only the regenerated SQL is ever run;
* `run_checks` never raises for a check that cannot run: it returns a failed, blocking result,
  because a broken audit must stop a publish, not crash the run;
* `failing_counts_by_group` counts, for many groups of rows at once (the partitions of a ranged
  write), exactly what `run_checks` would count on each group alone, or declines a check.

sqlglot is imported only where SQL is parsed or generated: defining checks (as `sluice plan`
does) must not pay for importing it.

The code lives in layered modules, re-exported here (import from this module):
`check_model` (`Check`, `CheckResult`), `check_arguments` and `check_parsing` (validation and
sqlglot parsing), `check_builders` (the constructors), `check_sql` (`failing_rows_sql`),
`check_runner` (`run_checks`) and `check_groups` (`failing_counts_by_group`).
"""

from lakehouse.check_builders import accepted_values as accepted_values
from lakehouse.check_builders import expression as expression
from lakehouse.check_builders import freshness as freshness
from lakehouse.check_builders import not_null as not_null
from lakehouse.check_builders import relationships as relationships
from lakehouse.check_builders import row_count as row_count
from lakehouse.check_builders import sql as sql
from lakehouse.check_builders import unique as unique
from lakehouse.check_groups import failing_counts_by_group as failing_counts_by_group
from lakehouse.check_model import Check as Check
from lakehouse.check_model import CheckResult as CheckResult
from lakehouse.check_model import Severity as Severity
from lakehouse.check_runner import run_checks as run_checks
from lakehouse.check_sql import failing_rows_sql as failing_rows_sql
from lakehouse.errors import SluiceError as SluiceError
