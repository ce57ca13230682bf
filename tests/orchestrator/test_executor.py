"""Tests for `orchestrator.executor` with fake step functions: no Iceberg, no DuckDB."""

from __future__ import annotations

import multiprocessing
import threading
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import Future
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.executor import Blocked, DoneHook, Executor, StartHook, ThreadExecutor, execute
from orchestrator.planner import Plan, PlannedStep
from orchestrator.runner import OutcomeStatus, StepOutcome, StepSpec


def step(
    asset: str,
    *upstream: str,
    pinned: Mapping[str, int] | None = None,
    blocked: str | None = None,
) -> PlannedStep:
    return PlannedStep(
        asset=asset,
        reasons=(),
        explanation="",
        upstream=upstream,
        pinned=dict(pinned or {}),
        blocked=blocked,
    )


def make_spec(planned: PlannedStep, inputs: dict[str, int]) -> StepSpec:
    return StepSpec(
        project_root="/nowhere", run_id="run", asset=planned.asset, inputs=inputs, branch="b"
    )


def outcome(spec: StepSpec, status: OutcomeStatus, snapshot_id: int | None) -> StepOutcome:
    now = datetime.now(UTC)
    return StepOutcome(
        asset=spec.asset,
        status=status,
        started_at=now,
        finished_at=now,
        attempts=1,
        branch=spec.branch,
        snapshot_id=snapshot_id,
    )


SNAPSHOT = {"a": 101, "b": 102, "c": 103, "d": 104, "e": 105, "x": 106}


class FakeSteps:
    """A step function: publishes `SNAPSHOT[asset]` unless told to fail or raise; records specs."""

    def __init__(self, fail: Collection[str] = (), raise_on: Collection[str] = ()) -> None:
        self.fail = set(fail)
        self.raise_on = set(raise_on)
        self.specs: dict[str, StepSpec] = {}
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, spec: StepSpec) -> StepOutcome:
        with self._lock:
            self.specs[spec.asset] = spec
            self.calls[spec.asset] += 1
        if spec.asset in self.raise_on:
            raise RuntimeError(f"boom in {spec.asset}")
        if spec.asset in self.fail:
            return outcome(spec, "audit_failed", None)
        return outcome(spec, "published", SNAPSHOT.get(spec.asset, 1))


class InlineExecutor:
    """Runs each step at submit time, on the calling thread: deterministic and fast."""

    capacity = 1

    def __init__(self, fn: Callable[[StepSpec], StepOutcome]) -> None:
        self.fn = fn
        self.shut = False

    def submit(self, spec: StepSpec) -> Future[StepOutcome]:
        future: Future[StepOutcome] = Future()
        try:
            future.set_result(self.fn(spec))
        except Exception as exc:
            future.set_exception(exc)
        return future

    def shutdown(self) -> None:
        self.shut = True


def run(
    plan: Plan,
    executor: Executor,
    on_start: StartHook | None = None,
    on_done: DoneHook | None = None,
) -> dict[str, StepOutcome | Blocked]:
    """`execute`, failing the test instead of hanging it if the loop never ends."""
    results: list[dict[str, StepOutcome | Blocked]] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            results.append(execute(plan, executor, make_spec, on_start=on_start, on_done=on_done))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout=20)
    if thread.is_alive():
        pytest.fail("execute() did not return")
    if errors:
        raise errors[0]
    return results[0]


def status_of(result: StepOutcome | Blocked) -> str:
    return "blocked" if isinstance(result, Blocked) else result.status


# a -> b -> c ; a -> d ; x (independent)
DIAMONDLESS = Plan(
    steps=(
        step("a"),
        step("x"),
        step("b", "a"),
        step("d", "a"),
        step("c", "b"),
    ),
    fresh=(),
)


def test_independent_steps_run_in_parallel() -> None:
    barrier = threading.Barrier(2)

    def both_at_once(spec: StepSpec) -> StepOutcome:
        barrier.wait(timeout=5)  # raises BrokenBarrierError unless the other step runs too
        return outcome(spec, "published", SNAPSHOT[spec.asset])

    plan = Plan(steps=(step("a"), step("b")), fresh=())
    results = run(plan, ThreadExecutor(2, both_at_once))
    assert {key: status_of(r) for key, r in results.items()} == {
        "a": "published",
        "b": "published",
    }


def test_a_downstream_waits_for_its_upstream() -> None:
    done: list[str] = []

    def record(spec: StepSpec) -> StepOutcome:
        done.append(spec.asset)
        return outcome(spec, "published", SNAPSHOT[spec.asset])

    plan = Plan(steps=(step("a"), step("b", "a"), step("c", "b")), fresh=())
    run(plan, ThreadExecutor(4, record))
    assert done == ["a", "b", "c"]


def test_a_failed_step_blocks_only_its_downstream() -> None:
    fake = FakeSteps(fail={"b"})
    results = run(DIAMONDLESS, ThreadExecutor(2, fake))
    assert {key: status_of(r) for key, r in results.items()} == {
        "a": "published",
        "x": "published",
        "b": "audit_failed",
        "d": "published",
        "c": "blocked",
    }
    blocked = results["c"]
    assert isinstance(blocked, Blocked) and blocked.reason == "upstream b did not publish"
    assert "c" not in fake.calls


def test_a_failure_blocks_transitively() -> None:
    fake = FakeSteps(fail={"a"})
    results = run(DIAMONDLESS, InlineExecutor(fake))
    assert {key for key, r in results.items() if isinstance(r, Blocked)} == {"b", "c", "d"}
    assert status_of(results["x"]) == "published"
    assert set(fake.calls) == {"a", "x"}


def test_a_raising_step_becomes_blocked_not_a_crash() -> None:
    fake = FakeSteps(raise_on={"b"})
    results = run(DIAMONDLESS, ThreadExecutor(2, fake))
    raised = results["b"]
    assert isinstance(raised, Blocked)
    assert raised.asset == "b"
    assert "RuntimeError" in raised.reason and "boom in b" in raised.reason
    assert status_of(results["c"]) == "blocked"
    assert status_of(results["d"]) == "published"
    assert status_of(results["x"]) == "published"


def test_a_step_blocked_by_the_plan_never_runs_and_blocks_its_downstream() -> None:
    plan = Plan(
        steps=(step("a", blocked="upstream p was never published"), step("b", "a"), step("x")),
        fresh=(),
    )
    fake = FakeSteps()
    results = run(plan, InlineExecutor(fake))
    assert results["a"] == Blocked("a", "upstream p was never published")
    assert results["b"] == Blocked("b", "upstream a did not publish", upstream="a")
    assert status_of(results["x"]) == "published"
    assert set(fake.calls) == {"x"}


def test_inputs_hold_this_runs_snapshots_and_pinned_ones() -> None:
    plan = Plan(
        steps=(
            step("a", pinned={"p": 7}),
            step("b", "a", "p", pinned={"p": 7}),
            step("c", "a", "b", "q", pinned={"q": 8}),
        ),
        fresh=(),
    )
    fake = FakeSteps()
    run(plan, ThreadExecutor(2, fake))
    assert fake.specs["a"].inputs == {"p": 7}
    assert fake.specs["b"].inputs == {"a": SNAPSHOT["a"], "p": 7}
    assert fake.specs["c"].inputs == {"a": SNAPSHOT["a"], "b": SNAPSHOT["b"], "q": 8}


def test_hooks_see_every_start_and_exactly_one_result_per_step() -> None:
    fake = FakeSteps(fail={"b"}, raise_on={"x"})
    starts: list[str] = []
    dones: Counter[str] = Counter()
    executor = InlineExecutor(fake)
    results = run(
        DIAMONDLESS,
        executor,
        on_start=lambda planned, spec: starts.append(spec.asset),
        on_done=lambda planned, result: dones.update([planned.asset]),
    )
    assert sorted(starts) == ["a", "b", "d", "x"]
    assert dones == Counter({s.asset: 1 for s in DIAMONDLESS.steps})
    assert set(results) == {s.asset for s in DIAMONDLESS.steps}
    assert executor.shut


def test_an_empty_plan_returns_at_once() -> None:
    assert run(Plan(steps=(), fresh=()), InlineExecutor(FakeSteps())) == {}


@st.composite
def plans(draw: st.DrawFn) -> tuple[Plan, set[str], set[str], set[str]]:
    """A random DAG plan; some steps fail, some raise, some are blocked by the plan."""
    n = draw(st.integers(1, 8))
    names = [f"s{i}" for i in range(n)]
    steps = []
    for i, name in enumerate(names):
        ups = draw(st.lists(st.sampled_from(names[:i]), unique=True)) if i else []
        steps.append(step(name, *ups))
    fail = set(draw(st.lists(st.sampled_from(names), unique=True)))
    raise_on = set(draw(st.lists(st.sampled_from(names), unique=True)))
    pre_blocked = set(draw(st.lists(st.sampled_from(names), unique=True, max_size=2)))
    steps = [
        PlannedStep(s.asset, (), "", s.upstream, blocked="no" if s.asset in pre_blocked else None)
        for s in steps
    ]
    return Plan(steps=tuple(steps), fresh=()), fail, raise_on, pre_blocked


@settings(max_examples=150, deadline=None)
@given(plans(), st.booleans())
def test_every_step_gets_exactly_one_result(
    scenario: tuple[Plan, set[str], set[str], set[str]], threaded: bool
) -> None:
    plan, fail, raise_on, pre_blocked = scenario
    fake = FakeSteps(fail=fail, raise_on=raise_on)
    executor = ThreadExecutor(3, fake) if threaded else InlineExecutor(fake)
    dones: Counter[str] = Counter()
    results = run(plan, executor, on_done=lambda planned, _: dones.update([planned.asset]))
    assert set(results) == {s.asset for s in plan.steps}
    assert set(dones) == set(results) and set(dones.values()) == {1}

    # A step runs iff it is not blocked by the plan and every upstream published.
    published: set[str] = set()
    for planned in plan.steps:
        runs = planned.blocked is None and all(u in published for u in planned.upstream)
        assert fake.calls[planned.asset] == (1 if runs else 0)
        if runs and planned.asset not in fail | raise_on:
            published.add(planned.asset)
    assert {key for key, r in results.items() if status_of(r) == "published"} == published


class OnThreads:
    """A step function recording the threads it runs on; each call waits at `gate` if set."""

    def __init__(self, gate: threading.Barrier | None = None) -> None:
        self.gate = gate
        self.seen: set[int] = set()

    def __call__(self, spec: StepSpec) -> StepOutcome:
        self.seen.add(threading.get_ident())
        if self.gate is not None:
            self.gate.wait(timeout=10)
        return outcome(spec, "published", 1)


def _run_steps(executor: ThreadExecutor, steps: int) -> None:
    """Submit `steps` steps, `capacity` at a time, and wait for them."""
    for _ in range(steps // executor.capacity):
        futures = [executor.submit(make_spec(step(f"s{i}"), {})) for i in range(executor.capacity)]
        assert all(f.result(timeout=10).status == "published" for f in futures)


def test_later_runs_reuse_step_threads_and_runs_at_once_never_share_one() -> None:
    gate = threading.Barrier(4)  # all four steps of the two runs wait for each other
    steps = [OnThreads(gate), OnThreads(gate)]
    runs = [ThreadExecutor(2, steps[0]), ThreadExecutor(2, steps[1])]  # at once (a scheduler)
    drivers = [threading.Thread(target=_run_steps, args=(e, 2)) for e in runs]
    for driver in drivers:
        driver.start()
    for driver in drivers:
        driver.join(timeout=20)
    for executor in runs:
        executor.shutdown()
    assert len(steps[0].seen) == len(steps[1].seen) == 2
    assert not steps[0].seen & steps[1].seen

    later = OnThreads(threading.Barrier(2))
    executor = ThreadExecutor(2, later)
    _run_steps(executor, 2)
    executor.shutdown()
    assert len(later.seen) == 2 and later.seen <= steps[0].seen | steps[1].seen


@pytest.mark.parametrize("workers", [(2, 2, 2), (4, 2, 1), (1, 3, 2)])
def test_runs_of_fewer_steps_than_workers_reuse_the_thread_of_the_run_before(
    workers: tuple[int, ...],
) -> None:
    runs = [OnThreads() for _ in workers]
    for steps, capacity in zip(runs, workers, strict=True):  # one-step runs, one after another
        executor = ThreadExecutor(capacity, steps)
        assert executor.submit(make_spec(step("only"), {})).result(timeout=10).status == (
            "published"
        )
        executor.shutdown()
    assert all(steps.seen == runs[0].seen for steps in runs)


def test_a_forked_process_runs_steps_on_threads_of_its_own() -> None:
    warm = ThreadExecutor(2, OnThreads())
    _run_steps(warm, 2)
    warm.shutdown()  # the parent now keeps idle threads, which a fork does not copy

    def child() -> None:
        executor = ThreadExecutor(2, OnThreads())
        _run_steps(executor, 4)
        executor.shutdown()

    process = multiprocessing.get_context("fork").Process(target=child)
    process.start()
    process.join(timeout=30)
    if process.is_alive():
        process.kill()
    assert process.exitcode == 0
