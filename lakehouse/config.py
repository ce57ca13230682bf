"""Catalog settings: what `pyiceberg.catalog.load_catalog` receives."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class CatalogConfig(BaseModel):
    """A named pyiceberg catalog and its properties (`type`, `uri`, `warehouse`, ...).

    Any catalog pyiceberg supports works (sql, rest, glue, hive); paths must already be absolute.
    """

    model_config = ConfigDict(frozen=True)

    name: str = "sluice"
    properties: dict[str, str] = Field(default_factory=dict)
