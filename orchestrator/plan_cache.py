"""Planning without loading every table: table states cached by metadata location.

Deciding staleness needs, per table, what `main`'s head snapshot records (and, for a
partitioned asset, the writes in its history). Loading a table means a catalog lookup plus
reading and validating its whole metadata file; for 10,000 unchanged tables that is seconds.
But an Iceberg metadata file is immutable and every commit (append, publish, rollback, schema
change, from Sluice or from anything else) points the catalog at a new one. So a state read
from metadata location L is true for as long as the catalog still points at L, and planning
only needs the current location of every table, which a SQL catalog holds in one table.

Guarantees:

* a cached state is used only when its location equals the table's current location, read
  from the catalog during this plan: a commit made anywhere since makes it a miss;
* a miss loads the table through pyiceberg and caches what it read under the location of the
  metadata it actually loaded;
* catalogs without a cheap listing of locations (REST, Glue, ...) load every table, as before;
* the cache file is only ever replaced atomically; unreadable, foreign-format or missing
  files count as empty. Deleting it is always safe;
* a table as this process's own publish left it (`remember_published`) is kept in memory by
  its metadata location: a later plan of this process (a schedule, repeated `materialize()`
  calls) reads its state from it, without a load and without rewriting the file for it. The
  file learns that location from the next plan that loads the table (another process's).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from lakehouse.lru import LruCache
from orchestrator.cache_files import read_json_object, section, write_json_atomically
from orchestrator.published import TableState, table_state

if TYPE_CHECKING:
    from pyiceberg.table import Table

    from lakehouse.branches import Lakehouse
    from lakehouse.config import CatalogConfig

_published: LruCache[Table] = LruCache(64, process_local=True)
"""Tables by metadata location, as this process's publishes left them (see the module
docstring). A forked child keeps none: they hold its parent's catalog connections."""


def remember_published(table: Table) -> None:
    """Keep `table`, as a publish of this process just left it, for this process's next plans."""
    _published.put(str(table.metadata_location), table)


CACHE_FORMAT = 2
"""Bump whenever `TableState` or the way it is read changes: old files are then ignored. (2: a
provenance cache keyed by manifest list could store another table's provenance for a table
registered from copied metadata.)"""

SQLITE_PREFIX = "sqlite:///"
_POINTERS_V1 = (
    "SELECT table_namespace, table_name, metadata_location FROM iceberg_tables "
    "WHERE catalog_name = ? AND (iceberg_type = 'TABLE' OR iceberg_type IS NULL)"
)
_POINTERS_V0 = (
    "SELECT table_namespace, table_name, metadata_location FROM iceberg_tables "
    "WHERE catalog_name = ?"
)


def sqlite_pointers(config: CatalogConfig) -> dict[str, str] | None:
    """`namespace.table` -> current metadata location, for an embedded SQLite catalog.

    This reads pyiceberg's `SqlCatalog` tables directly (the Iceberg JDBC catalog layout that
    pyiceberg and Java share) instead of going through pyiceberg, for two reasons: pyiceberg
    lists tables without their locations, so its only way is a `load_table` (a query plus a
    full metadata parse) per table; and importing its SQL catalog (with SQLAlchemy) alone
    costs more than `sluice plan`'s whole time budget. The read is read-only and uses bound
    parameters. Views are skipped as pyiceberg skips them. Returns None when the catalog is
    not a `sqlite:///` SQL catalog or cannot be read this way (callers then use pyiceberg).
    """
    properties = config.properties
    uri = properties.get("uri", "")
    if properties.get("type", "sql") != "sql" or not uri.startswith(SQLITE_PREFIX):
        return None
    path = Path(uri.removeprefix(SQLITE_PREFIX))
    if str(path) == ":memory:" or "?" in uri:
        return None
    if not path.exists():
        return {}  # no catalog yet, so no table yet
    try:
        db = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        try:
            rows = db.execute(_POINTERS_V1, (config.name,)).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return {}  # pyiceberg creates its tables with the first table
            rows = db.execute(_POINTERS_V0, (config.name,)).fetchall()  # no iceberg_type yet
    except sqlite3.Error:
        return None
    finally:
        db.close()
    return {f"{namespace}.{name}": location for namespace, name, location in rows if location}


def catalog_pointers(lh: Lakehouse) -> dict[str, str] | None:
    """`namespace.table` -> current metadata location from an open pyiceberg `SqlCatalog`
    (any database SQLAlchemy reaches, e.g. PostgreSQL), in one query with pyiceberg's own
    table model; None for catalogs that cannot list locations."""
    from pyiceberg.catalog.sql import IcebergTables, SqlCatalog
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    catalog = lh.catalog
    if not isinstance(catalog, SqlCatalog):
        return None
    stmt = select(
        IcebergTables.table_namespace, IcebergTables.table_name, IcebergTables.metadata_location
    ).where(IcebergTables.catalog_name == catalog.name)
    type_filter = getattr(catalog, "_iceberg_type_filter", None)
    if callable(type_filter) and (condition := type_filter()) is not None:
        stmt = stmt.where(condition)
    with Session(catalog.engine) as session:
        rows = session.execute(stmt).all()
    return {f"{namespace}.{name}": location for namespace, name, location in rows if location}


class PublishedCache:
    """Table states by identifier, each valid for one metadata location, kept in a JSON file."""

    def __init__(self, path: Path, catalog: CatalogConfig) -> None:
        self.path = path
        self.catalog = catalog

    def pointers(self, lakehouse: Callable[[], Lakehouse]) -> dict[str, str] | None:
        """Current metadata location of every table, or None if the catalog cannot say cheaply."""
        found = sqlite_pointers(self.catalog)
        if found is None and self.catalog.properties.get("type", "sql") == "sql":
            found = catalog_pointers(lakehouse())
        return found

    def table_states(
        self, lakehouse: Callable[[], Lakehouse], partitioned: Mapping[str, bool]
    ) -> dict[str, TableState]:
        """The current state of every table of `partitioned` (key -> whether its history is
        needed) that exists; tables are loaded only when the cache cannot answer."""
        pointers = self.pointers(lakehouse)
        stored = self._load()
        states: dict[str, TableState] = {}
        changed = False
        for key, needs_history in partitioned.items():
            location = pointers.get(key) if pointers is not None else None
            if pointers is not None and location is None:
                continue  # no such table
            raw = stored.get(key)
            if location is not None and raw is not None and raw.get("location") == location:
                cached = TableState.from_json(raw)
                if cached.history is not None or not needs_history:
                    states[key] = cached
                    continue
            table = _published.get(location) if location is not None else None
            if table is not None:
                states[key] = table_state(table, with_history=needs_history)
                continue
            from lakehouse.tables import load_table  # only for tables the cache cannot answer

            table = load_table(lakehouse().catalog, key)
            if table is None:
                continue
            state = table_state(table, with_history=needs_history)
            states[key] = state
            if pointers is not None:
                stored[key] = state.to_json()
                changed = True
        if pointers is not None:
            gone = [key for key in stored if key not in pointers]
            for key in gone:
                del stored[key]
            if changed or gone:
                write_json_atomically(self.path, {"format": CACHE_FORMAT, "tables": stored})
        return states

    def _load(self) -> dict[str, Any]:
        return section(read_json_object(self.path, format=CACHE_FORMAT), "tables")
