"""How Sluice uses SQLite files through SQLAlchemy: pooled connections that follow their
database file when it is replaced, and the WAL journal.

A connection keeps reading the file it opened, even once that file is deleted or replaced by
another at the same path (a project's catalog folder removed and rebuilt while a process that
keeps its engines runs on). SQLAlchemy's pool is told to drop such a connection at checkout and
open a new one, which sees the file now there.
"""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.exc import DisconnectionError


def follow_replaced_file(engine: Engine) -> None:
    """Drop, at checkout, a pooled connection to an SQLite file deleted or replaced since it
    was opened (nothing to do for other databases, in-memory ones and URI file names)."""
    database = engine.url.database or ""
    if engine.dialect.name != "sqlite" or database in ("", ":memory:"):
        return
    if database.startswith("file:"):
        return  # URI file names: SQLite resolves them, not this process

    def identity() -> tuple[int, int] | None:
        try:
            found = os.stat(database)
        except OSError:
            return None
        return found.st_dev, found.st_ino

    @event.listens_for(engine, "checkout")
    def _checkout(_dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        current = identity()
        if record.info.setdefault("sluice_file", current) != current:
            raise DisconnectionError("the SQLite database file was replaced")


def journal_in_wal(engine: Engine) -> None:
    """Put every new connection of an SQLite file engine in WAL mode with `synchronous=NORMAL`.

    Readers and the writer then never wait for one another, and a commit appends to the log
    without waiting for the disk (the default rollback journal syncs twice per commit: 0.7-0.8
    ms on a fast disk, far more on a slow one). A commit survives a crash of the process; one
    made just before a power loss may be lost, the database still consistent. That is the
    durability of everything else a write leaves on a local disk: Parquet and metadata files
    are not synced either, so a synced catalog row could only point at a file lost with the
    power. WAL is an optimisation, never a requirement: where the file system refuses it (a
    network drive) the connection keeps its journal."""
    database = engine.url.database or ""
    if engine.dialect.name != "sqlite" or database in ("", ":memory:") or "mode=memory" in database:
        return

    @event.listens_for(engine, "connect")
    def _wal(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        except Exception:
            pass
        finally:
            cursor.close()
