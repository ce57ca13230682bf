"""`sluice status`: per asset, fresh / stale / failed, with its last run and checks.

Freshness comes from the lakehouse (the same staleness function as `plan`); the run history
only adds the last run's outcome and checks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from lakehouse.branches import Lakehouse
from orchestrator.loader import Project
from orchestrator.planner import build_plan, plan_inputs
from orchestrator.published import read_published
from orchestrator.selection import select
from orchestrator.state import CheckRecord, StateStore, StepRecord

FAILED_STATUSES = {"failed", "audit_failed", "conflict", "blocked"}


@dataclass(frozen=True)
class AssetStatus:
    asset: str
    state: Literal["fresh", "stale", "failed"]
    explanation: str
    snapshot_id: int | None
    last_step: StepRecord | None
    checks: list[CheckRecord] = field(default_factory=list)


def asset_statuses(
    project: Project, lh: Lakehouse, store: StateStore, selection: Sequence[str]
) -> list[AssetStatus]:
    selected = select(project.graph, selection)
    published = read_published(lh, project.graph, sorted(str(k) for k in plan_inputs(project.graph, selected)))
    plan = build_plan(project.graph, selected, published)
    stale = {s.asset: s for s in plan.steps}
    latest = store.latest_steps()
    statuses = []
    for key in (str(k) for k in selected):
        last = latest.get((key, None))
        step = stale.get(key)
        if step is None:
            state: Literal["fresh", "stale", "failed"] = "fresh"
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
