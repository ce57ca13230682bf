"""A check as DuckDB SQL: `failing_rows_sql` and the pieces it is built from (row-check
conditions, quoted identifiers and relation names, the freshness bound).

Separate so that running checks and counting them per group build their SQL from the same
pieces, with the same guarantees: user values are always bound parameters, never SQL text;
identifiers and relation names are always quoted through sqlglot (imported lazily); user SQL is
only ever run as sqlglot regenerated it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lakehouse.check_arguments import (
    age_seconds,
    column_name,
    column_names,
    layer_asset,
    value_kind,
)
from lakehouse.check_model import Check, param, seq_param
from lakehouse.check_parsing import DIALECT, normalized_predicate, parse_query
from lakehouse.errors import SluiceError

if TYPE_CHECKING:
    from sqlglot import exp


ROW_CHECKS = ("not_null", "accepted_values", "expression")
"""Kinds whose failing rows are the rows matching a condition: counted by a FILTER."""


def failing_rows_sql(check: Check, relation: str) -> tuple[str, list[Any]]:
    """DuckDB SQL returning the rows of `relation` that violate `check`, plus bound parameters.

    `relation` is a view or table name, optionally schema- (or catalog-) qualified with dots;
    each part is quoted. Raises `SluiceError` for an unknown kind or malformed parameters.
    """
    rel = relation_sql(relation)
    kind = check.kind
    if kind in ROW_CHECKS:
        where, values = failing_condition(check)
        return f"SELECT * FROM {rel} WHERE {where}", values
    if kind == "unique":
        cols = column_names(seq_param(check, "columns"), kind)
        keys = ", ".join(ident(c) for c in cols)
        not_null_keys = " AND ".join(f"{ident(c)} IS NOT NULL" for c in cols)
        n = ident(_count_column(cols))
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
        col = ident(column_name(param(check, "column"), kind))
        target = relation_sql(layer_asset(str(param(check, "to"))))
        target_field = ident(column_name(param(check, "field"), kind))
        return (
            f'SELECT "_child".* FROM {rel} AS "_child" WHERE "_child".{col} IS NOT NULL '
            f'AND NOT EXISTS (SELECT 1 FROM {target} AS "_parent" '
            f'WHERE "_parent".{target_field} = "_child".{col})'
        ), []
    if kind == "freshness":
        col = ident(column_name(param(check, "column"), kind))
        latest = '"latest"'
        return (
            f'SELECT {latest} FROM (SELECT max({col}) AS {latest} FROM {rel}) AS "newest" '
            f"WHERE {stale(latest)}"
        ), [max_age_us(check)]
    if kind == "sql":
        from sqlglot import exp

        query = parse_query(str(param(check, "query")))
        this = exp.select("*").from_(_relation_table(relation))
        wrapped = (
            exp.select("*")
            .from_(query.subquery(exp.to_identifier("failing", quoted=True)))
            .with_(exp.to_identifier("this", quoted=True), as_=this)
        )
        return wrapped.sql(dialect=DIALECT), []
    raise SluiceError(f"check {check.name}: unknown check kind {kind!r}")


def stale(latest: str) -> str:
    """Whether the newest value `latest` (SQL) is missing or older than the bound max age."""
    return f"{latest} IS NULL OR epoch_us({latest}) < epoch_us(now()) - ?"


def max_age_us(check: Check) -> int:
    return round(age_seconds(param(check, "max_age_seconds")) * 1_000_000)


def failing_condition(check: Check) -> tuple[str, list[Any]]:
    """The WHERE condition selecting the failing rows of a row check (as `failing_rows_sql`)."""
    kind = check.kind
    if kind == "not_null":
        cols = column_names(seq_param(check, "columns"), kind)
        return " OR ".join(f"{ident(c)} IS NULL" for c in cols), []
    if kind == "accepted_values":
        col = ident(column_name(param(check, "column"), kind))
        vals = seq_param(check, "values")
        if not vals:
            raise SluiceError(f"check {check.name}: no accepted values")
        compared = f"CAST({col} AS VARCHAR)" if value_kind(vals, col) == "str" else col
        return f"{col} IS NOT NULL AND NOT list_contains(?, {compared})", [list(vals)]
    if kind == "expression":
        predicate = normalized_predicate(str(param(check, "predicate")))
        return f"NOT coalesce(({predicate}), false)", []
    raise SluiceError(f"check {check.name}: {kind} is not a row check")


@functools.lru_cache(maxsize=4096)
def ident(name: str) -> str:
    """`name` as a quoted identifier (kept: checks quote the same columns at every audit)."""
    from sqlglot import exp

    return str(exp.to_identifier(name, quoted=True).sql(dialect=DIALECT))


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


def relation_sql(relation: str) -> str:
    return ".".join(ident(p) for p in _relation_parts(relation))


def _count_column(cols: Sequence[str]) -> str:
    """`n`, unless a key column already has that (case-insensitive) name."""
    taken = {c.lower() for c in cols}
    name = "n"
    while name in taken:
        name += "_"
    return name
