"""The only place a pyiceberg catalog is built."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlparse

from pyiceberg.catalog import Catalog, load_catalog

from lakehouse.config import CatalogConfig
from lakehouse.errors import ConfigError
from lakehouse.lru import LruCache
from lakehouse.sql_catalog import CachingSqlCatalog


def _prepare_local_paths(properties: dict[str, str]) -> None:
    """Create the folders an embedded SQLite catalog and a file:// warehouse need."""
    uri = properties.get("uri", "")
    if uri.startswith("sqlite:///"):
        db_path = Path(uri.removeprefix("sqlite:///"))
        db_path.parent.mkdir(parents=True, exist_ok=True)
    warehouse = properties.get("warehouse", "")
    if warehouse.startswith("file://"):
        Path(urlparse(warehouse).path).mkdir(parents=True, exist_ok=True)


OPEN_ATTEMPTS = 3
SQL_CATALOG = "lakehouse.sql_catalog.CachingSqlCatalog"


def _with_caching_sql_catalog(properties: dict[str, str]) -> dict[str, str]:
    """An SQL catalog (named by `type = "sql"` or by its database URI, as pyiceberg infers it)
    is built as `CachingSqlCatalog`, through pyiceberg's `py-catalog-impl` setting; any other
    catalog, or one that names its own implementation, as configured."""
    kind = properties.get("type", "").lower()
    uri = properties.get("uri", "")
    if "py-catalog-impl" in properties:
        return properties
    if kind == "sql" or (not kind and uri.startswith(("sqlite", "postgresql"))):
        rest = {k: v for k, v in properties.items() if k != "type"}
        return {**rest, "py-catalog-impl": SQL_CATALOG}
    return properties


def _release(catalog: Catalog) -> None:
    """Close the idle pooled connections of a catalog no longer kept (it stays usable)."""
    if isinstance(catalog, CachingSqlCatalog):
        catalog.engine.dispose()


KEPT = 8
_opened: LruCache[Catalog] = LruCache(KEPT, on_evict=_release, process_local=True)
"""SQL catalogs by name and settings. Opening one builds an SQLAlchemy engine, connects, checks
the catalog's tables and compiles every statement anew (5 ms of each run that opens it); a
process that runs again (a schedule, repeated `materialize()` calls) reuses the one it opened.
A kept catalog holds no state but its connection pool, which drops connections to a database
file replaced since (see `lakehouse.sql_catalog`). A forked child opens its own."""


def open_catalog(config: CatalogConfig) -> Catalog:
    """The configured catalog; a misconfiguration is a `ConfigError`, not a traceback. An SQL
    catalog is opened once per process and settings, then reused (see `_opened`).

    Several processes may open a catalog that does not exist yet at the same moment (two
    backfills started together on a fresh project): each creates the catalog's own tables and
    all but one fail with "already exists". Opening is therefore retried a few times; the
    retry finds the tables in place.
    """
    properties = dict(config.properties)
    _prepare_local_paths(properties)
    properties = _with_caching_sql_catalog(properties)
    key = (config.name, tuple(sorted(properties.items())))
    kept = _opened.get(key)
    if kept is not None:
        return kept
    for attempt in range(1, OPEN_ATTEMPTS + 1):
        try:
            catalog = load_catalog(config.name, **properties)
            if isinstance(catalog, CachingSqlCatalog):
                _opened.put(key, catalog)
            return catalog
        except Exception as exc:  # pyiceberg raises many types for bad settings
            if attempt < OPEN_ATTEMPTS:
                time.sleep(0.05 * attempt)
                continue
            shown = {
                k: v for k, v in properties.items() if "secret" not in k and "password" not in k
            }
            raise ConfigError(
                f"cannot open Iceberg catalog {config.name!r} {shown}: {exc}"
            ) from exc
    raise AssertionError("unreachable")


def ensure_namespace(catalog: Catalog, namespace: str) -> None:
    """Create `namespace` if it does not exist (idempotent, safe under concurrency).

    Two writers may race to create it; the loser's error is harmless once it exists.
    """
    try:
        catalog.create_namespace_if_not_exists(namespace)
    except Exception:
        if not catalog.namespace_exists(namespace):
            raise
