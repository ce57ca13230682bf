"""Counting checks for many groups of rows at once (`failing_counts_by_group`), and
`run_checks` with counts already known: the same results as checking each group alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from lakehouse import audits
from lakehouse.audits import Check, failing_counts_by_group, run_checks

GROUPS = 4
ROWS = pa.table(
    {
        "g": pa.array([0, 0, 0, 1, 1, 1, 1, 3], pa.int32()),  # group 2 has no rows
        "id": pa.array([1, 2, 3, 1, 1, None, 7, 1], pa.int64()),
        "kind": ["a", "b", "a", "a", "x", "b", "7", "b"],
        "at": pa.array([datetime(2024, 1, d) for d in (1, 2, 3, 1, 2, 3, 4, 5)]),
    }
)
GROUPED_EXACTLY: tuple[Check, ...] = (
    audits.not_null("id"),
    audits.not_null("id", "kind"),
    audits.unique("id"),
    audits.unique("id", "kind"),
    audits.accepted_values("kind", ["a", "b"]),
    audits.accepted_values("id", [1, 2, 3]),
    audits.row_count(min=1, max=3),
    audits.row_count(max=0),
    audits.expression("id < 3"),
    audits.expression("upper(kind) = 'A' OR id IS NULL"),
    audits.freshness("at", "36500d"),
    audits.freshness("at", "1s"),
)


@pytest.fixture
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect()
    con.register("rows_arrow", ROWS)
    con.execute("CREATE VIEW grouped AS SELECT * FROM rows_arrow")
    yield con
    con.close()


def alone(con: duckdb.DuckDBPyConnection, checks: tuple[Check, ...]) -> list[list[int | None]]:
    """Each check's failing-row count per group, checking each group on its own."""
    per_group = []
    for group in range(GROUPS):
        con.execute(
            f"CREATE OR REPLACE VIEW this AS SELECT * EXCLUDE (g) FROM grouped WHERE g = {group}"
        )
        per_group.append(
            [None if r.error else r.failing_rows for r in run_checks(con, "this", checks)]
        )
    return [list(counts) for counts in zip(*per_group, strict=True)]


def test_counts_per_group_equal_checking_each_group_alone(con: duckdb.DuckDBPyConnection) -> None:
    counts = failing_counts_by_group(con, "grouped", GROUPED_EXACTLY, group_column="g", groups=4)
    assert counts == alone(con, GROUPED_EXACTLY)
    assert all(c is not None for c in counts)
    # Not vacuous: failures in some groups, none in others, and the empty group.
    assert counts[2] == [0, 1, 0, 0]  # unique(id): a duplicate in group 1 only
    assert counts[6] == [0, 1, 1, 0]  # row_count(min=1, max=3): 4 rows, no rows
    assert counts[10] == [0, 0, 1, 0]  # freshness: the empty group has no newest value


def test_checks_that_cannot_be_grouped_exactly_are_declined(
    con: duckdb.DuckDBPyConnection,
) -> None:
    declined = (
        audits.sql("SELECT * FROM this WHERE id > 1"),
        audits.relationships("id", to="other.table"),
        audits.expression("id < (SELECT max(id) FROM this)"),
        audits.expression("id > avg(id) OVER ()"),
        audits.expression("grouped.id > 0"),
        audits.not_null("g"),  # the group column: not a column of any group
        audits.unique("G"),
        audits.expression("g > 0"),
        audits.freshness("g", "1d"),
        audits.not_null("no_such_column"),  # fails on every group: per group it errors
        Check(kind="row_count", name="broken", params=(("min", "1"),)),
    )
    counted = audits.not_null("id")
    counts = failing_counts_by_group(
        con, "grouped", (*declined, counted), group_column="g", groups=GROUPS
    )
    assert counts == [None] * len(declined) + [[0, 1, 0, 0]]


def test_a_check_failing_at_run_time_is_declined_and_the_others_still_count(
    con: duckdb.DuckDBPyConnection,
) -> None:
    checks = (
        audits.not_null("id"),
        audits.expression("CAST(kind AS INTEGER) > 0"),  # 'a' is no integer
        audits.accepted_values("kind", ["a", "b"]),
    )
    counts = failing_counts_by_group(con, "grouped", checks, group_column="g", groups=GROUPS)
    assert counts == [[0, 1, 0, 0], None, [0, 2, 0, 0]]


def test_run_checks_with_known_counts_gives_the_same_results(
    con: duckdb.DuckDBPyConnection,
) -> None:
    con.execute("CREATE VIEW this AS SELECT * EXCLUDE (g) FROM grouped WHERE g = 1")
    checks = (*GROUPED_EXACTLY, audits.sql("SELECT * FROM this WHERE id = 7"))
    counted = run_checks(con, "this", checks)
    known = [r.failing_rows for r in counted[:-1]] + [None]
    assert run_checks(con, "this", checks, failing=known) == counted
    assert any(not r.passed and r.samples for r in counted)


def test_a_known_pass_runs_no_query(con: duckdb.DuckDBPyConnection) -> None:
    [result] = run_checks(con, "no_such_view", [audits.unique("id")], failing=[0])
    assert (result.passed, result.failing_rows, result.samples, result.error) == (
        True,
        0,
        [],
        None,
    )
    [failed] = run_checks(con, "no_such_view", [audits.unique("id")], failing=[None])
    assert failed.error is not None and "no_such_view" in failed.error


def test_known_counts_must_match_the_checks(con: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(audits.SluiceError, match="2 known failing counts for 1 checks"):
        run_checks(con, "grouped", [audits.not_null("id")], failing=[0, 0])


def test_defining_checks_does_not_import_sqlglot() -> None:
    """`sluice plan` imports the check builders; sqlglot is imported only to parse SQL."""
    code = (
        "import json, sys\n"
        "from lakehouse import audits\n"
        "audits.not_null('a'); audits.unique('a', 'b'); audits.accepted_values('k', ['x'])\n"
        "audits.row_count(min=1); audits.freshness('t', '1d'); audits.relationships('a', 'l.b')\n"
        "before = 'sqlglot' in sys.modules\n"
        "audits.expression('a > 1')\n"
        "print(json.dumps([before, 'sqlglot' in sys.modules]))\n"
    )
    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(repo)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(out) == [False, True]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: audits.expression("a >"), "cannot parse expression 'a >'"),
        (lambda: audits.expression(""), "expression: the predicate must be non-empty SQL"),
        (lambda: audits.expression(42), "expression: the predicate must be non-empty SQL"),  # type: ignore[arg-type]
        (lambda: audits.sql("SELECT 1; SELECT 2"), "sql: expected exactly one query, got 2"),
        (lambda: audits.sql("DELETE FROM t"), "sql: the audit must be a read-only query"),
        (lambda: audits.sql("SELECT 'unterminated"), "cannot parse sql query"),
    ],
)
def test_sql_errors_still_name_the_check_and_the_text(build: object, message: str) -> None:
    with pytest.raises(audits.SluiceError, match=message.replace("(", r"\(")):
        build()  # type: ignore[operator]
