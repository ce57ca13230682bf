"""Rolling `main` back to an earlier published snapshot, optionally with its downstream.

Only snapshots already in `main`'s own history qualify, and each move is a compare-and-swap.
Downstream assets go back to the newest snapshot of theirs that was built from the snapshot
their upstream now holds; one with no such snapshot is left alone and reported (it is stale).
"""

from __future__ import annotations

from dataclasses import dataclass

from lakehouse.branches import Lakehouse, main_snapshot_id, rollback
from lakehouse.errors import SluiceError
from lakehouse.provenance import published_history
from orchestrator.assets import AssetKey
from orchestrator.loader import Project


@dataclass(frozen=True)
class RollbackStep:
    asset: str
    from_snapshot: int | None
    to_snapshot: int | None
    note: str = ""


def rollback_asset(
    project: Project, lh: Lakehouse, key: AssetKey, *, to: int | None, downstream: bool
) -> list[RollbackStep]:
    """Roll `key` back (to `to`, default: the previous published snapshot)."""
    table = lh.table(str(key))
    current = main_snapshot_id(table)
    history = published_history(table)
    if to is None:
        if len(history) < 2:
            raise SluiceError(
                f"{key} has no earlier published snapshot to roll back to", asset=str(key)
            )
        to = history[1][0]
    elif to not in {s for s, _ in history}:
        raise SluiceError(
            f"snapshot {to} is not a published snapshot in the history of {key}'s main",
            asset=str(key),
        )
    rollback(lh, str(key), to_snapshot_id=to, expected_main=current)
    steps = [RollbackStep(str(key), current, to)]
    if not downstream:
        return steps
    now = {str(key): to}
    for child in project.graph.sorted_keys(project.graph.descendants(key)):
        ident = str(child)
        child_table = lh.table(ident)
        upstreams = {str(u) for u in project.graph.upstream(child)} & set(now)
        match = next(
            (
                snapshot
                for snapshot, prov in published_history(child_table)
                if all(prov.inputs.get(u) == now[u] for u in upstreams)
            ),
            None,
        )
        child_main = main_snapshot_id(child_table)
        if match is None:
            steps.append(
                RollbackStep(ident, child_main, None, "no snapshot built from those inputs")
            )
            continue
        if match != child_main:
            rollback(lh, ident, to_snapshot_id=match, expected_main=child_main)
        steps.append(RollbackStep(ident, child_main, match))
        now[ident] = match
    return steps
