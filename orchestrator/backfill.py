"""Backfills: every (asset, partition) of a selection over a date range, resumably.

A backfill is recorded with a state per (asset, partition): missing, running, failed,
audit_failed, published. Running it again, or resuming it by id, does only what is not
published and fresh, because it plans with the one staleness function: a published, fresh
partition is never rewritten. A failed partition blocks only its own downstream.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from orchestrator.errors import SelectionError
from orchestrator.executor import Blocked
from orchestrator.loader import Project
from orchestrator.materialize import (
    EventHook,
    RunSummary,
    make_plan,
    new_run_id,
    open_lakehouse,
    run_plan,
)
from orchestrator.planner import PartitionSelection, Plan, PlannedStep
from orchestrator.published import node_key
from orchestrator.runner import StepOutcome
from orchestrator.state import BackfillPartition, BackfillState, StateStore


@dataclass(frozen=True)
class BackfillRequest:
    selection: tuple[str, ...]
    first: str
    last: str
    parallel: int = 1
    ranged: bool = False


@dataclass(frozen=True)
class BackfillOutcome:
    backfill_id: str
    plan: Plan
    summary: RunSummary | None
    failed: tuple[tuple[str, str], ...]
    """`(asset@partition, error)` of every partition that failed on its own."""
    blocked: tuple[tuple[str, str], ...] = ()
    """`(asset@partition, failed upstream)` of partitions that did not run because of those."""

    @property
    def ok(self) -> bool:
        return not self.failed and not self.blocked


def resume_request(store: StateStore, backfill_id: str) -> BackfillRequest:
    """The request a recorded backfill was started with."""
    found = store.backfill(backfill_id)
    if found is None:
        raise SelectionError(f"no backfill {backfill_id!r}; `sluice backfills` lists them")
    record, _ = found
    return BackfillRequest(
        selection=tuple(record.selection.split()),
        first=record.first,
        last=record.last,
        ranged=record.ranged,
    )


def plan_backfill(project: Project, request: BackfillRequest) -> Plan:
    """Every stale (asset, partition) of the request, in dependency order."""
    return make_plan(
        project,
        open_lakehouse(project),
        request.selection,
        partitions=PartitionSelection(first=request.first, last=request.last),
        ranged=request.ranged,
    )


def _partition_items(
    step: PlannedStep, state: BackfillState, run_id: str, error: str | None
) -> list[BackfillPartition]:
    keys = step.partitions or ((step.partition,) if step.partition else ("",))
    return [
        BackfillPartition(
            asset=step.asset, partition=k or "", state=state, run_id=run_id, error=error
        )
        for k in keys
    ]


def run_backfill(
    project: Project,
    request: BackfillRequest,
    *,
    backfill_id: str | None = None,
    on_event: EventHook | None = None,
) -> BackfillOutcome:
    """Plan and run the backfill, recording per-partition states as they change."""
    plan = plan_backfill(project, request)
    backfill_id = backfill_id or f"bf-{new_run_id()}"
    store = StateStore(project.config.state_url)
    run_id = new_run_id()
    try:
        store.start_backfill(
            backfill_id,
            selection=" ".join(request.selection) or "*",
            first=request.first,
            last=request.last,
            ranged=request.ranged,
        )
        fresh = [n.partition("@") for n in plan.fresh]
        store.set_backfill_partitions(
            backfill_id,
            [BackfillPartition(asset=a, partition=p, state="published") for a, _, p in fresh]
            + [i for s in plan.steps for i in _partition_items(s, "missing", run_id, None)],
        )
        failed: list[tuple[str, str]] = []
        blocked: list[tuple[str, str]] = []

        def event(kind: str, step: PlannedStep, result: StepOutcome | Blocked | None) -> None:
            if kind == "start":
                store.set_backfill_partitions(
                    backfill_id, _partition_items(step, "running", run_id, None)
                )
            elif isinstance(result, Blocked):
                if result.upstream is not None:
                    blocked.append((step.node, result.upstream))
                else:
                    failed.append((step.node, result.reason))
                store.set_backfill_partitions(
                    backfill_id, _partition_items(step, "failed", run_id, result.reason)
                )
            elif result is not None:
                state: BackfillState = (
                    "published"
                    if result.status == "published"
                    else "audit_failed"
                    if result.status == "audit_failed"
                    else "failed"
                )
                if state != "published":
                    failed.append((step.node, result.error or state))
                store.set_backfill_partitions(
                    backfill_id, _partition_items(step, state, run_id, result.error)
                )
            if on_event:
                on_event(kind, step, result)

        summary = None
        if plan.steps:
            summary = run_plan(
                project,
                open_lakehouse(project),
                store,
                plan,
                command="backfill",
                selection=f"{' '.join(request.selection) or '*'} {request.first}..{request.last}",
                on_event=event,
                max_workers=request.parallel,
                run_id=run_id,
            )
        store.finish_backfill(backfill_id, "failed" if failed or blocked else "succeeded")
        return BackfillOutcome(backfill_id, plan, summary, tuple(failed), tuple(blocked))
    finally:
        store.close()


def describe(plan: Plan) -> Sequence[str]:
    """One line per planned (asset, partition) for `--dry-run`."""
    return [f"{node_key(s.asset, s.partition)}  {s.explanation}" for s in plan.steps]
