"""Executing a plan: independent steps in parallel, each as soon as its upstreams landed.

The pool is a small interface (`Executor`): anything that can run a `StepSpec` (plain data) and
return a future of its `StepOutcome` plugs in. A failed step blocks only its own downstream;
the rest of the plan goes on.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Protocol

from orchestrator.planner import Plan, PlannedStep
from orchestrator.published import node_key
from orchestrator.runner import StepOutcome, StepSpec, run_step


class Executor(Protocol):
    """Runs steps somewhere and hands back futures."""

    def submit(self, spec: StepSpec) -> Future[StepOutcome]: ...

    def shutdown(self) -> None: ...


class ThreadExecutor:
    """Steps on a thread pool of this process (DuckDB and Arrow release the GIL)."""

    def __init__(
        self, max_workers: int, step: Callable[[StepSpec], StepOutcome] = run_step
    ) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="sluice-step")
        self._step = step

    def submit(self, spec: StepSpec) -> Future[StepOutcome]:
        return self._pool.submit(self._step, spec)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


@dataclass(frozen=True)
class Blocked:
    """A step that did not run, and why."""

    asset: str
    reason: str
    upstream: str | None = None
    """The upstream step whose failure blocked this one (None: blocked for another reason)."""


def _result(step: PlannedStep, future: Future[StepOutcome]) -> StepOutcome | Blocked:
    """A step whose worker itself crashed counts as blocked-by-error, never as published."""
    try:
        return future.result()
    except Exception as exc:
        return Blocked(step.node, f"worker failed: {type(exc).__name__}: {exc}")


def _published(result: StepOutcome | Blocked) -> bool:
    return isinstance(result, StepOutcome) and result.status == "published"


StartHook = Callable[[PlannedStep, StepSpec], None]
DoneHook = Callable[[PlannedStep, StepOutcome | Blocked], None]


def execute(
    plan: Plan,
    executor: Executor,
    make_spec: Callable[[PlannedStep, dict[str, int]], StepSpec],
    *,
    on_start: StartHook | None = None,
    on_done: DoneHook | None = None,
) -> dict[str, StepOutcome | Blocked]:
    """Run every step of `plan`; returns the outcome (or block) of each step by node key
    (`asset`, or `asset@partition`)."""
    by_key = {s.node: s for s in plan.steps}
    results: dict[str, StepOutcome | Blocked] = {}
    published: dict[str, int] = {}
    newest: dict[str, int] = {}  # asset -> sequence number of the snapshot in `published`
    running: dict[Future[StepOutcome], PlannedStep] = {}
    started: set[str] = set()

    def finish(step: PlannedStep, result: StepOutcome | Blocked) -> None:
        results[step.node] = result
        if isinstance(result, StepOutcome) and result.status == "published":
            assert result.snapshot_id is not None
            # The newest publish of an asset is its main: what a whole-asset reader pins.
            # Partitions of one asset may finish in another order than they published.
            if result.sequence_number >= newest.get(step.asset, -1):
                newest[step.asset] = result.sequence_number
                published[step.asset] = result.snapshot_id
            published[step.node] = result.snapshot_id
            for partition in step.partitions:
                published[node_key(step.asset, partition)] = result.snapshot_id
        if on_done:
            on_done(step, result)

    def ready() -> list[PlannedStep]:
        found = []
        for step in plan.steps:
            if step.node in results or step.node in started:
                continue
            if step.blocked:
                finish(step, Blocked(step.node, step.blocked))
                continue
            in_plan = (
                [u for u in step.upstream if u in by_key]
                if step.waits_for is None
                else list(step.waits_for)
            )
            failed = [u for u in in_plan if u in results and not _published(results[u])]
            if failed:
                reason = f"upstream {failed[0]} did not publish"
                finish(step, Blocked(step.node, reason, upstream=failed[0]))
                continue
            if all(u in results for u in in_plan):
                found.append(step)
        return found

    try:
        while True:
            for step in ready():
                inputs = dict(step.pinned)
                inputs.update({u: published[u] for u in step.upstream if u in published})
                spec = make_spec(step, inputs)
                if on_start:
                    on_start(step, spec)
                running[executor.submit(spec)] = step
                started.add(step.node)
            if not running:
                if len(results) == len(plan.steps):
                    break
                continue
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in done:
                step = running.pop(future)
                finish(step, _result(step, future))
    finally:
        executor.shutdown()
    return results
