"""Reading what `main` holds for each asset: the snapshot id and its provenance."""

from __future__ import annotations

from collections.abc import Iterable

from lakehouse.branches import Lakehouse, main_snapshot_id
from lakehouse.provenance import snapshot_provenance
from lakehouse.tables import load_table
from orchestrator.staleness import PublishedState


def read_published(lh: Lakehouse, keys: Iterable[str]) -> dict[str, PublishedState]:
    """Published state per asset key; a missing or never-published table has no code version."""
    states: dict[str, PublishedState] = {}
    for key in keys:
        table = load_table(lh.catalog, key)
        if table is None:
            states[key] = PublishedState()
            continue
        snapshot_id = main_snapshot_id(table)
        provenance = snapshot_provenance(table, snapshot_id)
        states[key] = PublishedState(
            snapshot_id=snapshot_id,
            code_version=provenance.code_version if provenance else None,
            inputs=dict(provenance.inputs) if provenance else {},
        )
    return states
