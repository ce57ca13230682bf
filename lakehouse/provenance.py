"""Provenance carried in the summary properties of every published snapshot.

The lakehouse is the source of truth for staleness: with the run-history database gone, these
properties alone say which code and which upstream snapshots built what `main` holds.
"""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict, Field
from pyiceberg.table import Table
from pyiceberg.table.snapshots import ancestors_of

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
    snapshot = table.snapshot_by_id(snapshot_id)
    if snapshot is None or snapshot.summary is None:
        return None
    return Provenance.from_properties(dict(snapshot.summary.additional_properties))


def published_history(table: Table) -> list[tuple[int, Provenance]]:
    """The snapshots Sluice published into `main`'s history, newest first: one per write (the
    head of each write; the delete snapshot inside the same commit shares its provenance)."""
    head = table.metadata.refs.get("main")
    if head is None:
        return []
    history: list[tuple[int, Provenance]] = []
    previous: Provenance | None = None
    for snapshot in ancestors_of(table.snapshot_by_id(head.snapshot_id), table.metadata):
        provenance = snapshot_provenance(table, snapshot.snapshot_id)
        if provenance is not None and provenance != previous:
            history.append((snapshot.snapshot_id, provenance))
        previous = provenance
    return history
