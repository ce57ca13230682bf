"""Column lineage of a SQL asset, for `sluice lineage ASSET --columns`.

Pure functions over SQL text and known upstream schemas; nothing is read or run.
"""

from __future__ import annotations

from collections.abc import Mapping

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.lineage import Node, lineage
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import Scope, build_scope, traverse_scope
from sqlglot.schema import MappingSchema, Schema

from orchestrator.errors import SqlParseError

DIALECT = "duckdb"

_Schema = dict[str, dict[str, dict[str, str]]]


def column_lineage(sql: str, schemas: Mapping[str, Mapping[str, str]]) -> dict[str, list[str]]:
    """Map each output column of the query `sql` to the upstream columns it derives from.

    `schemas` maps `"layer.table"` to `{column: type}`; it lets `SELECT *` expand and
    unqualified columns (and unqualified table names such as `orders` for `silver.orders`)
    resolve. Upstream columns are `"layer.table.column"` strings (`"table.column"` for a
    table that is neither qualified nor in `schemas`), sorted and deduplicated, spelled as in
    `schemas` when they appear there; an unexpanded `*` (unknown table) maps to `"table.*"`.
    Columns derived from no column (literals, `count(*)`) map to `[]`, and so does any column
    whose lineage cannot be traced: one failure never affects the other columns. Output
    columns keep the query's spelling and order; a repeated output name is reported once.
    Raises `SqlParseError` if `sql` is not one query, and `ValueError` for a `schemas` key
    that is not `"layer.table"`.
    """
    try:
        statements = [s for s in sqlglot.parse(sql, read=DIALECT) if s is not None]
    except SqlglotError as exc:
        raise SqlParseError(f"cannot parse SQL for column lineage: {exc}") from None
    statements = [s for s in statements if not isinstance(s, exp.Semicolon)]
    if len(statements) != 1 or not isinstance(statements[0], exp.Query):
        raise SqlParseError("column lineage needs exactly one query (SELECT ...)")
    parsed = statements[0]

    schema, tables, columns = _nested_schema(schemas)
    spelling = {name.lower(): name for name in parsed.named_selects if name}
    for table_columns in columns.values():
        for lower, original in table_columns.items():
            spelling.setdefault(lower, original)

    prepared = normalize_identifiers(parsed.copy(), dialect=DIALECT)
    _qualify_short_names(prepared, schema)

    traced = _qualified(prepared, schema)
    if traced is None:
        return {spelling.get(n.lower(), n): [] for n in parsed.named_selects if n}
    qualified, scope, used_schema = traced

    result: dict[str, list[str]] = {}
    for select in qualified.selects:
        name = select.alias_or_name
        if not name:
            continue
        key = spelling.get(name.lower(), name)
        if key in result:
            continue
        try:
            node = lineage(name, qualified, used_schema, dialect=DIALECT, scope=scope)
            result[key] = _upstream_columns(node, tables, columns)
        except Exception:  # one column's failure must not fail the others
            result[key] = []
    return result


def _nested_schema(
    schemas: Mapping[str, Mapping[str, str]],
) -> tuple[_Schema, dict[str, str], dict[str, dict[str, str]]]:
    """sqlglot's `{layer: {table: {column: type}}}` (lowercased), plus the original spellings:
    `"layer.table"` by lowercased key, and per lowercased table key, columns by lowercased name.
    """
    nested: _Schema = {}
    tables: dict[str, str] = {}
    columns: dict[str, dict[str, str]] = {}
    for key, cols in schemas.items():
        parts = key.split(".")
        if len(parts) != 2 or not all(parts):
            raise ValueError(f"schema key {key!r} must be 'layer.table'")
        layer, table = parts[0].lower(), parts[1].lower()
        lowered = f"{layer}.{table}"
        tables[lowered] = key
        columns[lowered] = {str(c).lower(): str(c) for c in cols}
        nested.setdefault(layer, {})[table] = {str(c).lower(): str(t) for c, t in cols.items()}
    return nested, tables, columns


def _qualify_short_names(query: exp.Expr, schema: _Schema) -> None:
    """Give unqualified tables (not CTEs) the layer of the one schema table with that name."""
    layers_by_table: dict[str, list[str]] = {}
    for layer, layer_tables in schema.items():
        for table in layer_tables:
            layers_by_table.setdefault(table, []).append(layer)
    try:
        scopes = traverse_scope(query)
    except (SqlglotError, RecursionError):
        return
    for scope in scopes:
        for source in scope.tables:
            if source.db or not isinstance(source.this, exp.Identifier):
                continue
            if source.name in scope.cte_sources:
                continue
            layers = layers_by_table.get(source.name, [])
            if len(layers) == 1:
                source.set("db", exp.to_identifier(layers[0]))


def _qualified(query: exp.Expr, schema: _Schema) -> tuple[exp.Query, Scope, Schema] | None:
    """The qualified query and its root scope, with the real schema or, failing that, one
    whose column types are all neutral (an unusual type string must not block lineage)."""
    neutral: _Schema = {
        layer: {table: dict.fromkeys(cols, "TEXT") for table, cols in tables.items()}
        for layer, tables in schema.items()
    }
    for mapping in (schema, neutral):
        try:
            nested: dict[str, object] = dict(mapping)
            candidate = MappingSchema(nested, dialect=DIALECT)
            qualified = qualify(
                query.copy(),
                dialect=DIALECT,
                schema=candidate,
                validate_qualify_columns=False,
                identify=False,
            )
            scope = build_scope(qualified)
        except Exception:  # fall back rather than fail the whole lineage
            continue
        if scope is not None and isinstance(qualified, exp.Query):
            return qualified, scope, candidate
    return None


def _upstream_columns(
    node: Node, tables: Mapping[str, str], columns: Mapping[str, Mapping[str, str]]
) -> list[str]:
    found: set[str] = set()
    for leaf in node.walk():
        source = leaf.source
        if leaf.downstream or not isinstance(source, exp.Table):
            continue  # an intermediate step, a literal, or an unresolvable column
        if not isinstance(source.this, exp.Identifier):
            continue  # a table function
        lowered = f"{source.db}.{source.name}" if source.db else source.name
        table = tables.get(lowered, lowered)
        column = _column_name(leaf.name)
        if column is None:
            continue
        column = columns.get(lowered, {}).get(column.lower(), column)
        found.add(f"{table}.{column}")
    return sorted(found)


def _column_name(leaf_name: str) -> str | None:
    """The column part of a lineage leaf name such as `o.amount` or `*`."""
    if leaf_name.endswith("*"):
        return "*"
    try:
        parsed = sqlglot.parse_one(leaf_name, into=exp.Column)
    except SqlglotError:
        return None
    return parsed.name if isinstance(parsed, exp.Column) and parsed.name else None
