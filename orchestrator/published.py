"""Reading what `main` holds: per asset, and per partition of a partitioned asset.

A partition's version is the snapshot of the newest write in `main`'s history that covered it;
its provenance says which code and which upstream versions built it. Node keys are
`layer.name` for an asset and `layer.name@partition` for one partition of it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from orchestrator.assets import AssetKey
from orchestrator.graph import AssetGraph
from orchestrator.partitions import TimePartitions
from orchestrator.staleness import PublishedState

if TYPE_CHECKING:
    from pyiceberg.table import Table

    from lakehouse.branches import Lakehouse
    from orchestrator.plan_cache import PublishedCache

RANGE_SEPARATOR = ".."


def node_key(asset: str, partition: str | None) -> str:
    """`silver.orders` or `silver.orders@2024-01-05`."""
    return asset if partition is None else f"{asset}@{partition}"


def label_keys(partitions: TimePartitions, label: str) -> list[str]:
    """Partition keys a write covered: `2024-01-05`, or every key of `2024-01-01..2024-01-31`."""
    first, _, last = label.partition(RANGE_SEPARATOR)
    return partitions.keys(first, last or first)


@dataclass(frozen=True)
class PublishedWrite:
    """One write in `main`'s history, as its provenance recorded it (plain, cacheable data)."""

    snapshot_id: int
    code_version: str
    inputs: Mapping[str, int]
    partition: str | None
    windowed: bool
    """False for a whole-table write, which replaced every partition before it."""


@dataclass(frozen=True)
class TableState:
    """What one metadata file of a table says about `main`: everything planning reads.

    A metadata file never changes (every commit writes a new one), so a `TableState` stays
    true for its `location` forever; that is what makes it safe to cache by location.
    `history` is None when it was not read (the asset was not partitioned at the time).
    """

    location: str
    snapshot_id: int | None
    code_version: str | None = None
    inputs: Mapping[str, int] = field(default_factory=dict)
    history: tuple[PublishedWrite, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        history = None
        if self.history is not None:
            history = [
                [w.snapshot_id, w.code_version, dict(w.inputs), w.partition, w.windowed]
                for w in self.history
            ]
        return {
            "location": self.location,
            "snapshot_id": self.snapshot_id,
            "code_version": self.code_version,
            "inputs": dict(self.inputs),
            "history": history,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TableState:
        history = data.get("history")
        return cls(
            location=str(data["location"]),
            snapshot_id=None if data.get("snapshot_id") is None else int(data["snapshot_id"]),
            code_version=data.get("code_version"),
            inputs={str(k): int(v) for k, v in data.get("inputs", {}).items()},
            history=None
            if history is None
            else tuple(
                PublishedWrite(int(s), str(c), {str(k): int(v) for k, v in i.items()}, p, bool(w))
                for s, c, i, p, w in history
            ),
        )


def table_state(table: Table, *, with_history: bool) -> TableState:
    """Read `main`'s head provenance (and, if asked, its published history) from `table`."""
    from lakehouse.branches import main_snapshot_id
    from lakehouse.provenance import published_history, snapshot_provenance

    snapshot_id = main_snapshot_id(table)
    provenance = snapshot_provenance(table, snapshot_id)
    history = None
    if with_history:
        history = tuple(
            PublishedWrite(
                snapshot_id=snapshot,
                code_version=prov.code_version,
                inputs=dict(prov.inputs),
                partition=prov.partition,
                windowed=prov.window is not None,
            )
            for snapshot, prov in published_history(table)
        )
    return TableState(
        location=str(table.metadata_location),
        snapshot_id=snapshot_id,
        code_version=provenance.code_version if provenance else None,
        inputs=dict(provenance.inputs) if provenance else {},
        history=history,
    )


def read_published(
    lh: Lakehouse | Callable[[], Lakehouse],
    graph: AssetGraph,
    keys: Iterable[str],
    *,
    cache: PublishedCache | None = None,
) -> dict[str, PublishedState]:
    """Published state per asset key, and per partition key of partitioned assets; a missing
    or never-published table or partition is absent or has no code version.

    `lh` may be a function returning the lakehouse: it is then called only if a table has to
    be loaded. With `cache`, tables whose current metadata location is the one a cached state
    was read from are not loaded at all (see `orchestrator.plan_cache`).
    """
    opened: list[Lakehouse] = []

    def lakehouse() -> Lakehouse:
        if not opened:
            opened.append(lh() if callable(lh) else lh)
        return opened[0]

    wanted = list(keys)
    declared = {key: graph.assets[_asset_key(key)].partitions for key in wanted}
    partitioned = {key: partitions is not None for key, partitions in declared.items()}
    if cache is not None:
        tables = cache.table_states(lakehouse, partitioned)
    else:
        loaded = {key: _load_state(lakehouse(), key, partitioned[key]) for key in wanted}
        tables = {key: state for key, state in loaded.items() if state is not None}
    states: dict[str, PublishedState] = {}
    for key in wanted:
        table = tables.get(key)
        if table is None:
            states[key] = PublishedState()
            continue
        states[key] = PublishedState(
            snapshot_id=table.snapshot_id,
            code_version=table.code_version,
            inputs=dict(table.inputs),
        )
        partitions = declared[key]
        if partitions is not None:
            states.update(partition_states(key, partitions, table.history or ()))
    return states


def _asset_key(text: str) -> AssetKey:
    """The key of `layer.name` (validated by the graph lookup that follows: no regex here)."""
    layer, _, name = text.partition(".")
    return AssetKey(layer, name)


def _load_state(lh: Lakehouse, key: str, with_history: bool) -> TableState | None:
    from lakehouse.tables import load_table

    table = load_table(lh.catalog, key)
    return None if table is None else table_state(table, with_history=with_history)


def partition_states(
    key: str, partitions: TimePartitions, history: Iterable[PublishedWrite]
) -> dict[str, PublishedState]:
    """Per partition node of `key`: the newest write in `history` (newest first) covering it."""
    states: dict[str, PublishedState] = {}
    for write in history:
        if not write.windowed or write.partition is None:
            break  # a whole-table write replaced every partition before it
        try:
            covered = label_keys(partitions, write.partition)
        except Exception:
            continue  # written under another partitioning; its code version differs
        state = PublishedState(write.snapshot_id, write.code_version, dict(write.inputs))
        for partition in covered:
            states.setdefault(node_key(key, partition), state)
    return states
