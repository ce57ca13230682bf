"""The scheduler: its loop with an injected clock and fake runs, its state store under races,
and real `sluice scheduler` processes (killed, restarted, two at once, stopped by signals)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lakehouse.catalog import open_catalog
from orchestrator.config import load_config
from orchestrator.errors import DefinitionError
from orchestrator.graph import build_graph
from orchestrator.loader import Project
from orchestrator.schedule_state import ScheduleStore, TickRecord
from orchestrator.scheduler import Scheduler, Settings, TickResult
from orchestrator.schedules import Schedule, schedule
from orchestrator.state import StateStore

T0 = datetime(2024, 1, 1, 10, 0, 30, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def at(minute: int, second: int = 0) -> datetime:
    return datetime(2024, 1, 1, 10, minute, second, tzinfo=UTC)


@dataclass
class FakeClock:
    current: datetime = T0

    def now(self) -> datetime:
        return self.current

    def real_seconds(self, clock_seconds: float) -> float:
        return clock_seconds


@dataclass
class FakeRuns:
    """Stands in for `materialize_tick`; a run can be held open with `hold`."""

    calls: list[tuple[str, datetime]] = field(default_factory=list)
    hold: threading.Event | None = None
    started: threading.Event = field(default_factory=threading.Event)

    def __call__(self, project: Project, sched: Schedule, tick: datetime) -> TickResult:
        self.calls.append((sched.name, tick))
        self.started.set()
        if self.hold is not None:
            assert self.hold.wait(30), "a held run was never released"
        return TickResult("succeeded", f"run-{sched.name}-{tick:%H%M}", "1 published")


def make_project(root: Path, *schedules: Schedule, toml: str = "") -> Project:
    root.mkdir(parents=True, exist_ok=True)
    if toml:
        (root / "sluice.toml").write_text(textwrap.dedent(toml))
    return Project(root=root, config=load_config(root), graph=build_graph([]), schedules=schedules)


class Harness:
    """Schedulers over one project and state store, with one fake clock."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.clock = FakeClock()
        self.runs = FakeRuns()
        self.lines: list[str] = []
        self.made: list[Scheduler] = []

    def scheduler(self, owner: str | None = None) -> Scheduler:
        made = Scheduler(
            self.project,
            log=self.lines.append,
            settings=Settings(poll_s=0.05, lease_s=30),
            clock=self.clock,
            run_tick=self.runs,
            load=lambda _root: self.project,
            owner=owner,
        )
        self.made.append(made)
        return made

    def step(self, sched: Scheduler, now: datetime | None = None) -> None:
        if now is not None:
            self.clock.current = now
        sched.step()
        settle(sched)

    def ticks(self) -> list[TickRecord]:
        with ScheduleStore(self.project.config.state_url) as store:
            return sorted(store.ticks(limit=1000), key=lambda t: (t.tick_time, t.schedule))

    def close(self) -> None:
        for made in self.made:
            for item in made.running():
                item.thread.join(10)
            made.store.close()


def settle(sched: Scheduler, timeout: float = 10) -> None:
    """Wait for the runs the scheduler started, unless they are held open."""
    for item in sched.running():
        item.thread.join(timeout)


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(*schedules: Schedule, toml: str = "") -> Harness:
        made.append(Harness(make_project(tmp_path / "project", *schedules, toml=toml)))
        return made[-1]

    yield make
    for h in made:
        if h.runs.hold is not None:
            h.runs.hold.set()
        h.close()


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# -- the loop, with an injected clock --------------------------------------------------------


def test_each_tick_runs_once_as_the_clock_advances(harness: Callable[..., Harness]) -> None:
    h = harness(schedule("every", cron="* * * * *"))
    s = h.scheduler()
    h.step(s)  # 10:00:30: first sight of the schedule; nothing due yet
    for now in (at(1), at(1, 20), at(2, 5), at(2, 59), at(3)):
        h.step(s, now)
    assert h.runs.calls == [("every", at(1)), ("every", at(2)), ("every", at(3))]
    ticks = h.ticks()
    assert [(t.tick_time, t.status, t.run_id) for t in ticks] == [
        (at(1), "succeeded", "run-every-1001"),
        (at(2), "succeeded", "run-every-1002"),
        (at(3), "succeeded", "run-every-1003"),
    ]
    assert sum("run starting" in line for line in h.lines) == 3
    assert sum("run run-every" in line and ": ok" in line for line in h.lines) == 3


def test_a_tick_overlapping_a_running_run_is_skipped(harness: Callable[..., Harness]) -> None:
    h = harness(schedule("every", cron="* * * * *"))
    h.runs.hold = threading.Event()
    s = h.scheduler()
    h.step(s)
    h.clock.current = at(1)
    s.step()
    assert h.runs.started.wait(10)
    h.clock.current = at(2)
    s.step()  # the 10:01 run is still going
    h.runs.hold.set()
    settle(s)
    h.step(s, at(3))
    statuses = [(t.tick_time, t.status) for t in h.ticks()]
    assert statuses == [(at(1), "succeeded"), (at(2), "skipped"), (at(3), "succeeded")]
    skipped = h.ticks()[1]
    assert skipped.message is not None and "still going" in skipped.message
    assert h.runs.calls == [("every", at(1)), ("every", at(3))]


def test_a_catchup_tick_waits_for_the_running_run(harness: Callable[..., Harness]) -> None:
    h = harness(schedule("every", cron="* * * * *", catchup=True))
    h.runs.hold = threading.Event()
    s = h.scheduler()
    h.step(s)
    h.clock.current = at(1)
    s.step()
    assert h.runs.started.wait(10)
    h.clock.current = at(3)
    s.step()
    assert [t.tick_time for t in h.ticks()] == [at(1)]  # 10:02 waits, it is not skipped
    h.runs.hold.set()
    settle(s)
    h.step(s)
    h.step(s)
    h.step(s)
    assert h.runs.calls == [("every", at(1)), ("every", at(2)), ("every", at(3))]
    assert {t.status for t in h.ticks()} == {"succeeded"}


def test_missed_ticks_run_once_without_catchup(harness: Callable[..., Harness]) -> None:
    h = harness(schedule("every", cron="* * * * *"))
    s = h.scheduler()
    h.step(s)
    h.step(s, at(1))
    h.step(s, at(5, 30))  # the scheduler was asleep from 10:01 to 10:05:30
    h.step(s)
    assert h.runs.calls == [("every", at(1)), ("every", at(5))]
    assert any("missed and are not run" in line for line in h.lines)


def test_missed_ticks_run_in_order_with_catchup(harness: Callable[..., Harness]) -> None:
    h = harness(schedule("every", cron="* * * * *", catchup=True))
    s = h.scheduler()
    h.step(s)
    h.step(s, at(1))
    h.clock.current = at(4, 30)
    for _ in range(5):
        h.step(s)
    assert h.runs.calls == [("every", at(m)) for m in range(1, 5)]


def test_max_concurrent_runs_caps_runs_of_different_schedules(
    harness: Callable[..., Harness],
) -> None:
    h = harness(
        schedule("a", cron="* * * * *"),
        schedule("b", cron="* * * * *"),
        toml="[executor]\nmax_concurrent_runs = 1\n",
    )
    h.runs.hold = threading.Event()
    s = h.scheduler()
    h.step(s)
    h.clock.current = at(1)
    s.step()
    assert h.runs.started.wait(10)
    s.step()
    assert len(s.running()) == 1
    assert [t.schedule for t in h.ticks()] == ["a"]  # b waits for a slot, unrecorded
    h.runs.hold.set()
    settle(s)
    h.step(s)
    assert sorted(h.runs.calls) == [("a", at(1)), ("b", at(1))]


def test_two_concurrent_runs_when_allowed(harness: Callable[..., Harness]) -> None:
    h = harness(
        schedule("a", cron="* * * * *"),
        schedule("b", cron="* * * * *"),
        toml="[executor]\nmax_concurrent_runs = 2\n",
    )
    h.runs.hold = threading.Event()
    s = h.scheduler()
    h.step(s)
    h.clock.current = at(1)
    s.step()
    deadline = time.monotonic() + 10
    while len(h.runs.calls) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(s.running()) == 2
    h.runs.hold.set()


def test_two_schedulers_on_one_store_run_each_tick_once(harness: Callable[..., Harness]) -> None:
    h = harness(schedule("every", cron="* * * * *"))
    first, second = h.scheduler(), h.scheduler()
    for minute in range(0, 6):
        for sched in (first, second, second, first):
            h.step(sched, at(minute, 1))
    assert h.runs.calls == [("every", at(m)) for m in range(1, 6)]
    assert {t.owner for t in h.ticks()} == {first.owner}  # the standby ran nothing
    assert any("standby: the lease is held by" in line for line in h.lines)
    first.store.release_lease(first.owner)  # the holder stops; the standby takes over
    h.step(second, at(6, 1))
    h.step(first, at(6, 2))
    assert h.runs.calls[-1] == ("every", at(6))
    assert [t.owner for t in h.ticks()][-1] == second.owner
    assert len(h.runs.calls) == 6


def test_a_restart_neither_repeats_nor_loses_a_tick(harness: Callable[..., Harness]) -> None:
    h = harness(schedule("every", cron="* * * * *"))
    crashed = h.scheduler(owner=f"{socket.gethostname()}:{dead_pid()}:old")
    h.step(crashed)
    h.step(crashed, at(1))
    h.step(crashed, at(2))
    # The process died: the lease of a gone process of this host is taken over at once.
    restarted = h.scheduler()
    h.step(restarted, at(2, 30))
    h.step(restarted, at(3))
    assert h.runs.calls == [("every", at(1)), ("every", at(2)), ("every", at(3))]


def test_taking_over_runs_claimed_ticks_and_interrupts_running_ones(
    harness: Callable[..., Harness],
) -> None:
    h = harness(schedule("a", cron="* * * * *"), schedule("b", cron="* * * * *"))
    gone = f"{socket.gethostname()}:{dead_pid()}:gone"
    with ScheduleStore(h.project.config.state_url) as store:
        assert store.acquire_lease(gone, 60)
        store.first_seen("a", T0)
        store.first_seen("b", T0)
        assert store.claim_tick("a", at(1), gone)  # claimed, its run never started
        assert store.claim_tick("b", at(1), gone)
        assert store.start_tick("b", at(1), gone)  # running when its process died
    s = h.scheduler()
    h.step(s, at(1, 30))
    by_schedule = {t.schedule: t for t in h.ticks()}
    assert h.runs.calls == [("a", at(1))]
    assert by_schedule["a"].status == "succeeded" and by_schedule["a"].owner == s.owner
    assert by_schedule["b"].status == "interrupted"
    assert by_schedule["b"].message is not None and gone in by_schedule["b"].message


def test_a_forced_stop_marks_the_running_tick_interrupted(
    harness: Callable[..., Harness],
) -> None:
    h = harness(schedule("every", cron="* * * * *"))
    h.runs.hold = threading.Event()
    s = h.scheduler()
    h.step(s)
    h.clock.current = at(1)
    s.step()
    assert h.runs.started.wait(10)
    s.force_stop()
    assert [t.status for t in h.ticks()] == ["interrupted"]
    with ScheduleStore(h.project.config.state_url) as store:
        assert store.acquire_lease("someone-else:1:x", 60)  # the lease was released


def test_a_failing_run_is_recorded_and_the_loop_goes_on(harness: Callable[..., Harness]) -> None:
    h = harness(schedule("every", cron="* * * * *"))

    def broken(project: Project, sched: Schedule, tick: datetime) -> TickResult:
        if tick == at(1):
            raise RuntimeError("catalog unreachable")
        return TickResult("failed", "run-x", "1 failed")

    s = Scheduler(
        h.project,
        log=h.lines.append,
        clock=h.clock,
        run_tick=broken,
        load=lambda _root: h.project,
    )
    h.made.append(s)
    h.step(s)
    h.step(s, at(1))
    h.step(s, at(2))
    ticks = h.ticks()
    assert [t.status for t in ticks] == ["failed", "failed"]
    assert ticks[0].message is not None and "catalog unreachable" in ticks[0].message
    assert ticks[1].run_id == "run-x"


def test_a_tick_of_a_project_that_no_longer_loads_fails_without_a_run(
    harness: Callable[..., Harness],
) -> None:
    h = harness(schedule("every", cron="* * * * *"))
    s = h.scheduler()
    h.step(s)

    def broken(_root: Path) -> Project:
        raise DefinitionError("syntax error: invalid syntax", file="assets/x.py", line=3)

    s._load = broken
    h.step(s, at(1))
    assert h.runs.calls == []
    [tick] = h.ticks()
    assert tick.status == "failed"
    assert tick.message is not None and "assets/x.py:3" in tick.message
    s._load = lambda _root: h.project  # fixed: the next tick runs
    h.step(s, at(2))
    assert h.runs.calls == [("every", at(2))]


# -- the state store under races -------------------------------------------------------------


def race(n: int, work: Callable[[int], bool]) -> list[bool]:
    barrier = threading.Barrier(n)
    results: list[bool] = [False] * n

    def go(i: int) -> None:
        barrier.wait()
        results[i] = work(i)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def test_the_lease_is_taken_by_exactly_one_of_many(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sluice.db'}"
    stores = [ScheduleStore(url) for _ in range(8)]
    try:
        won = race(8, lambda i: stores[i].acquire_lease(f"elsewhere:{i}:x", 60))
        assert sum(won) == 1
        holder = won.index(True)
        lease = stores[0].lease()
        assert lease is not None and lease.owner == f"elsewhere:{holder}:x"
        # Expired: again exactly one of the others takes it.
        later = datetime.now(UTC) + timedelta(seconds=120)
        won = race(8, lambda i: stores[i].acquire_lease(f"other:{i}:x", 60, now=later))
        assert sum(won) == 1
    finally:
        for store in stores:
            store.close()


def test_the_lease_expires_and_renews(tmp_path: Path) -> None:
    with ScheduleStore(f"sqlite:///{tmp_path / 'sluice.db'}") as store:
        t = datetime(2024, 1, 1, tzinfo=UTC)
        assert store.acquire_lease("a:1:x", 10, now=t)
        assert not store.acquire_lease("b:1:x", 10, now=t + timedelta(seconds=9))
        assert store.acquire_lease("a:1:x", 10, now=t + timedelta(seconds=9))  # renewed
        assert not store.acquire_lease("b:1:x", 10, now=t + timedelta(seconds=18))
        assert store.acquire_lease("b:1:x", 10, now=t + timedelta(seconds=20))
        assert not store.acquire_lease("a:1:x", 10, now=t + timedelta(seconds=21))


def test_a_tick_is_claimed_by_exactly_one_of_many(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sluice.db'}"
    stores = [ScheduleStore(url) for _ in range(8)]
    try:
        won = race(8, lambda i: stores[i].claim_tick("nightly", at(1), f"owner{i}"))
        assert sum(won) == 1
        assert [t.tick_time for t in stores[0].ticks("nightly")] == [at(1)]
    finally:
        for store in stores:
            store.close()


# -- real `sluice scheduler` processes -------------------------------------------------------

SCALE = 30  # one cron minute every 2 seconds

SLOW_ASSET = """
    import os
    import pathlib
    import time

    import pyarrow as pa

    from orchestrator import asset, schedule

    STARTED = pathlib.Path(__file__).parent / "started.txt"


    @asset(layer="bronze")
    def raw(ctx):
        STARTED.write_text(ctx.run_id)
        time.sleep(float(os.environ.get("SLOW_S", "0")))
        return pa.table({"id": [1, 2, 3]})


    every_minute = schedule("every_minute", cron="* * * * *", select="*", catchup=CATCHUP)
    """


class Daemons:
    """Starts `sluice scheduler` processes on one project with one scaled clock."""

    def __init__(
        self, root: Path, *, catchup: bool, slow_s: float = 0.0, assets: str = "", toml: str = ""
    ) -> None:
        self.root = root
        (root / "assets" / "bronze").mkdir(parents=True)
        (root / "assets" / "bronze" / "raw.py").write_text(
            textwrap.dedent(assets or SLOW_ASSET).replace("CATCHUP", str(catchup))
        )
        if toml:
            (root / "sluice.toml").write_text(toml)
        self.url = load_config(root).state_url
        self.env = {
            **os.environ,
            "SLUICE_SCHEDULER_TIME_SCALE": str(SCALE),
            "SLUICE_SCHEDULER_TIME_ORIGIN": str(time.time()),
            "SLUICE_SCHEDULER_POLL_S": "0.2",
            "SLUICE_SCHEDULER_LEASE_S": "10",
            "SLOW_S": str(slow_s),
        }
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        log = (self.root / f"scheduler-{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli", "--project", str(self.root), "scheduler"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        return proc

    def ticks(self) -> list[TickRecord]:
        with ScheduleStore(self.url) as store:
            return sorted(store.ticks(limit=10_000), key=lambda t: t.tick_time)

    def wait_for(self, what: str, done: Callable[[list[TickRecord]], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if done(self.ticks()):
                return
            for proc in self.procs:
                assert proc.poll() is None or proc.returncode in (0, -9), self.logs()
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}\n{self.logs()}")

    def scheduler_runs(self) -> list[tuple[str, str]]:
        with StateStore(self.url) as store:
            return [(r.run_id, r.status) for r in store.runs(limit=10_000)]

    def logs(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.root.glob("scheduler-*.log")))

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(30)


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Callable[..., Daemons]]:
    made: list[Daemons] = []

    def make(**kwargs: object) -> Daemons:
        made.append(Daemons(tmp_path / f"project{len(made)}", **kwargs))  # type: ignore[arg-type]
        return made[-1]

    yield make
    for d in made:
        d.stop_all()


def succeeded(ticks: list[TickRecord]) -> list[TickRecord]:
    return [t for t in ticks if t.status == "succeeded"]


def assert_one_run_per_tick(d: Daemons) -> None:
    ticks = d.ticks()
    runs = dict(d.scheduler_runs())
    tick_runs = [t.run_id for t in succeeded(ticks)]
    assert None not in tick_runs
    assert len(set(tick_runs)) == len(tick_runs)  # no run shared by two ticks
    assert set(tick_runs) == {r for r, status in runs.items() if status == "succeeded"}


@pytest.mark.slow
def test_a_real_scheduler_runs_one_run_per_tick_and_a_restart_repeats_none(
    daemons: Callable[..., Daemons],
) -> None:
    d = daemons(catchup=True)
    first = d.start()
    d.wait_for("three ticks", lambda ts: len(succeeded(ts)) >= 3, timeout=60)
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    before = d.ticks()
    assert_one_run_per_tick(d)

    second = d.start()
    last_before = max(t.tick_time for t in before)
    d.wait_for(
        "three ticks after the restart",
        lambda ts: len([t for t in succeeded(ts) if t.tick_time > last_before]) >= 3,
        timeout=60,
    )
    second.send_signal(signal.SIGTERM)
    assert second.wait(30) == 0, d.logs()

    ticks = d.ticks()
    times = [t.tick_time for t in ticks]
    assert times == [times[0] + MINUTE * i for i in range(len(times))], d.logs()  # none lost
    assert {t.status for t in ticks} <= {"succeeded", "interrupted"}
    before_ids = {(t.tick_time, t.run_id) for t in before if t.status == "succeeded"}
    assert before_ids <= {(t.tick_time, t.run_id) for t in ticks}  # none repeated
    owners = [t.owner for t in ticks]
    assert owners == sorted(owners, key=lambda o: o != owners[0])  # first's ticks, then second's
    assert_one_run_per_tick(d)
    assert "run starting" in d.logs()


@pytest.mark.slow
def test_two_real_schedulers_on_one_state_store_run_each_tick_once(
    daemons: Callable[..., Daemons],
) -> None:
    d = daemons(catchup=False)
    procs = [d.start(), d.start()]
    d.wait_for("three ticks", lambda ts: len(succeeded(ts)) >= 3, timeout=60)
    with ScheduleStore(d.url) as store:
        lease = store.lease()
    assert lease is not None
    holder = next(p for p in procs if p.pid == lease.pid)
    standby = next(p for p in procs if p is not holder)
    assert {t.owner for t in d.ticks()} == {lease.owner}  # the standby ran no tick
    holder.send_signal(signal.SIGKILL)
    holder.wait(30)
    count = len(d.ticks())
    d.wait_for("two ticks by the standby", lambda ts: len(succeeded(ts)) >= count + 2, timeout=60)
    standby.send_signal(signal.SIGTERM)
    assert standby.wait(30) == 0, d.logs()

    ticks = d.ticks()
    assert len({t.tick_time for t in ticks}) == len(ticks)
    assert len({t.owner for t in ticks}) == 2  # the standby took over
    assert_one_run_per_tick(d)


@pytest.mark.slow
def test_sigterm_lets_the_running_run_finish_and_a_second_signal_interrupts(
    daemons: Callable[..., Daemons],
) -> None:
    d = daemons(catchup=False, slow_s=4.0)
    proc = d.start()
    started = d.root / "assets" / "bronze" / "started.txt"
    d.wait_for("a run to start", lambda ts: started.exists(), timeout=60)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0, d.logs()
    ticks = d.ticks()
    assert [t.status for t in ticks if t.status != "skipped"] == ["succeeded"], d.logs()
    assert "finishing running runs" in d.logs()
    with StateStore(d.url) as store:
        assert [status for _, status in [(r.run_id, r.status) for r in store.runs()]] == [
            "succeeded"
        ]

    # Again, with a fresh project: two signals stop at once and mark the tick interrupted.
    d2 = Daemons(d.root.parent / "again", catchup=False, slow_s=30.0)
    try:
        proc = d2.start()
        started = d2.root / "assets" / "bronze" / "started.txt"
        d2.wait_for("a run to start", lambda ts: started.exists(), timeout=60)
        proc.send_signal(signal.SIGTERM)
        d2.wait_for("the first signal", lambda ts: "finishing" in d2.logs(), timeout=30)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 1, d2.logs()
        assert [t.status for t in d2.ticks() if t.status != "skipped"] == ["interrupted"]
    finally:
        d2.stop_all()


TWO_SCHEDULES = """
    import os
    import pathlib
    import time

    import pyarrow as pa

    from orchestrator import asset, schedule

    HERE = pathlib.Path(__file__).parent


    def rows(ctx, name):
        (HERE / f"pid-{name}-{ctx.run_id}").write_text(str(os.getpid()))
        time.sleep(0.5)
        return pa.table({"id": [1, 2, 3]})


    @asset(layer="bronze")
    def left(ctx):
        return rows(ctx, "left")


    @asset(layer="bronze")
    def right(ctx):
        return rows(ctx, "right")


    lefts = schedule("lefts", cron="* * * * *", select="bronze.left", catchup=CATCHUP)
    rights = schedule("rights", cron="* * * * *", select="bronze.right", catchup=CATCHUP)
    """


@pytest.mark.slow
def test_a_real_scheduler_runs_concurrent_runs_on_worker_processes(
    daemons: Callable[..., Daemons],
) -> None:
    d = daemons(
        catchup=False,
        assets=TWO_SCHEDULES,
        toml='[executor]\nkind = "processes"\nmax_concurrent_runs = 2\n',
    )
    proc = d.start()

    def each_twice(ticks: list[TickRecord]) -> bool:
        done = [t.schedule for t in succeeded(ticks)]
        return min(done.count("lefts"), done.count("rights")) >= 2

    d.wait_for("two ticks of each schedule", each_twice, timeout=90)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0, d.logs()

    ticks = d.ticks()
    # A tick that comes while its schedule's run is still going is skipped (no catch-up).
    assert {t.status for t in ticks} <= {"succeeded", "skipped", "interrupted"}, d.logs()
    assert_one_run_per_tick(d)
    # The two schedules' runs of one minute overlapped: both ran at once.
    by_minute: dict[datetime, list[TickRecord]] = {}
    for tick in succeeded(ticks):
        by_minute.setdefault(tick.tick_time, []).append(tick)
    assert any(
        len(pair) == 2
        and max(t.started_at for t in pair if t.started_at)
        < min(t.finished_at for t in pair if t.finished_at)
        for pair in by_minute.values()
    ), d.logs()
    # Every step ran in a worker process, never in the scheduler's own.
    pids = {int(p.read_text()) for p in (d.root / "assets" / "bronze").glob("pid-*")}
    assert pids and proc.pid not in pids
    catalog = open_catalog(load_config(d.root).catalog)
    for name in ("left", "right"):
        assert catalog.load_table(f"bronze.{name}").scan().to_arrow().num_rows == 3
