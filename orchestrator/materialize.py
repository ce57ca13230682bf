"""One run: plan the selection, record it, execute it, report it.

Shared by `sluice materialize` and (later) the scheduler, so both use the same staleness
function, the same planner and the same executor.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from orchestrator.assets import AssetKey
from orchestrator.loader import Project, cache_dir
from orchestrator.planner import (
    PartitionSelection,
    Plan,
    PlannedStep,
    build_plan,
    plan_inputs,
)
from orchestrator.published import read_published
from orchestrator.selection import select

if TYPE_CHECKING:
    from lakehouse.branches import Lakehouse
    from orchestrator.executor import Blocked
    from orchestrator.runner import StepOutcome
    from orchestrator.state import StateStore, StepRecord

PUBLISHED_CACHE = "published.json"


def new_run_id() -> str:
    """Sortable and unique: `20261123-230501-3f9a1c`."""
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


def open_lakehouse(project: Project) -> Lakehouse:
    from lakehouse.branches import Lakehouse
    from lakehouse.catalog import open_catalog
    from lakehouse.locks import TableLocks

    return Lakehouse(open_catalog(project.config.catalog), TableLocks(project.config.lock_dir))


def make_plan(
    project: Project,
    lh: Lakehouse | None,
    selection: Sequence[str],
    *,
    force: bool = False,
    partitions: PartitionSelection | None = None,
    ranged: bool = False,
) -> Plan:
    """Plan `selection` against what `main` holds right now.

    `lh` None opens the lakehouse only if some table has to be loaded: with the project's
    plan cache (`orchestrator.plan_cache`) an unchanged SQLite catalog is planned without
    pyiceberg. The cache never answers for a table whose metadata location changed.
    """
    from orchestrator.plan_cache import PublishedCache

    selected = select(project.graph, selection)
    needed = plan_inputs(project.graph, selected)
    published = read_published(
        lh if lh is not None else (lambda: open_lakehouse(project)),
        project.graph,
        sorted(str(k) for k in needed),
        cache=PublishedCache(cache_dir(project.root) / PUBLISHED_CACHE, project.config.catalog),
    )
    return build_plan(
        project.graph,
        selected,
        published,
        force=force,
        partitions=partitions or PartitionSelection(),
        ranged=ranged,
    )


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    plan: Plan
    results: dict[str, StepOutcome | Blocked]

    @property
    def definition_error(self) -> bool:
        """A step failed because of how its asset is defined (exit code 2, like a bad graph)."""
        from orchestrator.runner import StepOutcome

        return any(isinstance(r, StepOutcome) and r.definition_error for r in self.results.values())

    @property
    def ok(self) -> bool:
        from orchestrator.runner import StepOutcome

        return all(
            isinstance(r, StepOutcome) and r.status == "published" for r in self.results.values()
        )


def _record(result: StepOutcome | Blocked, step: PlannedStep, run_id: str) -> StepRecord:
    from orchestrator.executor import Blocked
    from orchestrator.state import CheckRecord, StepRecord

    reasons = [r.text() for r in step.reasons]
    if isinstance(result, Blocked):
        return StepRecord(
            run_id=run_id,
            asset=step.asset,
            partition=step.partition,
            status="blocked",
            error=result.reason,
            reasons=reasons,
        )
    return StepRecord(
        run_id=run_id,
        asset=step.asset,
        partition=step.partition,
        status=result.status,
        attempts=result.attempts,
        started_at=result.started_at,
        finished_at=result.finished_at,
        duration_s=(result.finished_at - result.started_at).total_seconds(),
        snapshot_id=result.snapshot_id,
        branch=None if result.status == "published" else result.branch,
        rows=result.rows,
        error=result.error,
        reasons=reasons,
        checks=[CheckRecord(**dataclasses.asdict(c)) for c in result.checks],
    )


EventHook = Callable[[str, PlannedStep, "StepOutcome | Blocked | None"], None]


def run_plan(
    project: Project,
    lh: Lakehouse,
    store: StateStore,
    plan: Plan,
    *,
    command: str,
    selection: str,
    on_event: EventHook | None = None,
    max_workers: int | None = None,
    run_id: str | None = None,
) -> RunSummary:
    """Execute `plan` as one recorded run (`max_workers` overrides the configured pool)."""
    from orchestrator import alerts
    from orchestrator.executor import execute, make_executor
    from orchestrator.runner import StepSpec, branch_name, remember
    from orchestrator.state import StepRecord

    run_id = run_id or new_run_id()
    store.start_run(run_id, command=command, selection=selection, close_abandoned=True)
    previous = alerts.previous_statuses(project, store)  # before this run's own steps
    remember(project, lh)

    def make_spec(step: PlannedStep, inputs: dict[str, int]) -> StepSpec:
        return StepSpec(
            project_root=str(project.root),
            run_id=run_id,
            asset=step.asset,
            inputs=inputs,
            branch=branch_name(run_id, AssetKey.parse(step.asset), step.partition),
            partition=step.partition,
            partitions=step.partitions,
        )

    def on_start(step: PlannedStep, spec: StepSpec) -> None:
        store.record_step(
            StepRecord(
                run_id=run_id,
                asset=step.asset,
                partition=step.partition,
                status="running",
                started_at=datetime.now(UTC),
                branch=spec.branch,
                reasons=[r.text() for r in step.reasons],
            )
        )
        if on_event:
            on_event("start", step, None)

    def on_done(step: PlannedStep, result: StepOutcome | Blocked) -> None:
        store.record_step(_record(result, step, run_id))
        if on_event:
            on_event("done", step, result)

    status: Literal["succeeded", "failed", "interrupted"] = "interrupted"
    try:
        results = execute(
            plan,
            make_executor(
                project.config.executor.kind,
                max_workers or project.config.executor.max_workers,
            ),
            make_spec,
            on_start=on_start,
            on_done=on_done,
        )
        summary = RunSummary(run_id=run_id, plan=plan, results=results)
        status = "succeeded" if summary.ok else "failed"
        alerts.alert_run(project, run_id, results, previous)  # queued; never waits or raises
        return summary
    finally:
        store.finish_run(run_id, status)


def materialize_selection(
    project: Project,
    selection: Sequence[str],
    *,
    command: str,
    force: bool = False,
    as_of: datetime | None = None,
    on_event: EventHook | None = None,
) -> RunSummary:
    """Plan and run `selection` now: the one entry point of the CLI and the scheduler.

    `as_of` is the moment the run stands for (a schedule tick); partitioned assets build the
    partitions complete at that moment.
    """
    from orchestrator.state import StateStore

    lh = open_lakehouse(project)
    plan = make_plan(
        project, lh, selection, force=force, partitions=PartitionSelection(as_of=as_of)
    )
    store = StateStore(project.config.state_url)
    try:
        return run_plan(
            project,
            lh,
            store,
            plan,
            command=command,
            selection=" ".join(selection) or "*",
            on_event=on_event,
        )
    finally:
        store.close()
