"""Opening a SQLAlchemy engine that several Sluice processes and threads can share.

Both the run-history and the schedule stores open their database here, so they agree on how
SQLite is used: a busy timeout instead of immediate "database is locked" errors, `BEGIN
IMMEDIATE` for writes and a plain `BEGIN` for connections marked `READ_ONLY`, WAL when the
file system allows it, and one connection plus a lock for an in-memory database. A URL that
cannot be used is a `ConfigError`, with any password hidden.

An engine is built once per URL and process and then reused, its pooled connections included:
SQLAlchemy keeps its compiled statements, its dialect's first-connection checks and its event
set-up per engine, and rebuilding them cost 5-8 ms of every run in a process that runs again (a
schedule, repeated `materialize()` calls). A pooled connection to an SQLite file deleted or
replaced since is dropped at checkout (`lakehouse.sqlite_files`), and a store whose tables are
missing recreates them, so a reused engine behaves as a new one would. An in-memory database is
never shared: each engine of one is its own database.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, NamedTuple

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.pool import StaticPool

from lakehouse.errors import ConfigError
from lakehouse.lru import LruCache
from lakehouse.sqlite_files import follow_replaced_file, journal_in_wal

SQLITE_BUSY_TIMEOUT_S = 30.0
READ_ONLY = "sluice_read_only"


KEPT = 8
_engines: LruCache[Engine] = LruCache(KEPT, on_evict=Engine.dispose, process_local=True)
"""Engines by URL; a forked child builds its own (the parent's pooled connections are not its
to use)."""


class OpenedEngine(NamedTuple):
    engine: Engine
    lock: threading.Lock | None
    """What in-memory SQLite needs (one connection must not interleave transactions of
    threads); None for every other database."""
    shown: str
    """The URL as it may be shown (password hidden)."""


def open_engine(url: str, what: str) -> OpenedEngine:
    """An engine for `url` set up for concurrent Sluice processes. A bad URL is a
    `ConfigError`."""
    kept = _engines.get(url)
    if kept is not None:
        shown = kept.url.render_as_string(hide_password=True)
        if kept.dialect.name == "sqlite":
            try:
                _make_folder(kept.url.database or "")  # it may have been deleted since
            except OSError as exc:
                raise ConfigError(f"cannot use {what} URL {shown!r}: {exc}") from exc
        return OpenedEngine(kept, None, shown)
    engine, lock, shown = _build_engine(url, what)
    if lock is None:
        follow_replaced_file(engine)
        _engines.put(url, engine)
    return OpenedEngine(engine, lock, shown)


def forget_engine(url: str, engine: Engine) -> None:
    """Stop sharing the engine of `url` (a store could not use it: the next store checks the
    database again) and close its pooled connections."""
    _engines.discard(url)
    engine.dispose()


def _build_engine(url: str, what: str) -> tuple[Engine, threading.Lock | None, str]:
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise ConfigError(f"invalid {what} URL {url!r}: {exc}") from exc
    shown = parsed.render_as_string(hide_password=True)
    try:
        if parsed.get_backend_name() != "sqlite":
            return create_engine(parsed, pool_pre_ping=True), None, shown
        database = parsed.database or ""
        in_memory = database in ("", ":memory:") or "mode=memory" in database
        connect_args: dict[str, Any] = {
            "timeout": SQLITE_BUSY_TIMEOUT_S,
            "check_same_thread": False,
        }
        lock = None
        if in_memory:
            lock = threading.Lock()
            engine = create_engine(parsed, connect_args=connect_args, poolclass=StaticPool)
        else:
            _make_folder(database)
            engine = create_engine(parsed, connect_args=connect_args)
        _install_sqlite_transactions(engine)
        return engine, lock, shown
    except (ArgumentError, NoSuchModuleError, ImportError, ValueError, OSError) as exc:
        raise ConfigError(f"cannot use {what} URL {shown!r}: {exc}") from exc


def _make_folder(database: str) -> None:
    """Create the folder of an SQLite database file."""
    if database and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def _install_sqlite_transactions(engine: Engine) -> None:
    """Let SQLAlchemy, not pysqlite, emit BEGIN: IMMEDIATE for writes, deferred for reads.

    pysqlite's own deferred BEGIN makes a writer that first reads fail at once with
    "database is locked" when another connection writes concurrently (the lock upgrade cannot
    wait); taking the write lock up front lets the busy timeout do its job.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    journal_in_wal(engine)

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        read_only = conn.get_execution_options().get(READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")
