"""Reading what `main` holds: per asset, and per partition of a partitioned asset.

A partition's version is the snapshot of the newest write in `main`'s history that covered it;
its provenance says which code and which upstream versions built it. Node keys are
`layer.name` for an asset and `layer.name@partition` for one partition of it.
"""

from __future__ import annotations

from collections.abc import Iterable

from lakehouse.branches import Lakehouse, main_snapshot_id
from lakehouse.provenance import published_history, snapshot_provenance
from lakehouse.tables import load_table
from orchestrator.assets import AssetKey
from orchestrator.graph import AssetGraph
from orchestrator.partitions import TimePartitions
from orchestrator.staleness import PublishedState

RANGE_SEPARATOR = ".."


def node_key(asset: str, partition: str | None) -> str:
    """`silver.orders` or `silver.orders@2024-01-05`."""
    return asset if partition is None else f"{asset}@{partition}"


def label_keys(partitions: TimePartitions, label: str) -> list[str]:
    """Partition keys a write covered: `2024-01-05`, or every key of `2024-01-01..2024-01-31`."""
    first, _, last = label.partition(RANGE_SEPARATOR)
    return partitions.keys(first, last or first)


def read_published(
    lh: Lakehouse, graph: AssetGraph, keys: Iterable[str]
) -> dict[str, PublishedState]:
    """Published state per asset key, and per partition key of partitioned assets; a missing
    or never-published table or partition is absent or has no code version."""
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
        partitions = graph.assets[AssetKey.parse(key)].partitions
        if partitions is None:
            continue
        for snapshot, prov in published_history(table):
            if prov.window is None or prov.partition is None:
                break  # a whole-table write replaced every partition before it
            try:
                covered = label_keys(partitions, prov.partition)
            except Exception:
                continue  # written under another partitioning; its code version differs
            state = PublishedState(snapshot, prov.code_version, dict(prov.inputs))
            for partition in covered:
                states.setdefault(node_key(key, partition), state)
    return states
