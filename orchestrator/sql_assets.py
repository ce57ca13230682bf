"""SQL assets: `assets/<layer>/<name>.sql` files turned into `Asset(kind="sql")`.

A SQL asset is exactly one DuckDB query. Its upstreams are the tables it reads (found with
sqlglot, CTE names and table functions excluded). Leading `-- key: value` comment lines
configure it:

    -- checks: not_null(order_id); unique(order_id); expression(amount >= 0)
    -- tags: finance, daily
    -- description: One row per order.
    -- owners: data-eng
    -- deps: bronze.fx_rates
    -- retry: attempts=3, backoff_s=2
    -- timeout_s: 600
    -- code_version: v2

Other comment lines (`-- Note: ...`) are ordinary comments. The code version is a hash of the
normalized query, so reformatting and comment edits never make the asset stale, and header
edits (checks, tags, ...) never do either.

This module finds and loads the files; the parts of a SQL asset are read by
`orchestrator.sql_header` (the header), `orchestrator.sql_header_checks` (its `-- checks:`
line) and `orchestrator.sql_query` (the query), with errors located by
`orchestrator.sql_location`, and what parsing yields is remembered by `orchestrator.sql_cache`.
Their public names are re-exported here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.assets import Asset, AssetKey, Retry, partitioned_version, validate_name
from orchestrator.errors import DefinitionError
from orchestrator.sql_cache import (
    QueryCache,
    active_cache,
    remembered_check,
    remembered_sql,
    sqlglot_version,
)
from orchestrator.sql_header import HEADER_KEYS, is_header_line, parse_header
from orchestrator.sql_header_checks import CHECK_NAMES
from orchestrator.sql_location import Where
from orchestrator.sql_query import (
    DIALECT,
    ParsedQuery,
    parse_query,
    sql_code_version,
    upstream_refs,
)

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "CHECK_NAMES",
    "DIALECT",
    "HEADER_KEYS",
    "QueryCache",
    "discover_sql_assets",
    "load_sql_asset",
    "remembered_check",
    "remembered_sql",
    "sql_code_version",
    "sqlglot_version",
    "upstream_refs",
]

_LAYOUT = "<assets_dir>/<layer>/<name>.sql"


def load_sql_asset(path: Path, assets_dir: Path, known: QueryCache | None = None) -> Asset:
    """Load `assets_dir/<layer>/<name>.sql` as a SQL asset.

    Guarantees: `sql` is the file without its header lines and without a trailing `;` (it may
    end in a line comment, so wrap it with a newline before a closing parenthesis); `deps` are
    the tables the query reads, in order of appearance, then the header's `deps`; `line` is
    the file line where the query starts. Raises `DefinitionError` (or its subclasses
    `InvalidNameError`, `SqlParseError`) naming the file and, when known, the line. With
    `known`, a query text parsed before (successfully) is not parsed again.
    """
    file = str(path)
    layer, name = _layer_and_name(path, assets_dir)
    validate_name(layer, "layer", file=file)
    validate_name(name, "asset name", file=file)
    key = AssetKey(layer, name)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DefinitionError(f"cannot read SQL asset: {exc}", asset=str(key), file=file) from exc
    if not text.strip():
        raise DefinitionError(
            "empty SQL file: expected one SELECT query", asset=str(key), file=file
        )

    lines = text.split("\n")  # only "\n" counts, as in sqlglot's line numbers
    n_header = 0
    while n_header < len(lines) and is_header_line(lines[n_header]):
        n_header += 1
    first_line = n_header + 1
    body = "\n".join(lines[n_header:])
    if not body.strip():
        raise DefinitionError(
            "SQL file has only comments: expected one SELECT query", asset=str(key), file=file
        )

    header = parse_header(lines[:n_header], file, str(key))
    parsed = known.get(body) if known is not None else None
    if parsed is None:
        parsed = ParsedQuery.of(body, parse_query(body, Where(file, first_line, str(key))))
        if known is not None:
            known.put(body, parsed)
    deps = list(dict.fromkeys([*parsed.refs, *header.deps]))
    return Asset(
        key=key,
        kind="sql",
        code_version=partitioned_version(
            header.code_version or parsed.code_version, header.partitions
        ),
        partitions=header.partitions,
        sql=parsed.sql,
        deps=tuple(deps),
        checks=tuple(header.checks),
        retry=header.retry or Retry(),
        inherits_retry=header.retry is None,
        timeout_s=header.timeout_s,
        tags=frozenset(header.tags),
        description="\n".join(header.description) or None,
        owners=tuple(dict.fromkeys(header.owners)),
        file=file,
        line=first_line,
    )


def discover_sql_assets(assets_dir: Path, cache: Path | None = None) -> list[Asset]:
    """Load every `*.sql` file under `assets_dir`, sorted by path.

    SQL files must sit exactly at `<assets_dir>/<layer>/<name>.sql`; any other `.sql` file
    raises `DefinitionError`. Files and folders whose name starts with `.` are skipped.
    A missing `assets_dir` yields no assets. With `cache` (a JSON file), what parsing each
    query text yielded is remembered there (see `QueryCache`); without, inside a
    `remembered_sql` block, in that block's cache.
    """
    if not assets_dir.is_dir():
        return []
    if cache is None:
        return _discover(assets_dir, active_cache.get())
    with remembered_sql(cache) as known:
        return _discover(assets_dir, known)


def _discover(assets_dir: Path, known: QueryCache | None) -> list[Asset]:
    found: list[Asset] = []
    for path in sorted(assets_dir.rglob("*.sql")):
        relative = path.relative_to(assets_dir)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue
        if len(relative.parts) != 2:
            raise DefinitionError(
                f"misplaced SQL file {relative.as_posix()}: SQL assets must live at {_LAYOUT}",
                file=str(path),
            )
        found.append(load_sql_asset(path, assets_dir, known))
    return found


def _layer_and_name(path: Path, assets_dir: Path) -> tuple[str, str]:
    try:
        relative = path.relative_to(assets_dir)
    except ValueError:
        try:
            relative = path.resolve().relative_to(assets_dir.resolve())
        except ValueError:
            raise DefinitionError(
                f"SQL file is outside the assets folder {assets_dir}", file=str(path)
            ) from None
    if len(relative.parts) != 2 or path.suffix != ".sql":
        raise DefinitionError(
            f"misplaced SQL file {relative.as_posix()}: SQL assets must live at {_LAYOUT}",
            file=str(path),
        )
    return path.parent.name, path.stem
