"""Opening the catalog: fresh catalogs opened by several processes at once, bad settings."""

from __future__ import annotations

import dataclasses
import multiprocessing
from pathlib import Path
from typing import Any

import pytest
from pyiceberg.catalog import Catalog, load_catalog

from lakehouse.catalog import ensure_namespace, open_catalog
from lakehouse.config import CatalogConfig
from lakehouse.errors import ConfigError


def _open_after(barrier: Any, config_json: str) -> None:
    barrier.wait(30)
    catalog = open_catalog(CatalogConfig.model_validate_json(config_json))
    ensure_namespace(catalog, "bronze")


def test_processes_opening_one_fresh_catalog_at_once_all_succeed(
    catalog_config: CatalogConfig,
) -> None:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(4)
    procs = [
        context.Process(target=_open_after, args=(barrier, catalog_config.model_dump_json()))
        for _ in range(4)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    assert ("bronze",) in open_catalog(catalog_config).list_namespaces()


def test_a_lost_creation_race_is_retried(
    catalog_config: CatalogConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    def losing_once(name: str, **properties: str) -> Catalog:
        calls.append(name)
        if len(calls) == 1:
            raise RuntimeError("table iceberg_tables already exists")
        return load_catalog(name, **properties)

    monkeypatch.setattr("lakehouse.catalog.load_catalog", losing_once)
    assert open_catalog(catalog_config).list_namespaces() == []
    assert len(calls) == 2


def test_a_bad_catalog_setting_is_a_config_error(tmp_path: Path) -> None:
    config = CatalogConfig(properties={"type": "no-such-catalog-type"})
    with pytest.raises(ConfigError, match="cannot open Iceberg catalog 'sluice'"):
        open_catalog(config)


def test_a_catalog_is_opened_once_per_process_and_settings(catalog_config: CatalogConfig) -> None:
    first = open_catalog(catalog_config)
    assert open_catalog(catalog_config) is first
    named = dataclasses.replace(catalog_config, name="another")
    assert open_catalog(named) is not first


def test_a_kept_catalog_reads_a_database_file_replaced_since(catalog_config: CatalogConfig) -> None:
    kept = open_catalog(catalog_config)
    ensure_namespace(kept, "old")
    assert kept.list_namespaces() == [("old",)]
    Path(catalog_config.properties["uri"].removeprefix("sqlite:///")).unlink()
    load_catalog("test", **catalog_config.properties).create_namespace("new")  # a new file

    assert open_catalog(catalog_config) is kept
    assert kept.list_namespaces() == [("new",)]
