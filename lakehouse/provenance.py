"""Provenance carried in the summary properties of every published snapshot.

The lakehouse is the source of truth for staleness: with the run-history database gone, these
properties alone say which code and which upstream snapshots built what `main` holds.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field
from pyiceberg.table import Table
from pyiceberg.table.refs import MAIN_BRANCH
from pyiceberg.table.snapshots import Snapshot

from lakehouse.lru import LruCache

PREFIX = "sluice."
RUN_ID = "sluice.run-id"
CODE_VERSION = "sluice.code-version"
PARTITION = "sluice.partition"
INPUTS = "sluice.inputs"
CHECKS = "sluice.checks"
WINDOW = "sluice.window"


class Provenance(BaseModel):
    """What built a snapshot: run, code version, partition, pinned input snapshots, checks.

    `checks` names the error-severity checks the snapshot had to pass to reach `main`.
    """

    model_config = ConfigDict(frozen=True)

    run_id: str
    code_version: str
    partition: str | None = None
    inputs: dict[str, int] = Field(default_factory=dict)
    checks: tuple[str, ...] = ()
    window: tuple[str, str, str] | None = None
    """`(column, start, end)` of the rows this snapshot replaced; None for the whole table."""

    def to_properties(self) -> dict[str, str]:
        """Snapshot summary properties (Iceberg summaries hold strings only)."""
        return {
            RUN_ID: self.run_id,
            CODE_VERSION: self.code_version,
            PARTITION: self.partition or "",
            INPUTS: json.dumps(self.inputs, sort_keys=True),
            CHECKS: json.dumps(list(self.checks)),
            **({WINDOW: json.dumps(list(self.window))} if self.window else {}),
        }

    @classmethod
    def from_properties(cls, properties: dict[str, str]) -> Provenance | None:
        """Read provenance back; None for snapshots Sluice did not publish."""
        if RUN_ID not in properties or CODE_VERSION not in properties:
            return None
        return cls(
            run_id=properties[RUN_ID],
            code_version=properties[CODE_VERSION],
            partition=properties.get(PARTITION) or None,
            inputs={k: int(v) for k, v in json.loads(properties.get(INPUTS, "{}")).items()},
            checks=tuple(json.loads(properties.get(CHECKS, "[]"))),
            window=tuple(json.loads(properties[WINDOW])) if WINDOW in properties else None,
        )


def snapshot_provenance(table: Table, snapshot_id: int | None) -> Provenance | None:
    """Provenance of one snapshot of `table`, or None."""
    if snapshot_id is None:
        return None
    return _provenance_of(table.snapshot_by_id(snapshot_id))


_FIELDS = (RUN_ID, CODE_VERSION, PARTITION, INPUTS, CHECKS, WINDOW)
_read: LruCache[tuple[Provenance | None]] = LruCache(20_000)
"""Provenance by the summary properties it is read from: the provenance of every snapshot a
table keeps is read after each publish (is any due for expiry?) and to plan a partitioned
asset, and parsing them (JSON, a model) is most of that."""


def _provenance_of(snapshot: Snapshot | None) -> Provenance | None:
    if snapshot is None or snapshot.summary is None:
        return None
    properties = snapshot.summary.additional_properties
    key = tuple(properties.get(name) for name in _FIELDS)
    return _read.get_or_make(key, lambda: (Provenance.from_properties(dict(properties)),))[0]


def _order(snapshot: Snapshot) -> tuple[int, int]:
    """Position in the table's history: sequence numbers grow with every commit (format v2);
    the timestamp breaks ties on format v1 tables, which have none."""
    return (snapshot.sequence_number or 0, snapshot.timestamp_ms)


def main_lineage(table: Table) -> list[Snapshot]:
    """`main`'s history newest first: the snapshots `main` holds or held on its way to where it
    is now, as far as they are still in the metadata.

    Without expiry this is exactly `ancestors_of(main)`. Expiry (`lakehouse.maintenance`)
    removes old snapshots and breaks that parent chain (pyiceberg clears the parent id of a
    snapshot whose parent was removed), while deliberately keeping older snapshots that still
    matter, such as the newest write of each partition. The walk continues past a break using
    the table's snapshot log, which records every snapshot `main` was set to and keeps the
    entries of retained snapshots: going back through the log, an entry belongs to the current
    lineage only if it is older (lower sequence number) than everything accepted so far, which
    skips the snapshots a rollback stepped back over. Snapshots `main` never pointed at, such
    as the heads of failed audit branches or of abandoned re-apply branches, are never in the
    log and never returned. Each accepted snapshot's own intact parent chain is walked too.

    This relies on `main` moving only the ways Sluice moves it: forward to a descendant
    (publish) or back to one of its ancestors (rollback); and on expiry keeping the log entries
    of the snapshots it keeps, as pyiceberg's does (Java's expiry truncates the log: a table
    expired by it keeps only its intact chain here).
    """
    head = table.metadata.refs.get(MAIN_BRANCH)
    if head is None:
        return []
    by_id = {s.snapshot_id: s for s in table.metadata.snapshots}
    starts = [head.snapshot_id, *(e.snapshot_id for e in reversed(table.metadata.snapshot_log))]
    lineage: list[Snapshot] = []
    frontier: tuple[int, int] | None = None
    for start in starts:
        snapshot = by_id.get(start)
        while snapshot is not None and (frontier is None or _order(snapshot) < frontier):
            lineage.append(snapshot)
            frontier = _order(snapshot)
            parent = snapshot.parent_snapshot_id
            snapshot = by_id.get(parent) if parent is not None else None
    return lineage


def published_history(
    table: Table, lineage: Sequence[Snapshot] | None = None
) -> list[tuple[int, Provenance]]:
    """The snapshots Sluice published into `main`'s history, newest first: one per write (the
    head of each write; the delete snapshot inside the same commit shares its provenance).

    Built on `main_lineage`, so after snapshot expiry it still lists every retained write,
    including those beyond a break in the parent chain, and never a snapshot that was not
    published to `main`. Two writes are merged only when one is the direct parent of the other
    with identical provenance (the delete + append pair of one commit). `lineage`, when
    given, is `main_lineage(table)` already computed.
    """
    history: list[tuple[int, Provenance]] = []
    child: Snapshot | None = None
    child_provenance: Provenance | None = None
    for snapshot in main_lineage(table) if lineage is None else lineage:
        provenance = _provenance_of(snapshot)
        same_commit = (
            child is not None
            and child.parent_snapshot_id == snapshot.snapshot_id
            and child_provenance == provenance
        )
        if provenance is not None and not same_commit:
            history.append((snapshot.snapshot_id, provenance))
        child, child_provenance = snapshot, provenance
    return history
