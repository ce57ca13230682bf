"""Pooled SQLite connections that follow their database file when it is replaced.

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
