"""Counting checks for many groups of rows at once: `failing_counts_by_group`.

A ranged write audits each partition; this counts every partition in a few scans instead of
one query per check and partition. Separate because of its own guarantee: per group it gives
exactly what `run_checks` would count on that group alone, or it declines the check (None) and
leaves it to `run_checks`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb

from lakehouse.check_arguments import column_name, column_names
from lakehouse.check_model import Check, param, seq_param
from lakehouse.check_parsing import parse_predicate
from lakehouse.check_sql import (
    ROW_CHECKS,
    failing_condition,
    failing_rows_sql,
    ident,
    max_age_us,
    relation_sql,
    stale,
)
from lakehouse.errors import SluiceError


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
    if check.kind in ROW_CHECKS:
        where, params = failing_condition(check)
        referenced = _condition_columns(check)
        if group_column.lower() in {c.lower() for c in referenced}:
            raise SluiceError(f"check {check.name} names the group column")
        return f"count(*) FILTER (WHERE {where})", params
    if check.kind == "row_count":
        return "count(*)", []
    if check.kind == "freshness":
        column = column_name(param(check, "column"), check.kind)
        if column.lower() == group_column.lower():
            raise SluiceError(f"check {check.name} names the group column")
        newest = f"max({ident(column)})"
        return f"CAST({stale(newest)} AS INTEGER)", [max_age_us(check)]
    if check.kind == "unique":
        columns = column_names(seq_param(check, "columns"), check.kind)
        if group_column.lower() in {c.lower() for c in columns}:
            raise SluiceError(f"check {check.name} names the group column")
        return None
    raise SluiceError(f"check {check.name}: {check.kind} checks run per group")


def _condition_columns(check: Check) -> tuple[str, ...]:
    """The columns a row check's condition reads; raises `SluiceError` for an expression that
    is not a plain predicate over the row's own columns."""
    if check.kind == "not_null":
        return column_names(seq_param(check, "columns"), check.kind)
    if check.kind == "accepted_values":
        return (column_name(param(check, "column"), check.kind),)
    from sqlglot import exp

    parsed = parse_predicate(str(param(check, "predicate")))
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
    group = ident(group_column)
    selected = ", ".join(f"{sql} AS {ident(f'a{i}')}" for i, (_, sql, _) in enumerate(aggregates))
    params = [p for _, _, ps in aggregates for p in ps]
    query = f"SELECT {group}, {selected} FROM {relation_sql(relation)} GROUP BY {group}"
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
    if check.kind in ROW_CHECKS:
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
    cols = column_names(seq_param(check, "columns"), check.kind)
    group = ident(group_column)
    keys = ", ".join(ident(c) for c in cols)
    not_null_keys = " AND ".join(f"{ident(c)} IS NOT NULL" for c in cols)
    query = (
        f"SELECT {group}, count(*) FROM (SELECT {group} FROM {relation_sql(relation)} "
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
