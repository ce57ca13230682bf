"""The only place DuckDB connections are made, so every one is configured alike."""

from __future__ import annotations

import duckdb


def connect() -> duckdb.DuckDBPyConnection:
    """A fresh in-memory connection without a progress bar (output stays clean in logs)."""
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    return con
