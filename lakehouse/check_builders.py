"""The check constructors (`not_null`, `unique`, ..., `sql`): the vocabulary assets use.

Each validates its arguments when the check is defined, so a mistake (including a SQL typo in
`expression` or `sql`) fails at definition time, and returns a plain `Check`. Separate from
running and SQL generation so that defining checks costs no DuckDB query and no sqlglot import
beyond parsing the user SQL given to `expression` and `sql`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from lakehouse.check_arguments import (
    age_seconds,
    column_name,
    column_names,
    format_age,
    layer_asset,
    shorten,
    valid_severity,
    value_kind,
)
from lakehouse.check_model import Check, Severity
from lakehouse.check_parsing import DIALECT, normalized_predicate, parse_query
from lakehouse.errors import SluiceError


def not_null(*cols: str, severity: Severity = "error") -> Check:
    """Every row has a value in each of `cols`; failing rows are those with any NULL."""
    columns = column_names(cols, "not_null")
    return Check(
        kind="not_null",
        name=f"not_null({', '.join(columns)})",
        params=(("columns", columns),),
        severity=valid_severity(severity),
    )


def unique(*cols: str, severity: Severity = "error") -> Check:
    """The key `cols` identifies at most one row.

    Failing rows: one per duplicated key tuple, with the key columns and `n` (its row count).
    Rows with a NULL in any key column are ignored, as in dbt.
    """
    columns = column_names(cols, "unique")
    return Check(
        kind="unique",
        name=f"unique({', '.join(columns)})",
        params=(("columns", columns),),
        severity=valid_severity(severity),
    )


def accepted_values(col: str, values: Iterable[Any], *, severity: Severity = "error") -> Check:
    """Every non-NULL value of `col` is one of `values` (bound as a list parameter).

    With string values the column is compared in its text form (so it also works for ENUM or
    DATE columns); with numbers or booleans it is compared natively.
    """
    column = column_name(col, "accepted_values")
    if isinstance(values, str | bytes):
        raise SluiceError(
            f"accepted_values({column}): values must be a list of values, not a single string"
        )
    vals = tuple(values)
    if not vals:
        raise SluiceError(f"accepted_values({column}): at least one accepted value is required")
    value_kind(vals, column)
    return Check(
        kind="accepted_values",
        name=f"accepted_values({column}, {list(vals)!r})",
        params=(("column", column), ("values", vals)),
        severity=valid_severity(severity),
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
        severity=valid_severity(severity),
    )


def expression(sql_predicate: str, *, severity: Severity = "error") -> Check:
    """Every row satisfies `sql_predicate`; rows where it is false or NULL fail.

    The predicate is parsed now (DuckDB dialect) and must be a single expression, so a typo or
    a smuggled second statement is rejected with its position before anything runs.
    """
    predicate = normalized_predicate(sql_predicate)
    return Check(
        kind="expression",
        name=f"expression({shorten(predicate, 60)})",
        params=(("predicate", predicate),),
        severity=valid_severity(severity),
    )


def relationships(
    col: str, to: str, field: str | None = None, *, severity: Severity = "error"
) -> Check:
    """Every non-NULL `col` has a match in `to` ("layer.asset") on `field` (default: `col`).

    `to` is recorded in `references` so the orchestrator can order and expose the dependency;
    in SQL it is the two-part name `layer.asset`, which the caller must make resolvable.
    """
    column = column_name(col, "relationships")
    target = layer_asset(to)
    target_field = column if field is None else column_name(field, "relationships")
    return Check(
        kind="relationships",
        name=f"relationships({column} -> {target}.{target_field})",
        params=(("column", column), ("to", target), ("field", target_field)),
        severity=valid_severity(severity),
        references=(target,),
    )


def freshness(
    col: str, max_age: dt.timedelta | float | str, *, severity: Severity = "error"
) -> Check:
    """The newest `col` is at most `max_age` old (timedelta, seconds, or "30m"/"24h"/"2d").

    Fails with one row (`latest`) when the maximum is NULL (including an empty relation) or too
    old. Naive timestamps are taken as UTC; dates count from midnight UTC.
    """
    column = column_name(col, "freshness")
    seconds = age_seconds(max_age)
    shown = " ".join(max_age.split()) if isinstance(max_age, str) else format_age(seconds)
    return Check(
        kind="freshness",
        name=f"freshness({column}, max_age={shown})",
        params=(("column", column), ("max_age_seconds", seconds)),
        severity=valid_severity(severity),
    )


def sql(query: str, *, severity: Severity = "error") -> Check:
    """A custom audit: the rows returned by `query` are the failing rows.

    Inside the query the audited data is available as `this`. The query is parsed now and must
    be exactly one read-only query (SELECT, set operation, ...).
    """
    regenerated = parse_query(query).sql(dialect=DIALECT)
    return Check(
        kind="sql",
        name=f"sql({shorten(regenerated, 40)})",
        params=(("query", regenerated),),
        severity=valid_severity(severity),
    )
