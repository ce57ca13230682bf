"""The only place DuckDB connections are made, so every one is configured alike.

Opening a DuckDB database costs 15-20 ms (most of a small WAP cycle), so the process keeps one
in-memory database and every `connect()` is a cursor on it (well under a millisecond). Each
cursor gets its own attached in-memory catalog as its default (`USE`), so the views, schemas
and tables one step creates are invisible to every other step, exactly as with a separate
database; session settings, variables and registered Arrow tables are per cursor anyway. The
catalog is detached once the cursor is gone (closed and unreferenced). Sluice's own sessions that
need one-part names only (an audit of checks that name no table) make temporary views instead,
which DuckDB keeps per cursor: no catalog to attach and detach.

Parquet footers are kept by the database (`parquet_metadata_cache`, set globally): a step binds
each upstream's files four or five times (its views, the asset's query, the write), and each
bind parsed the whole footer again (0.5 ms for a 10M-row file of 80 row groups). DuckDB checks
a kept footer against the file's modification time and version before using it, and keeps
them within its memory limit, least recently used first, so a file rewritten in place is read
anew. An asset's own `SET parquet_metadata_cache` applies to its step only.

DuckDB's session `TimeZone` defaults to the host's, and it decides how a `TIMESTAMP` compares
with a `TIMESTAMPTZ`, how a `TIMESTAMPTZ` casts to a date, and so on. The database is set to
UTC when it is opened (`SET GLOBAL`), so a session is in UTC, whatever the host's, unless it
asks for another zone (`SET` on a session applies to that session only): a query means the same
on every host, and most sessions need no statement of their own for it (0.1 ms each). Like
`parquet_metadata_cache`, the zone is the database's: an asset's SQL must not `SET GLOBAL` it.
"""

from __future__ import annotations

import functools
import itertools
import os
import threading
import weakref

import duckdb
from sqlglot import exp

DEFAULT_TIMEZONE = "UTC"

_lock = threading.Lock()
_database: duckdb.DuckDBPyConnection | None = None
_names = itertools.count()
_unused: list[str] = []
"""Catalogs (their quoted names) whose cursor is gone. Appended to by finalizers (any thread,
any moment), and detached at the next `connect()`, never from inside a finalizer."""
_inherited: list[object] = []


def _forget_after_fork() -> None:
    """A forked child must not use the parent's database (its threads did not survive), nor
    drop it: closing it would wait for those threads. It stays referenced, unused."""
    global _database, _lock
    if _database is not None:
        _inherited.append(_database)
    _database = None
    _unused.clear()
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def _quote(name: str) -> str:
    return str(exp.to_identifier(name, quoted=True).sql(dialect="duckdb"))


def connect(
    timezone: str = DEFAULT_TIMEZONE, *, own_catalog: bool = True
) -> duckdb.DuckDBPyConnection:
    """A fresh, private DuckDB session in `timezone` (an IANA name; UTC unless told),
    without a progress bar (logs stay clean).

    Without `own_catalog`, the session gets no catalog of its own: it can create temporary
    objects only (`CREATE TEMP VIEW`, which DuckDB keeps per session, so they are as private),
    and costs less to open and to drop (no catalog to attach, then detach: 0.5 ms a step). For
    Sluice's own queries that need no schema-qualified names."""
    global _database
    with _lock:
        if _database is None:
            _database = duckdb.connect()
            _database.execute(
                "SET enable_progress_bar = false; SET GLOBAL parquet_metadata_cache = true; "
                + _set_zone(DEFAULT_TIMEZONE, "GLOBAL")
            )
        unused = [_unused.pop() for _ in range(len(_unused))]
        con = _database.cursor()
    # One script: each statement costs a round trip through the relation layer.
    script = [f"DETACH DATABASE IF EXISTS {old}" for old in unused]
    if own_catalog:
        name = _quote(f"sluice_session_{next(_names)}")
        weakref.finalize(con, _unused.append, name)
        script += [f"ATTACH ':memory:' AS {name}", f"USE {name}"]
    if timezone != DEFAULT_TIMEZONE:
        script.append(_set_zone(timezone))
    if script:
        con.execute("; ".join(script))
    return con


@functools.lru_cache(maxsize=64)
def _set_zone(zone: str, scope: str = "SESSION") -> str:
    """The statement setting `TimeZone` to the IANA zone `zone` in `scope` (a rendered
    literal: `SET` takes no bound parameters)."""
    return f"SET {scope} TimeZone = {exp.Literal.string(zone).sql(dialect='duckdb')}"
