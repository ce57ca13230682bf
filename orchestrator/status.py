"""`sluice status`: per asset, fresh / stale / failed, with its last run and checks.

Freshness comes from the lakehouse (the same staleness function as `plan`); the run history
only adds the last run's outcome and checks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from lakehouse.branches import Lakehouse
from orchestrator.assets import AssetKey
from orchestrator.loader import Project
from orchestrator.partitions import TimePartitions
from orchestrator.planner import PartitionSelection, build_plan, plan_inputs
from orchestrator.published import read_published
from orchestrator.selection import select
from orchestrator.state import CheckRecord, StateStore, StepRecord

FAILED_STATUSES = {"failed", "audit_failed", "conflict", "blocked"}


PartitionState = Literal["published", "stale", "failed", "missing"]


@dataclass(frozen=True)
class AssetStatus:
    asset: str
    state: Literal["fresh", "stale", "failed"]
    explanation: str
    snapshot_id: int | None
    last_step: StepRecord | None
    checks: list[CheckRecord] = field(default_factory=list)
    partitions: dict[PartitionState, list[str]] | None = None
    """For a partitioned asset: partition keys by state, from its start to the latest one."""


def key_ranges(keys: Sequence[str], partitions: TimePartitions) -> list[str]:
    """Contiguous runs of keys as `first..last` (single keys stay alone)."""
    runs: list[list[str]] = []
    for key in keys:
        if runs and partitions.keys(runs[-1][-1], key)[1:] == [key]:
            runs[-1].append(key)
        else:
            runs.append([key])
    return [r[0] if len(r) == 1 else f"{r[0]}..{r[-1]}" for r in runs]


def summarize(states: dict[PartitionState, list[str]], partitions: TimePartitions | None) -> str:
    """`31 published (2024-01-01..2024-01-31), 1 failed (2024-02-01), 10 missing (...)`."""
    assert partitions is not None
    parts = []
    for state, keys in states.items():
        if keys:
            ranges = key_ranges(keys, partitions)
            shown = ", ".join(ranges[:3]) + (", ..." if len(ranges) > 3 else "")
            parts.append(f"{len(keys)} {state} ({shown})")
    return "partitions: " + "; ".join(parts)


def _partition_states(
    project: Project, lh: Lakehouse, key: AssetKey, latest: dict[tuple[str, str | None], StepRecord]
) -> dict[PartitionState, list[str]]:
    partitions = project.graph.assets[key].partitions
    assert partitions is not None
    last = partitions.latest(datetime.now(UTC)) or partitions.first_key()
    published = read_published(
        lh, project.graph, sorted(str(k) for k in plan_inputs(project.graph, [key]))
    )
    plan = build_plan(
        project.graph,
        [key],
        published,
        partitions=PartitionSelection(first=partitions.first_key(), last=last),
    )
    states: dict[PartitionState, list[str]] = {
        "published": [],
        "stale": [],
        "failed": [],
        "missing": [],
    }
    stale = {s.partition: s for s in plan.steps}
    for partition in partitions.keys(partitions.first_key(), last):
        step = stale.get(partition)
        record = latest.get((str(key), partition))
        if step is None:
            states["published"].append(partition)
        elif record is not None and record.status in FAILED_STATUSES:
            states["failed"].append(partition)
        elif any(r.kind == "never_published" for r in step.reasons):
            states["missing"].append(partition)
        else:
            states["stale"].append(partition)
    return states


def asset_statuses(
    project: Project, lh: Lakehouse, store: StateStore, selection: Sequence[str]
) -> list[AssetStatus]:
    selected = select(project.graph, selection)
    published = read_published(
        lh, project.graph, sorted(str(k) for k in plan_inputs(project.graph, selected))
    )
    unpartitioned = [k for k in selected if project.graph.assets[k].partitions is None]
    plan = build_plan(project.graph, unpartitioned, published)
    stale = {s.asset: s for s in plan.steps}
    latest = store.latest_steps()
    statuses = []
    for asset_key in selected:
        key = str(asset_key)
        if project.graph.assets[asset_key].partitions is not None:
            states = _partition_states(project, lh, asset_key, latest)
            state: Literal["fresh", "stale", "failed"] = (
                "failed" if states["failed"] else "stale" if states["stale"] else "fresh"
            )
            last_partition = max(
                (r for (a, _), r in latest.items() if a == key),
                key=lambda r: r.started_at or datetime.min.replace(tzinfo=UTC),
                default=None,
            )
            statuses.append(
                AssetStatus(
                    asset=key,
                    state=state,
                    explanation=summarize(states, project.graph.assets[asset_key].partitions),
                    snapshot_id=published[key].snapshot_id if published[key].published else None,
                    last_step=last_partition,
                    checks=list(last_partition.checks) if last_partition else [],
                    partitions=states,
                )
            )
            continue
        last = latest.get((key, None))
        step = stale.get(key)
        if step is None:
            state = "fresh"
        elif last is not None and last.status in FAILED_STATUSES:
            state = "failed"
        else:
            state = "stale"
        statuses.append(
            AssetStatus(
                asset=key,
                state=state,
                explanation=step.explanation if step else "",
                snapshot_id=published[key].snapshot_id if published[key].published else None,
                last_step=last,
                checks=list(last.checks) if last else [],
            )
        )
    return statuses
