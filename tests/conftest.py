"""Shared fixtures: a throw-away Iceberg catalog (SQLite + file warehouse) in a temp dir."""

from __future__ import annotations

from pathlib import Path

import pytest

from lakehouse.branches import Lakehouse
from lakehouse.catalog import open_catalog
from lakehouse.config import CatalogConfig
from lakehouse.locks import TableLocks


@pytest.fixture
def catalog_config(tmp_path: Path) -> CatalogConfig:
    root = tmp_path / "catalog"
    return CatalogConfig(
        name="test",
        properties={
            "type": "sql",
            "uri": f"sqlite:///{root / 'catalog.db'}",
            "warehouse": f"file://{root / 'warehouse'}",
        },
    )


@pytest.fixture
def lh(catalog_config: CatalogConfig, tmp_path: Path) -> Lakehouse:
    return Lakehouse(open_catalog(catalog_config), TableLocks(tmp_path / "catalog" / "locks"))
