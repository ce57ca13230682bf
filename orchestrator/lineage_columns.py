"""Column lineage of one asset, with upstream schemas read from the catalog."""

from __future__ import annotations

from lakehouse.branches import Lakehouse
from lakehouse.tables import load_table
from orchestrator.assets import AssetKey
from orchestrator.errors import DefinitionError
from orchestrator.lineage import column_lineage
from orchestrator.loader import Project


def asset_column_lineage(project: Project, lh: Lakehouse, key: AssetKey) -> dict[str, list[str]]:
    """Output column -> upstream `layer.table.column`s, for SQL assets."""
    asset = project.graph.assets[key]
    if asset.kind != "sql" or asset.sql is None:
        raise DefinitionError(
            f"column lineage needs a SQL asset; {key} is a Python function", asset=str(key)
        )
    schemas: dict[str, dict[str, str]] = {}
    for upstream in project.graph.upstream(key):
        table = load_table(lh.catalog, str(upstream))
        if table is not None:
            schemas[str(upstream)] = {f.name: str(f.field_type) for f in table.schema().fields}
    return column_lineage(asset.sql, schemas)
