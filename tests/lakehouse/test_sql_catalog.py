"""The SQL catalog parses each metadata file once, and still sees every other writer's commit."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pyiceberg.catalog import Catalog, load_catalog
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import CommitFailedException, NoSuchTableError
from pyiceberg.serializers import FromInputFile
from pyiceberg.table import Table
from pyiceberg.table.update import AssertRefSnapshotId, AssertTableUUID, SetPropertiesUpdate

from lakehouse.catalog import ensure_namespace, open_catalog
from lakehouse.config import CatalogConfig
from lakehouse.sql_catalog import CachingSqlCatalog, new_metadata_cache

ROWS = pa.table({"id": pa.array([1, 2, 3], pa.int64())})


def _with_table(catalog_config: CatalogConfig) -> tuple[Catalog, Table]:
    """This project's catalog, holding a new empty table `bronze.t`; and that table."""
    catalog = open_catalog(catalog_config)
    ensure_namespace(catalog, "bronze")
    return catalog, catalog.create_table("bronze.t", schema=ROWS.schema)


def _parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The locations of the metadata files parsed from now on."""
    seen: list[str] = []
    parse = FromInputFile.table_metadata

    def counting(input_file: Any, encoding: str = "utf-8") -> Any:
        seen.append(input_file.location)
        return parse(input_file, encoding)

    monkeypatch.setattr(FromInputFile, "table_metadata", staticmethod(counting))
    return seen


def test_an_sql_catalog_is_opened_as_the_caching_one(catalog_config: CatalogConfig) -> None:
    assert catalog_config.properties["type"] == "sql"
    assert isinstance(open_catalog(catalog_config), CachingSqlCatalog)
    untyped = {k: v for k, v in catalog_config.properties.items() if k != "type"}
    inferred = dataclasses.replace(catalog_config, properties=untyped)  # from the URI
    assert isinstance(open_catalog(inferred), CachingSqlCatalog)
    own = {**untyped, "py-catalog-impl": "pyiceberg.catalog.sql.SqlCatalog"}
    assert type(open_catalog(dataclasses.replace(catalog_config, properties=own))) is SqlCatalog


def test_loads_and_commits_parse_each_metadata_file_once(
    catalog_config: CatalogConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog, _ = _with_table(catalog_config)
    parsed = _parses(monkeypatch)

    first = catalog.load_table("bronze.t")
    created = first.metadata_location
    again = catalog.load_table("bronze.t")
    first.append(ROWS)  # its commit validates against the current metadata: no parse either
    after = catalog.load_table("bronze.t")

    assert again.metadata_location == created
    assert after.metadata_location not in (created, None)
    assert after.scan().to_arrow().num_rows == 3
    assert len(parsed) <= 1  # the file written at creation, at most once


def test_a_commit_by_another_tool_is_seen_at_the_next_load(catalog_config: CatalogConfig) -> None:
    ours, _ = _with_table(catalog_config)
    before = ours.load_table("bronze.t")

    other = load_catalog(catalog_config.name, **catalog_config.properties)
    assert type(other) is SqlCatalog
    other.load_table("bronze.t").append(ROWS)

    now = ours.load_table("bronze.t")
    assert now.metadata_location != before.metadata_location
    assert now.scan().to_arrow().num_rows == 3
    assert before.scan().to_arrow().num_rows == 0


def test_a_load_finds_only_a_table_of_this_catalog_that_exists_now(
    catalog_config: CatalogConfig,
) -> None:
    ours, _ = _with_table(catalog_config)
    neighbour = open_catalog(dataclasses.replace(catalog_config, name="neighbour"))
    ensure_namespace(neighbour, "bronze")
    neighbour.create_table("bronze.u", schema=ROWS.schema)  # same database, other catalog

    assert ours.load_table("bronze.t").name() == ("bronze", "t")
    assert ours.load_table(("bronze", "t")).metadata_location is not None
    for missing in ("bronze.u", "silver.t", "bronze.v"):
        with pytest.raises(NoSuchTableError, match=missing):
            ours.load_table(missing)

    load_catalog(catalog_config.name, **catalog_config.properties).drop_table("bronze.t")
    with pytest.raises(NoSuchTableError, match="bronze.t"):
        ours.load_table("bronze.t")


def test_the_least_recently_used_files_go_past_the_budget(catalog_config: CatalogConfig) -> None:
    metadata = _with_table(catalog_config)[1].metadata  # no snapshot: weighs 1
    cache = new_metadata_cache(budget=2)
    cache.put("a", metadata)
    cache.put("b", metadata)
    assert cache.get("a") is metadata  # now "b" is the least recently used
    cache.put("c", metadata)
    assert cache.get("b") is None
    assert cache.get("a") is metadata and cache.get("c") is metadata


def _set(table: Any, key: str, value: str, *requirements: Any) -> Any:
    """Commit `key = value` on `table` (asserting its uuid and `requirements`)."""
    return table.catalog.commit_table(
        table,
        (AssertTableUUID(uuid=table.metadata.table_uuid), *requirements),
        (SetPropertiesUpdate(updates={key: value}),),
    )


def test_a_commit_is_checked_against_the_current_metadata_not_the_callers(
    catalog_config: CatalogConfig,
) -> None:
    catalog, stale = _with_table(catalog_config)
    catalog.load_table("bronze.t").append(ROWS)  # main now exists; `stale` has no main

    no_main = AssertRefSnapshotId(ref="main", snapshot_id=None)  # type: ignore[call-arg]
    with pytest.raises(CommitFailedException, match="main"):
        _set(stale, "k", "v", no_main)
    # A commit from a stale object still applies to what the table holds now.
    _set(stale, "k", "v")
    now = catalog.load_table("bronze.t")
    assert now.properties["k"] == "v"
    assert now.scan().to_arrow().num_rows == 3
    other = load_catalog(catalog_config.name, **catalog_config.properties)
    assert other.load_table("bronze.t").metadata_location == now.metadata_location


def test_a_commit_that_changes_nothing_is_still_checked_against_the_current_metadata(
    catalog_config: CatalogConfig,
) -> None:
    catalog, stale = _with_table(catalog_config)  # no main
    catalog.load_table("bronze.t").append(ROWS)

    no_main = AssertRefSnapshotId(ref="main", snapshot_id=None)  # type: ignore[call-arg]
    with pytest.raises(CommitFailedException, match="main"):
        catalog.commit_table(stale, (no_main,), ())  # requirements only: nothing to swap


def _unreferenced_metadata(table: Table) -> set[str]:
    """Metadata files in the table's folder that neither its current metadata nor its log
    name: files a failed commit left behind."""
    folder = Path(table.location().removeprefix("file://")) / "metadata"
    named = {table.metadata_location, *(e.metadata_file for e in table.metadata.metadata_log)}
    return {
        path.as_uri()
        for path in folder.glob("*.metadata.json")
        if path.as_uri() not in named and str(path) not in named
    }


def test_a_commit_applies_on_top_of_a_writer_that_committed_since_its_table_was_loaded(
    catalog_config: CatalogConfig,
) -> None:
    catalog, _ = _with_table(catalog_config)
    other = load_catalog(catalog_config.name, **catalog_config.properties)
    mine = catalog.load_table("bronze.t")
    other.load_table("bronze.t").append(ROWS)

    _set(mine, "k", "v")

    now = other.load_table("bronze.t")
    assert now.properties["k"] == "v"
    assert now.scan().to_arrow().num_rows == 3
    assert _unreferenced_metadata(now) == set()


def test_a_commit_loses_to_a_writer_that_commits_while_it_writes_its_metadata(
    catalog_config: CatalogConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog, _ = _with_table(catalog_config)
    other = load_catalog(catalog_config.name, **catalog_config.properties)
    write = CachingSqlCatalog._write_metadata

    def racing(self: CachingSqlCatalog, metadata: Any, io: Any, metadata_path: str) -> None:
        write(self, metadata, io, metadata_path)
        other.load_table("bronze.t").append(ROWS)  # between each read and swap of ours

    monkeypatch.setattr(CachingSqlCatalog, "_write_metadata", racing)
    with pytest.raises(CommitFailedException, match="updated by another process"):
        _set(catalog.load_table("bronze.t"), "k", "v")
    monkeypatch.setattr(CachingSqlCatalog, "_write_metadata", write)

    now = other.load_table("bronze.t")
    assert "k" not in now.properties
    # It tried twice, on the table it had, then on the one it found: both were raced.
    assert now.scan().to_arrow().num_rows == 6
    assert catalog.load_table("bronze.t").metadata_location == now.metadata_location
    assert _unreferenced_metadata(now) == set()


def test_tables_load_while_another_writer_holds_a_write_transaction_on_the_catalog(
    catalog_config: CatalogConfig,
) -> None:
    catalog, table = _with_table(catalog_config)
    table.append(ROWS)
    database = catalog_config.properties["uri"].removeprefix("sqlite:///")
    writer = sqlite3.connect(database, timeout=0, isolation_level=None)
    try:
        writer.execute("BEGIN EXCLUSIVE")  # with a rollback journal, this locks readers out
        writer.execute("UPDATE iceberg_tables SET previous_metadata_location = NULL")
        assert catalog.load_table("bronze.t").scan().to_arrow().num_rows == len(ROWS)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert catalog.load_table("bronze.t").metadata_location == table.metadata_location


@pytest.mark.parametrize("legacy", [False, True])
def test_metadata_files_are_written_as_pyicebergs_configuration_says(
    catalog_config: CatalogConfig, monkeypatch: pytest.MonkeyPatch, legacy: bool
) -> None:
    if legacy:  # pyiceberg's setting for readers that need `current-snapshot-id: -1`
        monkeypatch.setenv("PYICEBERG_LEGACY_CURRENT_SNAPSHOT_ID", "true")
    _, table = _with_table(catalog_config)  # no snapshot yet
    written = json.loads(Path(table.metadata_location.removeprefix("file://")).read_text())
    assert written.get("current-snapshot-id") == (-1 if legacy else None)
    table.append(ROWS)
    assert table.metadata.current_snapshot_id is not None
    assert FromInputFile.table_metadata(table.io.new_input(table.metadata_location)) == (
        table.metadata
    )
