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
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import math
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import duckdb

from lakehouse.errors import SluiceError

if TYPE_CHECKING:
    from sqlglot import exp
    from sqlglot.errors import ParseError, TokenError

Severity = Literal["error", "warn"]

_DIALECT = "duckdb"


@dataclass(frozen=True)
class Check:
    """One audit. `kind` selects the SQL; `params` holds its arguments (plain JSON-able data)."""

    kind: str
    name: str
    params: tuple[tuple[str, Any], ...] = ()
    severity: Severity = "error"
    references: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check on one relation; JSON-safe so it can be logged and stored
    (`dataclasses.asdict`). A plain dataclass: defining checks must not import pydantic."""

    name: str
    kind: str
    severity: Severity
    passed: bool
    failing_rows: int
    samples: list[dict[str, Any]]
    error: str | None = None

    @property
    def blocking(self) -> bool:
        """True when this result must prevent the publish (a failed check of severity error)."""
        return not self.passed and self.severity == "error"


# --------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------


def not_null(*cols: str, severity: Severity = "error") -> Check:
    """Every row has a value in each of `cols`; failing rows are those with any NULL."""
    columns = _columns(cols, "not_null")
    return Check(
        kind="not_null",
        name=f"not_null({', '.join(columns)})",
        params=(("columns", columns),),
        severity=_severity(severity),
    )


def unique(*cols: str, severity: Severity = "error") -> Check:
    """The key `cols` identifies at most one row.

    Failing rows: one per duplicated key tuple, with the key columns and `n` (its row count).
    Rows with a NULL in any key column are ignored, as in dbt.
    """
    columns = _columns(cols, "unique")
    return Check(
        kind="unique",
        name=f"unique({', '.join(columns)})",
        params=(("columns", columns),),
        severity=_severity(severity),
    )


def accepted_values(col: str, values: Iterable[Any], *, severity: Severity = "error") -> Check:
    """Every non-NULL value of `col` is one of `values` (bound as a list parameter).

    With string values the column is compared in its text form (so it also works for ENUM or
    DATE columns); with numbers or booleans it is compared natively.
    """
    column = _column(col, "accepted_values")
    if isinstance(values, str | bytes):
        raise SluiceError(
            f"accepted_values({column}): values must be a list of values, not a single string"
        )
    vals = tuple(values)
    if not vals:
        raise SluiceError(f"accepted_values({column}): at least one accepted value is required")
    _value_kind(vals, column)
    return Check(
        kind="accepted_values",
        name=f"accepted_values({column}, {list(vals)!r})",
        params=(("column", column), ("values", vals)),
        severity=_severity(severity),
    )


def row_count(
    min: int | None = None,
    max: int | None = None,
    *,
    severity: Severity = "error",
) -> Check:
    """The relation has between `min` and `max` rows (inclusive; either bound may be omitted).

    The failing "row" is a single row with column `row_count` when the count is out of range.
    """
    if min is None and max is None:
        raise SluiceError("row_count: give at least one of min= or max=")
    for label, bound in (("min", min), ("max", max)):
        if bound is not None and (not isinstance(bound, int) or isinstance(bound, bool)):
            raise SluiceError(f"row_count: {label} must be an integer, got {bound!r}")
        if bound is not None and bound < 0:
            raise SluiceError(f"row_count: {label} must not be negative, got {bound}")
    if min is not None and max is not None and min > max:
        raise SluiceError(f"row_count: min ({min}) is greater than max ({max})")
    shown = ", ".join(f"{k}={v}" for k, v in (("min", min), ("max", max)) if v is not None)
    return Check(
        kind="row_count",
        name=f"row_count({shown})",
        params=(("min", min), ("max", max)),
        severity=_severity(severity),
    )


def expression(sql_predicate: str, *, severity: Severity = "error") -> Check:
    """Every row satisfies `sql_predicate`; rows where it is false or NULL fail.

    The predicate is parsed now (DuckDB dialect) and must be a single expression, so a typo or
    a smuggled second statement is rejected with its position before anything runs.
    """
    predicate = _normalized_predicate(sql_predicate)
    return Check(
        kind="expression",
        name=f"expression({_shorten(predicate, 60)})",
        params=(("predicate", predicate),),
        severity=_severity(severity),
    )


def relationships(
    col: str, to: str, field: str | None = None, *, severity: Severity = "error"
) -> Check:
    """Every non-NULL `col` has a match in `to` ("layer.asset") on `field` (default: `col`).

    `to` is recorded in `references` so the orchestrator can order and expose the dependency;
    in SQL it is the two-part name `layer.asset`, which the caller must make resolvable.
    """
    column = _column(col, "relationships")
    target = _layer_asset(to)
    target_field = column if field is None else _column(field, "relationships")
    return Check(
        kind="relationships",
        name=f"relationships({column} -> {target}.{target_field})",
        params=(("column", column), ("to", target), ("field", target_field)),
        severity=_severity(severity),
        references=(target,),
    )


def freshness(
    col: str, max_age: dt.timedelta | float | str, *, severity: Severity = "error"
) -> Check:
    """The newest `col` is at most `max_age` old (timedelta, seconds, or "30m"/"24h"/"2d").

    Fails with one row (`latest`) when the maximum is NULL (including an empty relation) or too
    old. Naive timestamps are taken as UTC; dates count from midnight UTC.
    """
    column = _column(col, "freshness")
    seconds = _age_seconds(max_age)
    shown = " ".join(max_age.split()) if isinstance(max_age, str) else _format_age(seconds)
    return Check(
        kind="freshness",
        name=f"freshness({column}, max_age={shown})",
        params=(("column", column), ("max_age_seconds", seconds)),
        severity=_severity(severity),
    )


def sql(query: str, *, severity: Severity = "error") -> Check:
    """A custom audit: the rows returned by `query` are the failing rows.

    Inside the query the audited data is available as `this`. The query is parsed now and must
    be exactly one read-only query (SELECT, set operation, ...).
    """
    regenerated = _parse_query(query).sql(dialect=_DIALECT)
    return Check(
        kind="sql",
        name=f"sql({_shorten(regenerated, 40)})",
        params=(("query", regenerated),),
        severity=_severity(severity),
    )


# --------------------------------------------------------------------------------------------
# SQL generation
# --------------------------------------------------------------------------------------------


def failing_rows_sql(check: Check, relation: str) -> tuple[str, list[Any]]:
    """DuckDB SQL returning the rows of `relation` that violate `check`, plus bound parameters.

    `relation` is a view or table name, optionally schema- (or catalog-) qualified with dots;
    each part is quoted. Raises `SluiceError` for an unknown kind or malformed parameters.
    """
    rel = _relation_sql(relation)
    kind = check.kind
    if kind in _ROW_CHECKS:
        where, values = _failing_condition(check)
        return f"SELECT * FROM {rel} WHERE {where}", values
    if kind == "unique":
        cols = _columns(_seq_param(check, "columns"), kind)
        keys = ", ".join(_ident(c) for c in cols)
        not_null_keys = " AND ".join(f"{_ident(c)} IS NOT NULL" for c in cols)
        n = _ident(_count_column(cols))
        return (
            f"SELECT {keys}, count(*) AS {n} FROM {rel} WHERE {not_null_keys} "
            f"GROUP BY {keys} HAVING count(*) > 1"
        ), []
    if kind == "row_count":
        conds: list[str] = []
        params: list[Any] = []
        for key, op in (("min", "<"), ("max", ">")):
            bound = dict(check.params).get(key)
            if bound is not None and (not isinstance(bound, int) or isinstance(bound, bool)):
                raise SluiceError(f"check {check.name}: {key} must be an integer, got {bound!r}")
            if bound is not None:
                conds.append(f'"row_count" {op} ?')
                params.append(int(bound))
        if not conds:
            raise SluiceError(f"check {check.name}: row_count needs min or max")
        return (
            f'SELECT "row_count" FROM (SELECT count(*) AS "row_count" FROM {rel}) AS "counted" '
            f"WHERE {' OR '.join(conds)}"
        ), params
    if kind == "relationships":
        col = _ident(_column(_param(check, "column"), kind))
        target = _relation_sql(_layer_asset(str(_param(check, "to"))))
        target_field = _ident(_column(_param(check, "field"), kind))
        return (
            f'SELECT "_child".* FROM {rel} AS "_child" WHERE "_child".{col} IS NOT NULL '
            f'AND NOT EXISTS (SELECT 1 FROM {target} AS "_parent" '
            f'WHERE "_parent".{target_field} = "_child".{col})'
        ), []
    if kind == "freshness":
        col = _ident(_column(_param(check, "column"), kind))
        latest = '"latest"'
        return (
            f'SELECT {latest} FROM (SELECT max({col}) AS {latest} FROM {rel}) AS "newest" '
            f"WHERE {_stale(latest)}"
        ), [_max_age_us(check)]
    if kind == "sql":
        from sqlglot import exp

        query = _parse_query(str(_param(check, "query")))
        this = exp.select("*").from_(_relation_table(relation))
        wrapped = (
            exp.select("*")
            .from_(query.subquery(exp.to_identifier("failing", quoted=True)))
            .with_(exp.to_identifier("this", quoted=True), as_=this)
        )
        return wrapped.sql(dialect=_DIALECT), []
    raise SluiceError(f"check {check.name}: unknown check kind {kind!r}")


def _stale(latest: str) -> str:
    """Whether the newest value `latest` (SQL) is missing or older than the bound max age."""
    return f"{latest} IS NULL OR epoch_us({latest}) < epoch_us(now()) - ?"


def _max_age_us(check: Check) -> int:
    return round(_age_seconds(_param(check, "max_age_seconds")) * 1_000_000)


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------


def run_checks(
    con: duckdb.DuckDBPyConnection,
    relation: str,
    checks: Sequence[Check],
    *,
    sample_size: int = 5,
    failing: Sequence[int | None] | None = None,
) -> list[CheckResult]:
    """Run `checks` over `relation` on `con`, one result per check, in order.

    `failing[i]`, when given and not None, is the failing-row count of `checks[i]` over
    `relation` already known (from `failing_counts_by_group`): that check is not counted
    again, only sampled when it failed, so its result is what counting it here would give.

    Never raises because of a check: a check whose SQL cannot be built or run becomes a failed
    result with `error` set (blocking if its severity is error). Nothing is left on `con`.
    """
    if sample_size < 0:
        raise SluiceError(f"sample_size must not be negative, got {sample_size}")
    if failing is not None and len(failing) != len(checks):
        raise SluiceError(f"{len(failing)} known failing counts for {len(checks)} checks")
    results: list[CheckResult] = []
    for number, check in enumerate(checks):
        known = failing[number] if failing is not None else None
        if known == 0:
            results.append(_result(check, 0, []))
            continue
        try:
            query, params = failing_rows_sql(check, relation)
            if known is None and check.kind == "unique" and _all_distinct(con, check, relation):
                known = 0
            if known is None:
                # fetchall, not fetchone: it completes the result, which DuckDB requires before
                # the connection runs anything else.
                count_rows = con.execute(
                    f'SELECT count(*) FROM ({query}) AS "failing_rows"', params
                ).fetchall()
                known = int(count_rows[0][0])
            samples: list[dict[str, Any]] = []
            if known and sample_size:
                samples = _fetch_samples(con, query, params, sample_size)
        except (duckdb.Error, SluiceError) as exc:
            results.append(
                CheckResult(
                    name=check.name,
                    kind=check.kind,
                    severity=check.severity,
                    passed=False,
                    failing_rows=0,
                    samples=[],
                    error=f"check {check.name} could not run on {relation}: {exc}",
                )
            )
            continue
        results.append(_result(check, known, samples))
    return results


def _all_distinct(con: duckdb.DuckDBPyConnection, check: Check, relation: str) -> bool:
    """Whether a `unique` check passes, proven by one count of distinct key hashes (cheaper
    than grouping by the key, and the common case). Keys DuckDB groups as equal have equal
    hashes (its grouping relies on it), so as many distinct hashes as rows proves every key
    distinct; a repeated key, or a mere hash collision, sends the check to the exact count."""
    cols = _columns(_seq_param(check, "columns"), check.kind)
    not_null_keys = " AND ".join(f"{_ident(c)} IS NOT NULL" for c in cols)
    [(rows, distinct)] = con.execute(
        f"SELECT count(*), count(DISTINCT hash({', '.join(_ident(c) for c in cols)})) "
        f"FROM {_relation_sql(relation)} WHERE {not_null_keys}"
    ).fetchall()
    return bool(rows == distinct)


def _result(check: Check, failing: int, samples: list[dict[str, Any]]) -> CheckResult:
    return CheckResult(
        name=check.name,
        kind=check.kind,
        severity=check.severity,
        passed=failing == 0,
        failing_rows=failing,
        samples=samples,
    )


def _fetch_samples(
    con: duckdb.DuckDBPyConnection, query: str, params: list[Any], limit: int
) -> list[dict[str, Any]]:
    """The first `limit` failing rows as JSON-safe dicts.

    Rows go through Arrow rather than DuckDB's Python conversion, which cannot produce
    TIMESTAMPTZ values without the optional pytz package. Values Python cannot represent at
    all (e.g. infinite timestamps) make the whole sample fall back to DuckDB's text form.
    """
    sampled = f'SELECT * FROM ({query}) AS "failing_rows" LIMIT {int(limit)}'
    try:
        rows = _arrow_rows(con, sampled, params)
    except Exception:  # any conversion failure; the text fallback raises if the query is bad
        as_text = f'SELECT CAST(COLUMNS(*) AS VARCHAR) FROM ({sampled}) AS "sampled"'
        rows = _arrow_rows(con, as_text, params)
    return [{str(k): _json_safe(v) for k, v in row.items()} for row in rows]


def _arrow_rows(con: duckdb.DuckDBPyConnection, query: str, params: list[Any]) -> list[Any]:
    rel = con.sql(query, params=params)
    to_arrow = getattr(rel, "to_arrow_table", None) or rel.fetch_arrow_table
    return list(to_arrow().to_pylist())


# --------------------------------------------------------------------------------------------
# Counting per group
# --------------------------------------------------------------------------------------------

_ROW_CHECKS = ("not_null", "accepted_values", "expression")
"""Kinds whose failing rows are the rows matching a condition: counted by a FILTER."""


def failing_counts_by_group(
    con: duckdb.DuckDBPyConnection,
    relation: str,
    checks: Sequence[Check],
    *,
    group_column: str,
    groups: int,
) -> list[list[int] | None]:
    """Per check, its failing-row count in each group of `relation`, in a few queries.

    Group `g` (0 <= g < `groups`) is the rows of `relation` whose integer `group_column` is
    `g`; element `g` of a check's list is what `run_checks` counts on exactly those rows (that
    column left out). A check is declined (None) when that cannot be guaranteed: custom `sql`
    and `relationships` checks (they may read the audited relation, or another, by name), an
    `expression` that is not a plain row predicate (subqueries, aggregates, window functions,
    qualified columns), a check naming `group_column`, and a check whose SQL cannot be built or
    whose query fails here (`run_checks` then gives the same result or error per group).

    Row checks (`not_null`, `accepted_values`, row-wise `expression`), `row_count` and
    `freshness` share one scan that aggregates per group; each `unique` check is one query.
    """
    counts: list[list[int] | None] = [None] * len(checks)
    aggregates: list[tuple[int, str, list[Any]]] = []
    for number, check in enumerate(checks):
        try:
            failing_rows_sql(check, relation)  # the same validation as `run_checks`
            aggregate = _group_aggregate(check, group_column)
        except SluiceError:
            continue
        if aggregate is not None:
            aggregates.append((number, *aggregate))
        elif check.kind == "unique":
            counts[number] = _unique_counts(con, check, relation, group_column, groups)
    if aggregates:
        together = _aggregate_counts(con, aggregates, relation, group_column, groups)
        scanned: list[list[Any] | None] = list(together) if together is not None else []
        if together is None:  # one of them fails: count them apart, so the others still count
            for one in aggregates:
                alone = _aggregate_counts(con, [one], relation, group_column, groups)
                scanned.append(alone[0] if alone is not None else None)
        for (number, _, _), values in zip(aggregates, scanned, strict=True):
            if values is not None:
                counts[number] = _failing_per_group(checks[number], values)
    return counts


def _group_aggregate(check: Check, group_column: str) -> tuple[str, list[Any]] | None:
    """The aggregate (over the rows of one group) that gives `check`'s failing rows, or None
    when the check is not counted in the shared scan. Raises `SluiceError` to decline it."""
    if check.kind in _ROW_CHECKS:
        where, params = _failing_condition(check)
        referenced = _condition_columns(check)
        if group_column.lower() in {c.lower() for c in referenced}:
            raise SluiceError(f"check {check.name} names the group column")
        return f"count(*) FILTER (WHERE {where})", params
    if check.kind == "row_count":
        return "count(*)", []
    if check.kind == "freshness":
        column = _column(_param(check, "column"), check.kind)
        if column.lower() == group_column.lower():
            raise SluiceError(f"check {check.name} names the group column")
        newest = f"max({_ident(column)})"
        return f"CAST({_stale(newest)} AS INTEGER)", [_max_age_us(check)]
    if check.kind == "unique":
        columns = _columns(_seq_param(check, "columns"), check.kind)
        if group_column.lower() in {c.lower() for c in columns}:
            raise SluiceError(f"check {check.name} names the group column")
        return None
    raise SluiceError(f"check {check.name}: {check.kind} checks run per group")


def _failing_condition(check: Check) -> tuple[str, list[Any]]:
    """The WHERE condition selecting the failing rows of a row check (as `failing_rows_sql`)."""
    kind = check.kind
    if kind == "not_null":
        cols = _columns(_seq_param(check, "columns"), kind)
        return " OR ".join(f"{_ident(c)} IS NULL" for c in cols), []
    if kind == "accepted_values":
        col = _ident(_column(_param(check, "column"), kind))
        vals = _seq_param(check, "values")
        if not vals:
            raise SluiceError(f"check {check.name}: no accepted values")
        compared = f"CAST({col} AS VARCHAR)" if _value_kind(vals, col) == "str" else col
        return f"{col} IS NOT NULL AND NOT list_contains(?, {compared})", [list(vals)]
    if kind == "expression":
        predicate = _normalized_predicate(str(_param(check, "predicate")))
        return f"NOT coalesce(({predicate}), false)", []
    raise SluiceError(f"check {check.name}: {kind} is not a row check")


def _condition_columns(check: Check) -> tuple[str, ...]:
    """The columns a row check's condition reads; raises `SluiceError` for an expression that
    is not a plain predicate over the row's own columns."""
    if check.kind == "not_null":
        return _columns(_seq_param(check, "columns"), check.kind)
    if check.kind == "accepted_values":
        return (_column(_param(check, "column"), check.kind),)
    from sqlglot import exp

    parsed = _parse_predicate(str(_param(check, "predicate")))
    beyond_the_row = (exp.Query, exp.Subquery, exp.Table, exp.Window, exp.AggFunc, exp.Star)
    if any(isinstance(node, beyond_the_row) for node in parsed.walk()):
        raise SluiceError(f"check {check.name} reads more than one row")
    columns = list(parsed.find_all(exp.Column))
    if any(c.table for c in columns):
        raise SluiceError(f"check {check.name} qualifies a column")
    return tuple(c.name for c in columns)


def _aggregate_counts(
    con: duckdb.DuckDBPyConnection,
    aggregates: Sequence[tuple[int, str, list[Any]]],
    relation: str,
    group_column: str,
    groups: int,
) -> list[list[Any]] | None:
    """Each aggregate's value per group (None where a group has no rows), in one scan; None
    when the query fails."""
    group = _ident(group_column)
    selected = ", ".join(f"{sql} AS {_ident(f'a{i}')}" for i, (_, sql, _) in enumerate(aggregates))
    params = [p for _, _, ps in aggregates for p in ps]
    query = f"SELECT {group}, {selected} FROM {_relation_sql(relation)} GROUP BY {group}"
    try:
        rows = con.execute(query, params).fetchall()
    except duckdb.Error:
        return None
    values: list[list[Any]] = [[None] * groups for _ in aggregates]
    for row in rows:
        if not isinstance(row[0], int) or not 0 <= row[0] < groups:
            return None
        for i in range(len(aggregates)):
            values[i][row[0]] = row[i + 1]
    return values


def _failing_per_group(check: Check, values: list[Any]) -> list[int] | None:
    """Failing-row counts from the aggregate of `_group_aggregate` per group (None: no rows)."""
    if check.kind in _ROW_CHECKS:
        return [int(v or 0) for v in values]
    if check.kind == "freshness":
        return [1 if v is None else int(v) for v in values]
    if check.kind == "row_count":
        params = dict(check.params)
        low, high = params.get("min"), params.get("max")
        return [
            int((low is not None and (v or 0) < low) or (high is not None and (v or 0) > high))
            for v in values
        ]
    return None


def _unique_counts(
    con: duckdb.DuckDBPyConnection,
    check: Check,
    relation: str,
    group_column: str,
    groups: int,
) -> list[int] | None:
    """Duplicated keys per group (the key with the group), in one query; None if it fails."""
    cols = _columns(_seq_param(check, "columns"), check.kind)
    group = _ident(group_column)
    keys = ", ".join(_ident(c) for c in cols)
    not_null_keys = " AND ".join(f"{_ident(c)} IS NOT NULL" for c in cols)
    query = (
        f"SELECT {group}, count(*) FROM (SELECT {group} FROM {_relation_sql(relation)} "
        f"WHERE {not_null_keys} GROUP BY {group}, {keys} HAVING count(*) > 1) AS "
        f'"duplicated" GROUP BY {group}'
    )
    try:
        rows = con.execute(query).fetchall()
    except duckdb.Error:
        return None
    counts = [0] * groups
    for found, count in rows:
        if not isinstance(found, int) or not 0 <= found < groups:
            return None
        counts[found] = int(count)
    return counts


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _severity(value: object) -> Severity:
    if value == "error":
        return "error"
    if value == "warn":
        return "warn"
    raise SluiceError(f'severity must be "error" or "warn", got {value!r}')


def _column(name: object, what: str) -> str:
    if not isinstance(name, str) or not name:
        raise SluiceError(f"{what}: a column name must be a non-empty string, got {name!r}")
    return name


def _columns(names: Iterable[object], what: str) -> tuple[str, ...]:
    cols = tuple(_column(n, what) for n in names)
    if not cols:
        raise SluiceError(f"{what}: at least one column is required")
    if len(set(cols)) != len(cols):
        raise SluiceError(f"{what}: a column is listed twice in {list(cols)!r}")
    return cols


def _value_kind(values: Sequence[Any], column: str) -> Literal["str", "number", "bool"]:
    """Accepted values must be JSON scalars of one kind, so they bind as one typed list."""
    kinds: set[str] = set()
    for v in values:
        if isinstance(v, bool):
            kinds.add("bool")
        elif isinstance(v, int | float):
            if isinstance(v, float) and not math.isfinite(v):
                raise SluiceError(f"accepted_values({column}): {v!r} is not an accepted value")
            kinds.add("number")
        elif isinstance(v, str):
            kinds.add("str")
        else:
            raise SluiceError(
                f"accepted_values({column}): {v!r} is not a string, number or boolean"
            )
    if len(kinds) != 1:
        raise SluiceError(
            f"accepted_values({column}): values mix {' and '.join(sorted(kinds))}; use one type"
        )
    kind = kinds.pop()
    return "str" if kind == "str" else "bool" if kind == "bool" else "number"


def _param(check: Check, key: str) -> Any:
    for k, v in check.params:
        if k == key:
            return v
    raise SluiceError(f"check {check.name}: missing parameter {key!r} for kind {check.kind!r}")


def _seq_param(check: Check, key: str) -> tuple[Any, ...]:
    value = _param(check, key)
    if not isinstance(value, list | tuple):
        raise SluiceError(f"check {check.name}: parameter {key!r} must be a list, got {value!r}")
    return tuple(value)


def _ident(name: str) -> str:
    from sqlglot import exp

    return str(exp.to_identifier(name, quoted=True).sql(dialect=_DIALECT))


def _relation_parts(relation: str) -> list[str]:
    parts = relation.split(".") if isinstance(relation, str) else []
    if not 1 <= len(parts) <= 3 or not all(parts):
        raise SluiceError(f"invalid relation name {relation!r}: expected name, schema.name, ...")
    return parts


def _relation_table(relation: str) -> exp.Table:
    from sqlglot import exp

    parts = [exp.to_identifier(p, quoted=True) for p in reversed(_relation_parts(relation))]
    table, db, catalog = (parts + [None, None])[:3]
    return exp.Table(this=table, db=db, catalog=catalog)


def _relation_sql(relation: str) -> str:
    return ".".join(_ident(p) for p in _relation_parts(relation))


def _layer_asset(to: object) -> str:
    parts = to.split(".") if isinstance(to, str) else []
    if len(parts) != 2 or not all(parts):
        raise SluiceError(
            f'relationships: to= must be "layer.asset" (e.g. gold.dim_customer), got {to!r}'
        )
    return f"{parts[0]}.{parts[1]}"


def _count_column(cols: Sequence[str]) -> str:
    """`n`, unless a key column already has that (case-insensitive) name."""
    taken = {c.lower() for c in cols}
    name = "n"
    while name in taken:
        name += "_"
    return name


def _syntax_error(what: str, text: str, exc: ParseError | TokenError) -> SluiceError:
    errors = getattr(exc, "errors", None) or []
    if errors:
        first = errors[0]
        line = first.get("line")
        col = first.get("col")
        detail = first.get("description") or str(exc)
        near = first.get("highlight")
        near_text = f" near {near!r}" if near else ""
        message = f"cannot parse {what} {text!r}: {detail}{near_text} at line {line}, column {col}"
        return SluiceError(message, line=line if isinstance(line, int) else None)
    return SluiceError(f"cannot parse {what} {text!r}: {exc} (unterminated quote?)")


def _parse_predicate(text: str) -> exp.Expression:
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import ParseError, TokenError

    if not isinstance(text, str) or not text.strip():
        raise SluiceError(f"expression: the predicate must be non-empty SQL, got {text!r}")
    try:
        parsed = sqlglot.parse_one(text, read=_DIALECT, into=exp.Condition)
    except (ParseError, TokenError) as exc:
        raise _syntax_error("expression", text, exc) from exc
    if not isinstance(parsed, exp.Expression):
        raise SluiceError(f"cannot parse expression {text!r}: not an expression")
    return parsed


def _normalized_predicate(text: object) -> str:
    """The predicate as regenerated by sqlglot; raises `SluiceError` as `_parse_predicate`."""
    if not isinstance(text, str):
        _parse_predicate(text)  # type: ignore[arg-type]  # raises: not SQL text
    return _regenerated_predicate(str(text))


@functools.lru_cache(maxsize=256)
def _regenerated_predicate(text: str) -> str:
    """Parsed once per text: a ranged audit builds the same check's SQL for every partition."""
    return str(_parse_predicate(text).sql(dialect=_DIALECT))


def _parse_query(text: str) -> exp.Query:
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import ParseError, TokenError

    if not isinstance(text, str) or not text.strip():
        raise SluiceError(f"sql: the query must be non-empty SQL, got {text!r}")
    try:
        statements = [s for s in sqlglot.parse(text, read=_DIALECT) if s is not None]
    except (ParseError, TokenError) as exc:
        raise _syntax_error("sql query", text, exc) from exc
    if len(statements) != 1:
        raise SluiceError(f"sql: expected exactly one query, got {len(statements)} in {text!r}")
    query = statements[0]
    if not isinstance(query, exp.Query):
        raise SluiceError(f"sql: the audit must be a read-only query (SELECT ...), got {text!r}")
    return query


_AGE_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_AGE_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*")


def _age_seconds(max_age: object) -> float:
    """Seconds in `max_age`: a timedelta, a number of seconds, or "1h30m"-style text."""
    seconds: float
    if isinstance(max_age, dt.timedelta):
        seconds = max_age.total_seconds()
    elif isinstance(max_age, int | float) and not isinstance(max_age, bool):
        seconds = float(max_age)
    elif isinstance(max_age, str):
        pos, seconds, text = 0, 0.0, max_age.strip().lower()
        while pos < len(text):
            match = _AGE_PART.match(text, pos)
            if match is None or match.end() == pos:
                raise SluiceError(
                    f"freshness: cannot read max_age {max_age!r}; use e.g. '30m', '24h', '2d'"
                )
            seconds += float(match.group(1)) * _AGE_UNITS[match.group(2)]
            pos = match.end()
        if not text:
            raise SluiceError("freshness: max_age is empty")
    else:
        raise SluiceError(
            f"freshness: max_age must be a timedelta, seconds or text like '24h', got {max_age!r}"
        )
    if not math.isfinite(seconds) or seconds <= 0:
        raise SluiceError(f"freshness: max_age must be positive, got {max_age!r}")
    return seconds


def _format_age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _shorten(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _json_safe(value: Any) -> Any:
    """A JSON-encodable copy of a sampled value (temporal, decimal, bytes... become text)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    fields = getattr(value, "__match_args__", None)  # named tuples, e.g. Arrow's MonthDayNano
    if isinstance(value, tuple) and isinstance(fields, tuple) and len(fields) == len(value):
        return {str(k): _json_safe(v) for k, v in zip(fields, value, strict=True)}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID | dt.timedelta):
        return str(value)
    return str(value)
