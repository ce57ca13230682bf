"""DuckDB sessions: private to their owner, in their time zone, keeping Parquet footers while
still reading a file as it is now."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lakehouse import duck


def _setting(con: duckdb.DuckDBPyConnection, name: str) -> object:
    [(value,)] = con.execute("SELECT current_setting($name)", {"name": name}).fetchall()
    return value


def test_every_session_keeps_parquet_footers_and_an_asset_can_opt_out_for_itself() -> None:
    first = duck.connect()
    first.execute("SET parquet_metadata_cache = false")  # as an asset's own SQL would
    second = duck.connect()

    assert _setting(first, "parquet_metadata_cache") is False
    assert _setting(second, "parquet_metadata_cache") is True
    assert _setting(duck.connect("Europe/Paris"), "parquet_metadata_cache") is True
    first.close()
    second.close()


def test_a_parquet_file_rewritten_in_place_is_read_anew(tmp_path: Path) -> None:
    path = tmp_path / "landing.parquet"
    pq.write_table(pa.table({"id": [1, 2, 3]}), path)
    con = duck.connect()
    query = "SELECT * FROM read_parquet($path) ORDER BY ALL"
    assert con.execute(query, {"path": str(path)}).fetchall() == [(1,), (2,), (3,)]

    pq.write_table(pa.table({"id": [7, 8], "name": ["a", "b"]}), path)  # within the second

    assert con.execute(query, {"path": str(path)}).fetchall() == [(7, "a"), (8, "b")]
    assert duck.connect().execute(query, {"path": str(path)}).fetchall() == [(7, "a"), (8, "b")]
    con.close()


def test_sessions_without_a_catalog_of_their_own_keep_their_views_to_themselves() -> None:
    first = duck.connect(own_catalog=False)
    second = duck.connect(own_catalog=False, timezone="Europe/Paris")
    named = duck.connect()
    first.execute('CREATE OR REPLACE TEMP VIEW "this" AS SELECT 1 AS x')
    second.execute('CREATE OR REPLACE TEMP VIEW "this" AS SELECT 2 AS x')

    assert first.execute('SELECT x FROM "this"').fetchall() == [(1,)]
    assert second.execute('SELECT x FROM "this"').fetchall() == [(2,)]
    with pytest.raises(duckdb.CatalogException):
        named.execute('SELECT x FROM "this"')
    assert _setting(first, "TimeZone") == "UTC"
    assert _setting(second, "TimeZone") == "Europe/Paris"
    for con in (first, second, named):
        con.close()


def test_a_sessions_own_time_zone_stays_its_own() -> None:
    asset_session = duck.connect()
    asset_session.execute("SET TimeZone = 'Asia/Tokyo'")  # as an asset's own SQL would
    partition_session = duck.connect("Europe/Paris")

    assert _setting(duck.connect(), "TimeZone") == "UTC"
    assert _setting(duck.connect(own_catalog=False), "TimeZone") == "UTC"
    assert _setting(asset_session, "TimeZone") == "Asia/Tokyo"
    assert _setting(partition_session, "TimeZone") == "Europe/Paris"
