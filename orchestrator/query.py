"""Ad-hoc DuckDB SQL over the lakehouse: `main` by default, or an audit branch with `--ref`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import duckdb
import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from lakehouse import duck
from lakehouse.branches import Lakehouse, branch_snapshot_id, main_snapshot_id
from lakehouse.reads import create_view
from lakehouse.tables import load_table
from orchestrator.errors import SqlParseError, UnknownAssetError


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]
    sources: dict[str, str]  # table -> "main" or the branch read


def referenced_tables(sql: str) -> list[str]:
    """Qualified tables (`layer.name`) the query reads, CTE names excluded."""
    try:
        tree = sqlglot.parse_one(sql, read="duckdb")
    except ParseError as exc:
        raise SqlParseError(f"cannot parse query: {exc}") from exc
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    found: list[str] = []
    for table in tree.find_all(exp.Table):
        if table.name and table.db and table.name not in ctes:
            found.append(f"{table.db}.{table.name}")
    return list(dict.fromkeys(found))


def run_query(lh: Lakehouse, sql: str, *, ref: str | None = None, limit: int = 100) -> QueryResult:
    """Run `sql`; each `layer.table` it names reads `ref` where that table has it, else `main`."""
    con = duck.connect()
    sources: dict[str, str] = {}
    try:
        for identifier in referenced_tables(sql):
            table = load_table(lh.catalog, identifier)
            if table is None:
                raise UnknownAssetError(f"no table {identifier} in the catalog")
            snapshot = branch_snapshot_id(table, ref) if ref else None
            sources[identifier] = ref if snapshot is not None and ref else "main"
            snapshot = snapshot if snapshot is not None else main_snapshot_id(table)
            if snapshot is None:
                raise UnknownAssetError(f"table {identifier} has no snapshot yet")
            layer, _, name = identifier.rpartition(".")
            create_view(con, (layer, name), table, snapshot)
        if ref and ref not in sources.values():
            raise UnknownAssetError(f"no table read by the query has a branch named {ref!r}")
        try:
            relation = con.sql(sql)
        except duckdb.Error as exc:
            raise SqlParseError(f"query failed: {exc}") from exc
        if relation is None:
            return QueryResult([], [], sources)
        return QueryResult(relation.columns, relation.limit(limit).fetchall(), sources)
    finally:
        con.close()
