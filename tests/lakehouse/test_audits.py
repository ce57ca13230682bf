"""Behaviour of the audit checks against small in-memory DuckDB tables."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterator
from decimal import Decimal

import duckdb
import pytest

from lakehouse import audits as checks
from lakehouse.audits import Check, CheckResult, failing_rows_sql, run_checks
from lakehouse.errors import SluiceError


@pytest.fixture
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect(":memory:")
    connection.execute(
        """
        CREATE TABLE orders (
            order_id INTEGER, line_no INTEGER, status VARCHAR, customer_id INTEGER,
            amount DECIMAL(10, 2)
        )
        """
    )
    connection.execute(
        """
        INSERT INTO orders VALUES
            (1, 1, 'placed', 10, 5.00),
            (1, 2, 'shipped', 10, 7.50),
            (2, 1, 'shipped', 20, 1.25),
            (3, 1, 'placed', NULL, 3.00)
        """
    )
    yield connection
    connection.close()


def run_one(con: duckdb.DuckDBPyConnection, check: Check, relation: str = "orders") -> CheckResult:
    [result] = run_checks(con, relation, [check])
    return result


def assert_passes(con: duckdb.DuckDBPyConnection, check: Check, relation: str = "orders") -> None:
    result = run_one(con, check, relation)
    assert result.error is None
    assert result.passed, result
    assert result.failing_rows == 0
    assert result.samples == []
    assert not result.blocking


# --- not_null ---------------------------------------------------------------------------------


def test_not_null_passes_and_fails(con: duckdb.DuckDBPyConnection) -> None:
    assert_passes(con, checks.not_null("order_id", "status"))

    result = run_one(con, checks.not_null("order_id", "customer_id"))
    assert result.name == "not_null(order_id, customer_id)"
    assert not result.passed and result.blocking
    assert result.failing_rows == 1
    assert result.samples == [
        {"order_id": 3, "line_no": 1, "status": "placed", "customer_id": None, "amount": "3.00"}
    ]


def test_not_null_requires_a_column() -> None:
    with pytest.raises(SluiceError):
        checks.not_null()


# --- unique -----------------------------------------------------------------------------------


def test_unique_reports_one_row_per_duplicated_key(con: duckdb.DuckDBPyConnection) -> None:
    assert_passes(con, checks.unique("order_id", "line_no"))
    con.execute("INSERT INTO orders VALUES (2, 1, 'placed', 20, 1.00), (2, 1, 'placed', 20, 2.0)")

    result = run_one(con, checks.unique("order_id", "line_no"))
    assert result.name == "unique(order_id, line_no)"
    assert result.failing_rows == 1
    assert result.samples == [{"order_id": 2, "line_no": 1, "n": 3}]

    by_order = run_one(con, checks.unique("order_id"))
    assert by_order.failing_rows == 2  # keys 1 and 2
    assert sorted((s["order_id"], s["n"]) for s in by_order.samples) == [(1, 2), (2, 3)]


def test_unique_ignores_null_keys(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("INSERT INTO orders VALUES (NULL, 1, 'placed', 1, 1), (NULL, 1, 'placed', 1, 1)")
    assert_passes(con, checks.unique("order_id", "line_no"))


def test_unique_count_column_does_not_clash_with_a_key_named_n() -> None:
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT * FROM (VALUES (1), (1)) AS v(n)")
    result = run_one(con, checks.unique("n"), "t")
    assert result.failing_rows == 1
    assert result.samples == [{"n": 1, "n_": 2}]


def test_unique_treats_keys_as_grouping_does() -> None:
    """Signed zeros and NaNs of a float key are one key each (as GROUP BY has them); so are
    equal strings, whatever hashes or collisions the pass/fail shortcut meets."""
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE t AS SELECT * FROM (VALUES (0.0::DOUBLE, 'a'), (-0.0::DOUBLE, 'b'), "
        "('nan'::DOUBLE, 'c'), (-'nan'::DOUBLE, 'd'), (1.5::DOUBLE, 'a')) AS v(x, s)"
    )
    result = run_one(con, checks.unique("x"), "t")
    assert result.failing_rows == 2  # 0.0 and NaN, each twice
    assert run_one(con, checks.unique("s"), "t").failing_rows == 1
    assert_passes(con, checks.unique("x", "s"), "t")


# --- accepted_values --------------------------------------------------------------------------


def test_accepted_values(con: duckdb.DuckDBPyConnection) -> None:
    check = checks.accepted_values("status", ["placed", "shipped"])
    assert check.name == "accepted_values(status, ['placed', 'shipped'])"
    assert_passes(con, check)

    con.execute("INSERT INTO orders VALUES (4, 1, 'lost', 10, 1), (5, 1, NULL, 10, 1)")
    result = run_one(con, checks.accepted_values("status", ["placed", "shipped"]))
    assert result.failing_rows == 1  # NULL is not a violation
    assert [s["status"] for s in result.samples] == ["lost"]


def test_accepted_values_binds_values_containing_quotes(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE TABLE people (name VARCHAR)")
    con.execute("INSERT INTO people VALUES ('o''brien'), ('smith')")
    check = checks.accepted_values("name", ["o'brien", "smith"])
    sql_text, params = failing_rows_sql(check, "people")
    assert "brien" not in sql_text
    assert params == [["o'brien", "smith"]]
    assert_passes(con, check, "people")

    result = run_one(con, checks.accepted_values("name", ["o'brien"]), "people")
    assert result.failing_rows == 1
    assert result.samples == [{"name": "smith"}]


def test_accepted_values_injection_is_inert(con: duckdb.DuckDBPyConnection) -> None:
    evil = "x'); DROP TABLE orders; --"
    result = run_one(con, checks.accepted_values("status", [evil]))
    assert result.error is None
    assert result.failing_rows == 4
    assert con.execute("SELECT count(*) FROM orders").fetchone() == (4,)


def test_accepted_values_numbers_and_text_form(con: duckdb.DuckDBPyConnection) -> None:
    assert_passes(con, checks.accepted_values("line_no", [1, 2]))
    assert run_one(con, checks.accepted_values("line_no", [1])).failing_rows == 1
    con.execute("CREATE TABLE days AS SELECT DATE '2024-01-01' AS d")
    assert_passes(con, checks.accepted_values("d", ["2024-01-01"]), "days")


@pytest.mark.parametrize(
    "values", ["placed", [], ["a", 1], [None], [dt.date(2024, 1, 1)], [float("nan")]]
)
def test_accepted_values_rejects_bad_value_lists(values: object) -> None:
    with pytest.raises(SluiceError):
        checks.accepted_values("status", values)  # type: ignore[arg-type]


# --- quoting ----------------------------------------------------------------------------------


def test_identifiers_with_spaces_and_mixed_case_are_quoted() -> None:
    con = duckdb.connect()
    con.execute('CREATE SCHEMA "Silver Layer"')
    con.execute('CREATE TABLE "Silver Layer"."Orders" ("Order Id" INTEGER, "Status" VARCHAR)')
    con.execute("""INSERT INTO "Silver Layer"."Orders" VALUES (1, 'ok'), (1, NULL)""")
    relation = "Silver Layer.Orders"

    assert run_one(con, checks.not_null("Order Id"), relation).passed
    failing = run_one(con, checks.not_null("Status"), relation)
    assert failing.failing_rows == 1
    assert failing.samples == [{"Order Id": 1, "Status": None}]
    assert run_one(con, checks.unique("Order Id"), relation).samples == [{"Order Id": 1, "n": 2}]
    assert run_one(con, checks.accepted_values("Status", ["ok"]), relation).passed


def test_identifier_with_double_quote_cannot_break_out() -> None:
    sql_text, _ = failing_rows_sql(checks.not_null('a" IS NULL OR 1=1 --'), "t")
    assert sql_text == 'SELECT * FROM "t" WHERE "a"" IS NULL OR 1=1 --" IS NULL'


# --- row_count --------------------------------------------------------------------------------


def test_row_count_bounds(con: duckdb.DuckDBPyConnection) -> None:
    assert checks.row_count(min=1).name == "row_count(min=1)"
    assert_passes(con, checks.row_count(min=1))
    assert_passes(con, checks.row_count(min=4, max=4))
    assert_passes(con, checks.row_count(max=10))

    too_few = run_one(con, checks.row_count(min=5))
    assert too_few.failing_rows == 1
    assert too_few.samples == [{"row_count": 4}]
    assert run_one(con, checks.row_count(max=3)).samples == [{"row_count": 4}]

    con.execute("DELETE FROM orders")
    assert run_one(con, checks.row_count(min=1)).samples == [{"row_count": 0}]


@pytest.mark.parametrize(
    "kwargs", [{}, {"min": -1}, {"min": 3, "max": 2}, {"min": 1.5}, {"max": True}]
)
def test_row_count_rejects_bad_bounds(kwargs: dict[str, object]) -> None:
    with pytest.raises(SluiceError):
        checks.row_count(**kwargs)  # type: ignore[arg-type]


# --- expression -------------------------------------------------------------------------------


def test_expression(con: duckdb.DuckDBPyConnection) -> None:
    assert_passes(con, checks.expression("amount > 0"))

    result = run_one(con, checks.expression("amount >= 3 AND customer_id IS NOT NULL"))
    # 1.25 is too small; the NULL customer makes the predicate NULL, which also fails.
    assert result.failing_rows == 2
    assert sorted(s["order_id"] for s in result.samples) == [2, 3]


def test_expression_that_does_not_parse_reports_position() -> None:
    with pytest.raises(SluiceError) as info:
        checks.expression("amount >\n   AND status = 'x'")
    message = str(info.value)
    assert "line 2" in message and "column" in message


def test_expression_rejects_a_second_statement() -> None:
    with pytest.raises(SluiceError, match="line 1, column"):
        checks.expression("amount > 0; DROP TABLE orders")


# --- relationships ----------------------------------------------------------------------------


def test_relationships_against_schema_qualified_table(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE SCHEMA gold")
    con.execute("CREATE TABLE gold.dim_customer (customer_id INTEGER, id INTEGER)")
    con.execute("INSERT INTO gold.dim_customer VALUES (10, 10), (20, 99)")

    check = checks.relationships("customer_id", to="gold.dim_customer")
    assert check.references == ("gold.dim_customer",)
    assert_passes(con, check)  # the NULL customer_id is not a violation

    other_field = run_one(con, checks.relationships("customer_id", "gold.dim_customer", "id"))
    assert other_field.failing_rows == 1
    assert [s["order_id"] for s in other_field.samples] == [2]
    assert set(other_field.samples[0]) == {
        "order_id",
        "line_no",
        "status",
        "customer_id",
        "amount",
    }


def test_relationships_needs_layer_and_asset() -> None:
    with pytest.raises(SluiceError):
        checks.relationships("customer_id", to="dim_customer")


# --- freshness --------------------------------------------------------------------------------


def test_freshness() -> None:
    con = duckdb.connect()
    con.execute("CREATE TABLE events (seen_at TIMESTAMPTZ, naive TIMESTAMP)")
    con.execute(
        "INSERT INTO events VALUES (now() - INTERVAL 2 HOUR, "
        "(now() - INTERVAL 2 HOUR) AT TIME ZONE 'UTC')"
    )
    assert checks.freshness("seen_at", "24h").name == "freshness(seen_at, max_age=24h)"
    assert_passes(con, checks.freshness("seen_at", "3h"), "events")
    assert_passes(con, checks.freshness("naive", dt.timedelta(hours=3)), "events")
    assert_passes(con, checks.freshness("seen_at", 3 * 3600), "events")

    stale = run_one(con, checks.freshness("seen_at", "30m"), "events")
    assert stale.failing_rows == 1
    assert list(stale.samples[0]) == ["latest"]
    assert run_one(con, checks.freshness("naive", "1h"), "events").failing_rows == 1

    con.execute("DELETE FROM events")
    empty = run_one(con, checks.freshness("seen_at", "2d"), "events")
    assert empty.samples == [{"latest": None}]


def test_freshness_age_forms() -> None:
    assert dict(checks.freshness("c", "1h30m").params)["max_age_seconds"] == 5400.0
    assert dict(checks.freshness("c", dt.timedelta(days=2)).params)["max_age_seconds"] == 172800.0
    for bad in ("soon", "", "-1h", 0, -5, True):
        with pytest.raises(SluiceError):
            checks.freshness("c", bad)


# --- sql --------------------------------------------------------------------------------------


def test_sql_check_uses_this(con: duckdb.DuckDBPyConnection) -> None:
    good = checks.sql("SELECT order_id, sum(amount) AS total FROM this GROUP BY 1 HAVING total < 0")
    assert good.name.startswith("sql(")
    assert_passes(con, good)

    bad = checks.sql(
        "WITH per_order AS (SELECT order_id, count(*) AS lines FROM this GROUP BY 1) "
        "SELECT * FROM per_order WHERE lines > 1"
    )
    result = run_one(con, bad)
    assert result.failing_rows == 1
    assert result.samples == [{"order_id": 1, "lines": 2}]


def test_sql_check_leaves_nothing_on_the_connection(con: duckdb.DuckDBPyConnection) -> None:
    run_one(con, checks.sql("SELECT * FROM this"))
    with pytest.raises(duckdb.Error):
        con.execute("SELECT * FROM this")


def test_sql_check_over_a_relation_named_this(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE TEMP VIEW this AS SELECT * FROM orders")
    assert run_one(con, checks.sql("SELECT * FROM this WHERE amount > 5"), "this").failing_rows == 1


@pytest.mark.parametrize("query", ["SELECT * FROM", "DROP TABLE orders", "SELECT 1; SELECT 2"])
def test_sql_check_rejects_bad_queries(query: str) -> None:
    with pytest.raises(SluiceError):
        checks.sql(query)


def test_sql_parse_error_mentions_position() -> None:
    with pytest.raises(SluiceError, match=r"line 1, column \d+"):
        checks.sql("SELECT * FROM this WHERE")


# --- severity, errors, samples ----------------------------------------------------------------


def test_warn_severity_fails_without_blocking(con: duckdb.DuckDBPyConnection) -> None:
    result = run_one(con, checks.not_null("customer_id", severity="warn"))
    assert result.severity == "warn"
    assert not result.passed
    assert not result.blocking


def test_invalid_severity_is_rejected() -> None:
    with pytest.raises(SluiceError):
        checks.unique("order_id", severity="fatal")  # type: ignore[arg-type]


def test_broken_check_becomes_a_failed_result(con: duckdb.DuckDBPyConnection) -> None:
    results = run_checks(
        con,
        "orders",
        [
            checks.not_null("no_such_column"),
            checks.expression("no_such_column > 1", severity="warn"),
            checks.relationships("customer_id", "gold.missing"),
            Check(kind="mystery", name="mystery()"),
            checks.not_null("order_id"),
        ],
    )
    assert [r.passed for r in results] == [False, False, False, False, True]
    for result in results[:4]:
        assert result.error is not None
        assert result.name in result.error
        assert result.failing_rows == 0 and result.samples == []
    assert "no_such_column" in (results[0].error or "")
    assert [r.blocking for r in results] == [True, False, True, True, False]


def test_missing_relation_is_a_failed_result(con: duckdb.DuckDBPyConnection) -> None:
    [result] = run_checks(con, "silver.nope", [checks.row_count(min=1)])
    assert result.blocking and result.error is not None


def test_samples_are_limited_and_json_safe() -> None:
    con = duckdb.connect()
    con.execute(
        """
        CREATE TABLE t AS SELECT
            i, DATE '2024-01-02' AS d, TIMESTAMP '2024-01-02 03:04:05' AS ts,
            1.50::DECIMAL(4, 2) AS m, '\\x01\\xff'::BLOB AS b, [1, 2] AS l,
            {'k': DATE '2024-01-01'} AS s, INTERVAL 1 DAY AS iv, 'nan'::DOUBLE AS f,
            TIMESTAMPTZ '2024-01-02 03:04:05+00' AS tz, MAP {'a': 1} AS mp
        FROM range(10) AS r(i)
        """
    )
    [result] = run_checks(con, "t", [checks.expression("i < 0")], sample_size=3)
    assert result.failing_rows == 10
    assert len(result.samples) == 3
    sample = result.samples[0]
    assert sample["d"] == "2024-01-02"
    assert sample["ts"] == "2024-01-02T03:04:05"
    assert sample["m"] == str(Decimal("1.50"))
    assert sample["b"] == "01ff"
    assert sample["l"] == [1, 2]
    assert sample["s"] == {"k": "2024-01-01"}
    assert sample["iv"] == {"months": 0, "days": 1, "nanoseconds": 0}
    assert sample["tz"].startswith("2024-01-02T03:04:05")
    assert sample["f"] == "nan"
    assert sample["mp"] == [["a", 1]]
    json.dumps(dataclasses.asdict(result), allow_nan=False)

    [none] = run_checks(con, "t", [checks.expression("i < 0")], sample_size=0)
    assert none.failing_rows == 10 and none.samples == []


def test_values_python_cannot_represent_are_sampled_as_text() -> None:
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT 'infinity'::TIMESTAMP AS ts, 7 AS i, NULL::INT AS a")
    [result] = run_checks(con, "t", [checks.not_null("a")])
    assert result.error is None and result.failing_rows == 1
    assert result.samples == [{"ts": "infinity", "i": "7", "a": None}]


def test_malformed_check_params_become_a_failed_result(con: duckdb.DuckDBPyConnection) -> None:
    malformed = [
        Check(kind="not_null", name="a", params=(("columns", "order_id"),)),
        Check(kind="row_count", name="b", params=(("min", "1"),)),
        Check(kind="accepted_values", name="c", params=(("column", "status"),)),
        Check(kind="expression", name="d", params=(("predicate", "amount >"),)),
    ]
    results = run_checks(con, "orders", malformed)
    assert all(r.blocking and r.error for r in results)


def test_check_result_is_frozen(con: duckdb.DuckDBPyConnection) -> None:
    result = run_one(con, checks.not_null("order_id"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.passed = False  # type: ignore[misc]


def test_checks_are_hashable_plain_data() -> None:
    built = [
        checks.not_null("a"),
        checks.unique("a", "b"),
        checks.accepted_values("a", ["x"]),
        checks.row_count(min=1),
        checks.expression("a > 1"),
        checks.relationships("a", "gold.t"),
        checks.freshness("a", "1d"),
        checks.sql("SELECT * FROM this"),
    ]
    assert len(set(built)) == len(built)
    json.dumps([dict(c.params) for c in built])
