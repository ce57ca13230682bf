"""Snapshots as DuckDB relations.

When a snapshot has no delete files (always true for tables Sluice writes), DuckDB reads its
Parquet file list directly (about 15x faster than materializing Arrow in Python); otherwise
pyiceberg's scan resolves the deletes. Columns the table gained after a file was written read
as NULL, as Iceberg requires.

Files of different Parquet schemas (written before and after a schema change) are read with
DuckDB's `union_by_name`, which reads every file's footer each time a query over them is bound
(a step binds its upstreams several times: 8 ms a bind for 365 small files, against 2 ms
without). Whether a snapshot's files share one schema is found once per process, so that files
that do (nearly always) are read without it.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import duckdb
import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.table import DataScan, Table
from sqlglot import exp

from lakehouse.lru import LruCache
from lakehouse.tables import load_table, schema_in_arrow
from lakehouse.windows import RowWindow

_counter = itertools.count()


def _scan(table: Table, snapshot_id: int, window: RowWindow | None) -> DataScan:
    if window is None:
        return table.scan(snapshot_id=snapshot_id)
    return table.scan(snapshot_id=snapshot_id, row_filter=window.iceberg_filter(table.schema()))


_file_lists: LruCache[tuple[tuple[str, ...] | None]] = LruCache(256)
"""(table uuid, snapshot id, window, schema id) -> data file paths, or None when the snapshot
has delete files. A snapshot never changes, so neither does its file list: planning it again
(reading the manifest list and every manifest) is wasted work."""


@dataclass(frozen=True)
class _FileSchemas:
    """What a list of data files holds: the column names of any of them, and whether they all
    have the same Parquet schema (names, order and types)."""

    columns: frozenset[str]
    uniform: bool


_file_schemas: LruCache[_FileSchemas] = LruCache(256)
"""Data file paths -> what they hold (files never change either)."""
_SCHEMA_VARIANTS = """
SELECT count(DISTINCT signature) FROM (
    SELECT list((name, type, type_length, repetition_type, num_children, converted_type, scale,
                 precision, logical_type, duckdb_type) ORDER BY column_id) AS signature
    FROM parquet_schema($files) WHERE column_id > 0 GROUP BY file_name
)"""
"""How many different Parquet schemas the files have (the root element, named by the writer,
and field ids, which DuckDB does not read by, left out)."""


_tables: LruCache[Table] = LruCache(512, process_local=True)
"""(catalog, identifier) -> the table object last loaded through `table_with_snapshot`. A forked
child loads its own: these are bound to the parent's catalog connections."""


def table_with_snapshots(
    catalog: Catalog, identifier: str, snapshot_ids: Iterable[int]
) -> Table | None:
    """A table object whose metadata holds every one of `snapshot_ids`, for reading them: the
    one loaded last in this process when it already holds them (a snapshot never changes, and
    a newer table object would show it identically), else a fresh load (None: no such table).

    Steps that read the same upstreams (ten readers of one snapshot in a layered graph) so
    load each upstream once instead of once per reader.
    """
    key = (catalog.name, tuple(sorted(catalog.properties.items())), identifier)
    table: Table | None = _tables.get(key)
    if table is not None and all(table.snapshot_by_id(s) is not None for s in snapshot_ids):
        return table
    table = load_table(catalog, identifier)
    if table is not None:
        _tables.put(key, table)
    return table


def snapshot_files(
    table: Table, snapshot_id: int, window: RowWindow | None = None
) -> list[str] | None:
    """Data file paths of a snapshot (only those that may hold rows of `window`), or None
    when any file has delete files. Cached per process (see `_file_lists`)."""
    if table.snapshot_by_id(snapshot_id) is None:  # unknown or expired: let pyiceberg say so
        return _plan_files(table, snapshot_id, window)
    # The window by its text (offsets included): equal instants in two timezones are equal
    # datetimes, yet select different rows of a timestamp column without time zone.
    scope = (window.column, window.start.isoformat(), window.end.isoformat()) if window else None
    schema_id = table.metadata.current_schema_id if window is not None else None
    key = _file_list_key(table, snapshot_id, scope, schema_id)

    def planned() -> tuple[tuple[str, ...] | None]:
        files = _plan_files(table, snapshot_id, window)
        return (tuple(files) if files is not None else None,)

    [found] = _file_lists.get_or_make(key, planned)
    return list(found) if found is not None else None


def _file_list_key(table: Table, snapshot_id: int, *scope: object) -> tuple[object, ...]:
    return (str(table.metadata.table_uuid), snapshot_id, *scope)


def remember_snapshot_files(table: Table, snapshot_id: int, files: Sequence[str]) -> None:
    """Record all of a snapshot's data files, for a writer that knows them exactly (a
    whole-table write: the files it wrote, no delete files): its readers need not plan it."""
    _file_lists.put(_file_list_key(table, snapshot_id, None, None), (tuple(files),))


def _plan_files(table: Table, snapshot_id: int, window: RowWindow | None) -> list[str] | None:
    paths: list[str] = []
    for task in _scan(table, snapshot_id, window).plan_files():
        if task.delete_files:
            return None
        paths.append(task.file.file_path)
    return paths


def _local(path: str) -> str:
    return path.removeprefix("file://")


@functools.lru_cache(maxsize=4096)
def quote(*parts: str) -> str:
    """A safely quoted, possibly qualified, DuckDB identifier."""
    return ".".join(exp.to_identifier(p, quoted=True).sql(dialect="duckdb") for p in parts)


def snapshot_select(
    con: duckdb.DuckDBPyConnection,
    table: Table,
    snapshot_id: int,
    window: RowWindow | None = None,
    files: Sequence[str] | None = None,
) -> str:
    """SQL selecting exactly the table schema's columns of one snapshot (of its rows in
    `window`, reading only the files that may hold them).

    `files`, when given, are the snapshot's data files the caller already knows to be exactly
    those holding its rows in `window` (no planning). Registers helper objects on `con` when
    the snapshot cannot be read as a plain file list.
    """
    known = list(files) if files is not None else None
    select = _snapshot_select(con, table, snapshot_id, window, known)
    if window is None:
        return select
    return f"SELECT * FROM ({select}) WHERE {window.sql_predicate(table.schema())}"


def _snapshot_select(
    con: duckdb.DuckDBPyConnection,
    table: Table,
    snapshot_id: int,
    window: RowWindow | None,
    known_files: list[str] | None = None,
) -> str:
    snapshot = table.snapshot_by_id(snapshot_id)
    schema_id = snapshot.schema_id if snapshot is not None else None
    schemas = table.schemas()
    iceberg_schema = (
        schemas.get(schema_id, table.schema()) if schema_id is not None else table.schema()
    )
    arrow_schema = schema_in_arrow(table, iceberg_schema)
    files = known_files if known_files is not None else snapshot_files(table, snapshot_id, window)
    if not files:
        data: pa.Table = (
            arrow_schema.empty_table()
            if files is not None
            else _scan(table, snapshot_id, window).to_arrow()
        )
        name = f"__sluice_snapshot_{next(_counter)}"
        con.register(name, data)
        return f"SELECT * FROM {quote(name)}"
    held = _file_schemas.get(tuple(files))
    if held is None:
        held = _look_into(con, tuple(files))
        _file_schemas.put(tuple(files), held)
    source = _read_parquet(tuple(files), union=not held.uniform)
    present = held.columns
    missing = [f for f in arrow_schema if f.name not in present]
    if missing:
        empty = f"__sluice_types_{next(_counter)}"
        con.register(empty, pa.schema(missing).empty_table())
        duck_types = dict(zip(con.table(empty).columns, con.table(empty).types, strict=True))
    projection = []
    for field in arrow_schema:
        if field.name in present:
            projection.append(quote(field.name))
        else:
            projection.append(f"CAST(NULL AS {duck_types[field.name]}) AS {quote(field.name)}")
    return f"SELECT {', '.join(projection)} FROM {source}"


def _look_into(con: duckdb.DuckDBPyConnection, files: tuple[str, ...]) -> _FileSchemas:
    """What `files` hold, read from their footers (every footer once more only when they
    differ: the columns are then their union)."""
    uniform = len(files) == 1
    if not uniform:
        local = [_local(p) for p in files]
        uniform = con.execute(_SCHEMA_VARIANTS, {"files": local}).fetchall() == [(1,)]
    source = _read_parquet(files, union=not uniform)
    described = con.sql(f"DESCRIBE SELECT * FROM {source}").fetchall()
    return _FileSchemas(frozenset(str(row[0]) for row in described), uniform)


@functools.lru_cache(maxsize=1024)
def _read_parquet(files: tuple[str, ...], *, union: bool) -> str:
    """`read_parquet([...])` of these files, with `union_by_name = true` when asked (the
    readers of one snapshot ask for the same text)."""
    literal_files = exp.Array(expressions=[exp.Literal.string(_local(p)) for p in files])
    options = [exp.EQ(this=exp.column("union_by_name"), expression=exp.true())] if union else []
    return exp.func("read_parquet", literal_files, *options).sql(dialect="duckdb")


def remember_columns(files: Sequence[str], columns: Iterable[str]) -> None:
    """Record the columns data files hold, for a writer that wrote them all with one schema:
    reading them needs no look into the files."""
    _file_schemas.put(tuple(files), _FileSchemas(frozenset(columns), uniform=True))


def create_files_view(con: duckdb.DuckDBPyConnection, name: str, paths: Sequence[str]) -> None:
    """A temporary view (the session's own) over exactly these Parquet files (for checks on
    what one write added)."""
    source = _read_parquet(tuple(paths), union=False)
    con.execute(f"CREATE OR REPLACE TEMP VIEW {quote(name)} AS SELECT * FROM {source}")


def create_view(
    con: duckdb.DuckDBPyConnection,
    view: tuple[str, ...],
    table: Table,
    snapshot_id: int,
    window: RowWindow | None = None,
) -> None:
    """Create (or replace) view `view` (optionally schema-qualified) over one snapshot, or
    over its rows in `window`."""
    create_views(con, [(view, snapshot_select(con, table, snapshot_id, window))])


def create_views(
    con: duckdb.DuckDBPyConnection,
    views: Sequence[tuple[tuple[str, ...], str]],
    aliases: Sequence[tuple[tuple[str, ...], tuple[str, ...]]] = (),
) -> None:
    """Create (or replace) each view `(name, select)`, then each alias `(name, target)` as
    another name of an existing view (names optionally schema-qualified; a second name for
    one snapshot costs no second listing). Each schema is created once. An alias of one of
    `views` is that view's select under another name; all of it is one script (a statement
    costs a round trip)."""
    selects = dict(views)
    schemas = {name[0] for name, _ in (*views, *aliases) if len(name) == 2}
    script = [f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}" for schema in sorted(schemas)]
    script += [f"CREATE OR REPLACE VIEW {quote(*name)} AS {select}" for name, select in views]
    script += [
        f"CREATE OR REPLACE VIEW {quote(*name)} AS {selects[target]}"
        for name, target in aliases
        if target in selects
    ]
    if script:
        con.execute("; ".join(script))
    others = [(name, target) for name, target in aliases if target not in selects]
    if not others:
        return
    # Fully qualified: inside a view of schema `s`, a bare name would resolve to `s.<name>`.
    [(database, schema)] = con.execute("SELECT current_database(), current_schema()").fetchall()
    for name, target in others:
        source = quote(str(database), *((str(schema),) if len(target) == 1 else ()), *target)
        con.execute(f"CREATE OR REPLACE VIEW {quote(*name)} AS SELECT * FROM {source}")


def create_alias_view(
    con: duckdb.DuckDBPyConnection, view: tuple[str, ...], target: tuple[str, ...]
) -> None:
    """Create (or replace) view `view` as another name of the existing view `target`."""
    create_views(con, [], [(view, target)])
