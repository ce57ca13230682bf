"""Executing a plan: independent steps in parallel, each as soon as its upstreams landed.

The pool is a small interface (`Executor`): anything that can run a `StepSpec` (plain data) and
return a future of its `StepOutcome` plugs in. A failed step blocks only its own downstream;
the rest of the plan goes on. A step is handed to the pool only when a worker is free for it,
so a step recorded as running is running, and a worker that dies takes down only the steps it
was running.

`[executor] kind` picks the pool: `threads` (the default: one process; DuckDB and Arrow release
the GIL, the Python around them does not; the process keeps a few idle step threads for its next
runs) or `processes` (worker processes forked from this one, which already holds the loaded
project; Python code of two steps runs truly in parallel, at the cost of a fork per worker and
a catalog connection each).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import (
    FIRST_COMPLETED,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, Protocol

from orchestrator.planner import Plan, PlannedStep
from orchestrator.published import node_key
from orchestrator.runner import StepOutcome, StepSpec, run_step


class Executor(Protocol):
    """Runs steps somewhere and hands back futures."""

    @property
    def capacity(self) -> int:
        """How many steps it runs at once."""
        ...

    def submit(self, spec: StepSpec) -> Future[StepOutcome]: ...

    def shutdown(self) -> None: ...


KEPT_THREADS = 8
"""Step threads a process keeps between runs, idle. A new thread starts with cold memory (its
first allocations fault in fresh pages: about 1 ms more for a small step), so a long-lived
process (the scheduler, a notebook) reuses the threads of its earlier runs."""
_kept_lock = threading.Lock()
_kept: list[ThreadPoolExecutor] = []


def _lease(count: int) -> list[ThreadPoolExecutor]:
    """`count` one-thread pools for one executor alone: kept ones first (see `_give_back`
    for which), then new ones."""
    with _kept_lock:
        leased = [_kept.pop() for _ in range(min(count, len(_kept)))]
    new = count - len(leased)
    return leased + [ThreadPoolExecutor(1, thread_name_prefix="sluice-step") for _ in range(new)]


def _give_back(pools: list[ThreadPoolExecutor], used: list[bool]) -> None:
    """Keep an executor's pools for later runs, the `used` ones (which ran a step: their
    thread has started) to be leased first, in their slot order, so that a run of fewer steps
    than workers runs them on threads of the runs before, whatever their sizes, rather than
    on a pool whose thread never started; pools beyond `KEPT_THREADS` stop."""
    ran = [p for p, u in zip(pools, used, strict=True) if u]
    idle = [p for p, u in zip(pools, used, strict=True) if not u]
    ordered = idle + ran[::-1]  # `_lease` pops from the end: slot order for the ones that ran
    with _kept_lock:
        room = min(len(ordered), max(0, KEPT_THREADS - len(_kept)))
        _kept.extend(ordered[len(ordered) - room :])
    for pool in ordered[: len(ordered) - room]:
        pool.shutdown(wait=False)


def _forget_kept_threads() -> None:
    """A forked child has none of its parent's threads: their pools are not to be used."""
    global _kept_lock
    _kept_lock = threading.Lock()
    _kept.clear()


os.register_at_fork(after_in_child=_forget_kept_threads)


def _free_slot(running: list[Future[StepOutcome] | None], capacity: int) -> int:
    free = [i for i, f in enumerate(running) if f is None or f.done()]
    if not free:
        raise RuntimeError(f"all {capacity} workers are busy")
    return free[0]


class ThreadExecutor:
    """Steps on threads of this process (DuckDB and Arrow release the GIL), each thread this
    executor's alone while it runs; threads are kept for later runs (`KEPT_THREADS`)."""

    def __init__(
        self, max_workers: int, step: Callable[[StepSpec], StepOutcome] = run_step
    ) -> None:
        self._threads = _lease(max_workers)
        self._running: list[Future[StepOutcome] | None] = [None] * max_workers
        self._step = step
        self.capacity = max_workers

    def submit(self, spec: StepSpec) -> Future[StepOutcome]:
        slot = _free_slot(self._running, self.capacity)
        future = self._threads[slot].submit(self._step, spec)
        self._running[slot] = future
        return future

    def shutdown(self) -> None:
        """Wait for the running steps (nothing else is queued), then give the threads back."""
        wait([f for f in self._running if f is not None])
        _give_back(self._threads, [f is not None for f in self._running])


class ProcessExecutor:
    """Steps in worker processes forked from this one (Linux and macOS: needs `fork`), or
    from a fork server (see `start_workers_from_a_fork_server`).

    Forked workers inherit the loaded project; all open their own catalog and DuckDB
    connections.
    Each worker is a pool of its own, so a worker that dies (killed, out of memory, crashed)
    fails only the step it was running (its branch never reached `main`; the asset's retry
    policy does not apply, as it runs inside the worker); the next step on that slot gets a
    fresh worker.
    """

    def __init__(
        self, max_workers: int, step: Callable[[StepSpec], StepOutcome] = run_step
    ) -> None:
        self.capacity = max_workers
        self._step = step
        self._workers: list[ProcessPoolExecutor | None] = [None] * max_workers
        self._running: list[Future[StepOutcome] | None] = [None] * max_workers

    def _worker(self, slot: int) -> ProcessPoolExecutor:
        worker = self._workers[slot]
        if worker is None:
            worker = ProcessPoolExecutor(1, mp_context=_worker_context())
            self._workers[slot] = worker
        return worker

    def _retire(self, slot: int) -> None:
        worker, self._workers[slot] = self._workers[slot], None
        if worker is not None:
            worker.shutdown(wait=True, cancel_futures=True)

    def submit(self, spec: StepSpec) -> Future[StepOutcome]:
        slot = _free_slot(self._running, self.capacity)
        try:
            inner = self._worker(slot).submit(self._step, spec)
        except BrokenProcessPool:
            self._retire(slot)
            inner = self._worker(slot).submit(self._step, spec)
        self._running[slot] = inner
        outer: Future[StepOutcome] = Future()
        outer.set_running_or_notify_cancel()
        started = datetime.now(UTC)
        inner.add_done_callback(lambda done: _relay(spec, started, done, outer))
        return outer

    def shutdown(self) -> None:
        for slot in range(self.capacity):
            self._retire(slot)


def _relay(
    spec: StepSpec, started: datetime, inner: Future[StepOutcome], outer: Future[StepOutcome]
) -> None:
    exc = inner.exception()
    if isinstance(exc, BrokenProcessPool):
        died = f"the worker process running {spec.asset} died (killed, out of memory, crashed)"
        outer.set_result(
            StepOutcome(
                asset=spec.asset,
                status="failed",
                started_at=started,
                finished_at=datetime.now(UTC),
                attempts=1,
                branch=spec.branch,
                error=died,
            )
        )
    elif exc is not None:
        outer.set_exception(exc)
    else:
        outer.set_result(inner.result())


_start_method: Literal["fork", "forkserver"] = "fork"


def start_workers_from_a_fork_server() -> None:
    """Make this process's worker processes start from a fork server, not from itself.

    For a process that runs several runs at once on threads (`sluice scheduler`): a fork
    copies the locks other threads hold at that moment (SQLite's, DuckDB's), and a worker
    forked while one was held waits on it forever. A fork server is a separate process with
    one thread: its forks are safe. Its workers import Sluice once (preloaded in the server)
    but load the project themselves, instead of inheriting it.
    """
    global _start_method
    _start_method = "forkserver"


def _worker_context() -> multiprocessing.context.BaseContext:
    context = multiprocessing.get_context(_start_method)
    if _start_method == "forkserver":
        context.set_forkserver_preload(["orchestrator.runner"])
    return context


def make_executor(kind: Literal["threads", "processes"], max_workers: int) -> Executor:
    """The pool `[executor] kind` names."""
    if kind == "processes":
        return ProcessExecutor(max_workers)
    return ThreadExecutor(max_workers)


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
            for step in ready()[: max(0, executor.capacity - len(running))]:
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
