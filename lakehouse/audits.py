"""Checks (audits) as DuckDB SQL that returns the offending rows.

A check is plain data (`Check`): a kind plus JSON-able parameters. `failing_rows_sql` turns it
into one DuckDB query whose rows are the violations, so "passed" simply means "no rows".
Guarantees that the rest of Sluice relies on:

* user *values* (accepted values, bounds, ages) are always bound parameters, never SQL text;
* identifiers (columns, schemas, tables) are always quoted through sqlglot;
* user *SQL* (`expression`, `sql`) is parsed by sqlglot when the check is built, so a typo
  fails at definition time with a position, and only the regenerated SQL is ever run;
* `run_checks` never raises for a check that cannot run: it returns a failed, blocking result,
  because a broken audit must stop a publish, not crash the run.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import duckdb
import sqlglot
from pydantic import BaseModel, ConfigDict
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from lakehouse.errors import SluiceError

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


class CheckResult(BaseModel):
    """The outcome of one check on one relation; JSON-safe so it can be logged and stored."""

    model_config = ConfigDict(frozen=True)

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
    predicate = _parse_predicate(sql_predicate).sql(dialect=_DIALECT)
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
    parsed = _parse_query(query)
    regenerated = parsed.sql(dialect=_DIALECT)
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
    if kind == "not_null":
        cols = _columns(_seq_param(check, "columns"), kind)
        cond = " OR ".join(f"{_ident(c)} IS NULL" for c in cols)
        return f"SELECT * FROM {rel} WHERE {cond}", []
    if kind == "unique":
        cols = _columns(_seq_param(check, "columns"), kind)
        keys = ", ".join(_ident(c) for c in cols)
        not_null_keys = " AND ".join(f"{_ident(c)} IS NOT NULL" for c in cols)
        n = _ident(_count_column(cols))
        return (
            f"SELECT {keys}, count(*) AS {n} FROM {rel} WHERE {not_null_keys} "
            f"GROUP BY {keys} HAVING count(*) > 1"
        ), []
    if kind == "accepted_values":
        col = _ident(_column(_param(check, "column"), kind))
        vals = _seq_param(check, "values")
        if not vals:
            raise SluiceError(f"check {check.name}: no accepted values")
        compared = f"CAST({col} AS VARCHAR)" if _value_kind(vals, col) == "str" else col
        return (
            f"SELECT * FROM {rel} WHERE {col} IS NOT NULL AND NOT list_contains(?, {compared})",
            [list(vals)],
        )
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
    if kind == "expression":
        predicate = _parse_predicate(str(_param(check, "predicate"))).sql(dialect=_DIALECT)
        return f"SELECT * FROM {rel} WHERE NOT coalesce(({predicate}), false)", []
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
        max_age_us = round(_age_seconds(_param(check, "max_age_seconds")) * 1_000_000)
        return (
            f'SELECT "latest" FROM (SELECT max({col}) AS "latest" FROM {rel}) AS "newest" '
            f'WHERE "latest" IS NULL OR epoch_us("latest") < epoch_us(now()) - ?'
        ), [max_age_us]
    if kind == "sql":
        query = _parse_query(str(_param(check, "query")))
        this = exp.select("*").from_(_relation_table(relation))
        wrapped = (
            exp.select("*")
            .from_(query.subquery(exp.to_identifier("failing", quoted=True)))
            .with_(exp.to_identifier("this", quoted=True), as_=this)
        )
        return wrapped.sql(dialect=_DIALECT), []
    raise SluiceError(f"check {check.name}: unknown check kind {kind!r}")


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------


def run_checks(
    con: duckdb.DuckDBPyConnection,
    relation: str,
    checks: Sequence[Check],
    *,
    sample_size: int = 5,
) -> list[CheckResult]:
    """Run `checks` over `relation` on `con`, one result per check, in order.

    Never raises because of a check: a check whose SQL cannot be built or run becomes a failed
    result with `error` set (blocking if its severity is error). Nothing is left on `con`.
    """
    if sample_size < 0:
        raise SluiceError(f"sample_size must not be negative, got {sample_size}")
    results: list[CheckResult] = []
    for check in checks:
        try:
            query, params = failing_rows_sql(check, relation)
            # fetchall, not fetchone: it completes the result, which DuckDB requires before the
            # connection runs anything else.
            count_rows = con.execute(
                f'SELECT count(*) FROM ({query}) AS "failing_rows"', params
            ).fetchall()
            failing = int(count_rows[0][0])
            samples: list[dict[str, Any]] = []
            if failing and sample_size:
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
        results.append(
            CheckResult(
                name=check.name,
                kind=check.kind,
                severity=check.severity,
                passed=failing == 0,
                failing_rows=failing,
                samples=samples,
            )
        )
    return results


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
    return str(exp.to_identifier(name, quoted=True).sql(dialect=_DIALECT))


def _relation_parts(relation: str) -> list[str]:
    parts = relation.split(".") if isinstance(relation, str) else []
    if not 1 <= len(parts) <= 3 or not all(parts):
        raise SluiceError(f"invalid relation name {relation!r}: expected name, schema.name, ...")
    return parts


def _relation_table(relation: str) -> exp.Table:
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
    if not isinstance(text, str) or not text.strip():
        raise SluiceError(f"expression: the predicate must be non-empty SQL, got {text!r}")
    try:
        parsed = sqlglot.parse_one(text, read=_DIALECT, into=exp.Condition)
    except (ParseError, TokenError) as exc:
        raise _syntax_error("expression", text, exc) from exc
    if not isinstance(parsed, exp.Expression):
        raise SluiceError(f"cannot parse expression {text!r}: not an expression")
    return parsed


def _parse_query(text: str) -> exp.Query:
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
