"""`sluice scheduler`: a foreground daemon that runs the project's schedules.

Every `poll_s` seconds (sooner when a tick is due) the scheduler takes or renews the lease, and
for each schedule works out the tick to run (`schedules.due_tick`), records it in the state
store, and runs it through `materialize_selection` (the CLI's planner and executor) on a
thread of its own.

Guarantees:

* Only the lease holder claims ticks, and a tick is claimed by inserting its unique row: two
  schedulers on one state store never both run a tick. A standby takes over when the lease
  expires, or at once when its holder was a process of this host that is gone.
* Every tick is recorded before its run starts, so a restart never repeats it. The first tick
  of a new schedule is its first tick after the scheduler first saw it. Missed ticks (the
  scheduler was down): with `catchup=False` only the latest runs; with `catchup=True` each
  runs, in order, one after the other.
* A tick of a `catchup=False` schedule that comes due while the schedule's previous run is
  still going is recorded as `skipped`. A `catchup=True` tick waits for it instead (catch-up
  means every tick runs). At most `[executor] max_concurrent_runs` runs go at once; a tick
  beyond that waits for a free slot.
* On taking the lease, ticks left `claimed` by a gone scheduler (their run never started) are
  run; ticks left `running` are marked `interrupted` (their run was cut off; the next tick
  rebuilds what is still stale).
* SIGTERM or SIGINT: no new tick is taken; running runs finish (the lease is kept meanwhile),
  then the lease is released and the process exits 0. A second signal stops at once: open
  ticks are marked `interrupted` (their runs are marked abandoned by the next run) and the
  process exits 1.
* One log line per tick taken or skipped, and one per finished run.

Test hooks (environment variables, for tests only): `SLUICE_SCHEDULER_POLL_S` (seconds between
evaluations, default 5), `SLUICE_SCHEDULER_LEASE_S` (lease length, default 60), and
`SLUICE_SCHEDULER_TIME_SCALE` with `SLUICE_SCHEDULER_TIME_ORIGIN` (unix seconds): the schedule
clock then runs SCALE times faster than the wall clock from ORIGIN on, so an every-minute cron
ticks every 60/SCALE seconds. Processes given the same values share one timeline.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Protocol

from lakehouse.errors import SluiceError
from orchestrator.loader import Project, load_project
from orchestrator.schedule_state import ScheduleStore, TickRecord, TickStatus, new_owner_id
from orchestrator.schedules import Schedule, due_tick

POLL_S = 5.0
LEASE_S = 60.0
ENV_POLL = "SLUICE_SCHEDULER_POLL_S"
ENV_LEASE = "SLUICE_SCHEDULER_LEASE_S"
ENV_SCALE = "SLUICE_SCHEDULER_TIME_SCALE"
ENV_ORIGIN = "SLUICE_SCHEDULER_TIME_ORIGIN"


class Clock(Protocol):
    """The schedule clock: what time it is for cron purposes, and how that maps to waiting."""

    def now(self) -> datetime: ...

    def real_seconds(self, clock_seconds: float) -> float: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def real_seconds(self, clock_seconds: float) -> float:
        return clock_seconds


@dataclass(frozen=True)
class ScaledClock:
    """Runs `scale` times faster than the wall clock from the unix time `origin` on (tests)."""

    scale: float
    origin: float

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.origin + (time.time() - self.origin) * self.scale, UTC)

    def real_seconds(self, clock_seconds: float) -> float:
        return clock_seconds / self.scale


@dataclass(frozen=True)
class Settings:
    poll_s: float = POLL_S
    lease_s: float = LEASE_S


def settings_from_env(environ: Mapping[str, str]) -> tuple[Settings, Clock]:
    """The test hooks described in the module doc; `SluiceError` for a malformed value."""
    try:
        poll = float(environ.get(ENV_POLL, POLL_S))
        lease = float(environ.get(ENV_LEASE, LEASE_S))
        scale = float(environ.get(ENV_SCALE, 1.0))
        origin = float(environ.get(ENV_ORIGIN, time.time()))
    except ValueError as exc:
        raise SluiceError(f"invalid scheduler setting in the environment: {exc}") from None
    if not (poll > 0 and lease > poll and scale > 0):
        raise SluiceError(
            f"scheduler settings need {ENV_POLL} > 0, {ENV_LEASE} > {ENV_POLL}, {ENV_SCALE} > 0"
        )
    clock: Clock = SystemClock() if scale == 1.0 else ScaledClock(scale, origin)
    return Settings(poll_s=poll, lease_s=lease), clock


STOP_CHECK_S = 0.1
"""How often waiting loops look at a stop request."""


class StopRequest:
    """Stop requests, safe to make from a signal handler: it only bumps a counter (no lock, no
    I/O there, so a handler can never deadlock on a lock the interrupted code holds)."""

    def __init__(self) -> None:
        self.count = 0
        self.reason = "stop"

    def request(self, reason: str = "stop") -> None:
        self.reason = reason
        self.count += 1

    @property
    def stopping(self) -> bool:
        return self.count >= 1

    @property
    def forced(self) -> bool:
        return self.count >= 2

    def sleep(self, seconds: float) -> None:
        """Sleep up to `seconds`, waking early when a stop is requested."""
        deadline = time.monotonic() + seconds
        while not self.stopping and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, STOP_CHECK_S))


@dataclass(frozen=True)
class TickResult:
    """How a tick's run ended, as the scheduler records it."""

    status: TickStatus
    run_id: str | None
    message: str


RunTick = Callable[[Project, Schedule, datetime], TickResult]


def materialize_tick(project: Project, sched: Schedule, tick: datetime) -> TickResult:
    """Run one tick: the stale assets of the selection, as of the tick, like the CLI would."""
    from orchestrator.materialize import materialize_selection

    summary = materialize_selection(
        project, list(sched.select), command="scheduler", as_of=sched.local(tick)
    )
    counts: dict[str, int] = {}
    for result in summary.results.values():
        status = getattr(result, "status", "blocked")
        counts[status] = counts.get(status, 0) + 1
    shown = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "nothing stale"
    return TickResult("succeeded" if summary.ok else "failed", summary.run_id, shown)


@dataclass
class _Running:
    sched: Schedule
    tick: datetime
    thread: threading.Thread


class Scheduler:
    """The scheduler of one project. `step()` is one evaluation; `serve()` loops until stopped.

    `clock`, `run_tick` and `load` are injectable so the loop can be tested without real time
    or real runs.
    """

    def __init__(
        self,
        project: Project,
        *,
        log: Callable[[str], None],
        settings: Settings = Settings(),
        clock: Clock | None = None,
        run_tick: RunTick = materialize_tick,
        load: Callable[[Path], Project] = load_project,
        owner: str | None = None,
    ) -> None:
        self.root = project.root
        self.settings = settings
        self.clock = clock or SystemClock()
        self.owner = owner or new_owner_id()
        self._log = log
        self._run_tick = run_tick
        self._load = load
        self.project = project
        self.store = ScheduleStore(self.project.config.state_url)
        self._running: dict[str, _Running] = {}
        self._adopted: list[tuple[str, datetime]] = []
        self._has_lease = False
        self._waiting_note = ""
        self._lock = threading.Lock()

    # -- the loop ----------------------------------------------------------------------------

    def serve(self, stop: StopRequest) -> int:
        """Run until a stop is requested, then let running runs finish (unless a second stop
        is requested meanwhile); returns the exit code, 0 or (forced) 1."""
        names = ", ".join(s.name for s in self.project.schedules) or "none"
        self.log(f"scheduler {self.owner} started; schedules: {names}")
        try:
            while not stop.stopping:
                try:
                    wait_s = self.step()
                except Exception as exc:  # e.g. the state database is unreachable: keep going
                    self.log(f"evaluation failed: {type(exc).__name__}: {exc}")
                    wait_s = self.settings.poll_s
                stop.sleep(wait_s)
            self.log(f"{stop.reason}: no new ticks; finishing running runs")
            finished = self.drain(stop)
        finally:
            self.store.release_lease(self.owner)
            self.store.close()
        self.log("scheduler stopped" if finished else "scheduler stopped at once")
        return 0 if finished else 1

    def drain(self, stop: StopRequest | None = None) -> bool:
        """Wait for the running runs, keeping the lease meanwhile. If `stop` is forced first,
        mark their ticks `interrupted` instead and return False."""
        if self.running():
            self.log(f"stopping: waiting for {len(self.running())} running run(s) to finish")
        renewed = time.monotonic()
        while running := self.running():
            if stop is not None and stop.forced:
                self.log(f"{stop.reason} again: stopping now")
                self.force_stop()
                return False
            if time.monotonic() - renewed >= self.settings.poll_s:
                self.store.acquire_lease(self.owner, self.settings.lease_s)
                renewed = time.monotonic()
            running[0].thread.join(STOP_CHECK_S)
            self._reap()
        return True

    def force_stop(self) -> None:
        """A forced stop: mark this scheduler's open ticks `interrupted`, release the lease."""
        closed = self.store.mark_interrupted(self.owner, "scheduler was stopped during the run")
        for tick in closed:
            self.log(
                f"tick {tick.schedule} {self._shown(tick.schedule, tick.tick_time)}: interrupted"
            )
        self.store.release_lease(self.owner)

    def step(self) -> float:
        """Evaluate once: lease, due ticks, runs. Returns the seconds to wait before the next."""
        self._reap()
        if not self.store.acquire_lease(self.owner, self.settings.lease_s):
            if self._has_lease:
                self.log("lost the scheduler lease; no new ticks until it is back")
            self._has_lease = False
            held = self.store.lease()
            note = f"standby: the lease is held by {held.owner}" if held else "standby"
            if note != self._waiting_note:
                self.log(note)
                self._waiting_note = note
            return self.settings.poll_s
        if not self._has_lease:
            self._has_lease, self._waiting_note = True, ""
            self._take_over()
        now = self.clock.now()
        self._start_adopted()
        for sched in self.project.schedules:
            self._evaluate(sched, now)
        return self._wait_s(now)

    def running(self) -> list[_Running]:
        with self._lock:
            return list(self._running.values())

    # -- evaluation --------------------------------------------------------------------------

    def _take_over(self) -> None:
        adopted, interrupted = self.store.adopt(self.owner)
        for tick in interrupted:
            self.log(
                f"tick {tick.schedule} {self._shown(tick.schedule, tick.tick_time)}: marked "
                f"interrupted (its scheduler {tick.owner} stopped during the run)"
            )
        self._adopted.extend((t.schedule, t.tick_time) for t in adopted)

    def _start_adopted(self) -> None:
        while self._adopted and self._free_slot():
            name, tick = self._adopted[0]
            sched = self._schedule(name)
            if name in self._running_names():
                return
            self._adopted.pop(0)
            if sched is None:
                self.store.finish_tick(name, tick, "skipped", message="schedule no longer declared")
                continue
            self._start(sched, tick)

    def _evaluate(self, sched: Schedule, now: datetime) -> None:
        busy = sched.name in self._running_names()
        if busy and sched.catchup:
            return  # catch-up ticks wait for the previous run: each of them runs
        last = self.store.last_tick(sched.name)
        since = last.tick_time if last else self.store.first_seen(sched.name, now)
        tick = due_tick(sched, since, now)
        if tick is None:
            return
        if busy:
            going = [r.tick for r in self.running() if r.sched.name == sched.name]
            shown = self._shown(sched.name, going[0]) if going else "before"
            message = f"the run of tick {shown} is still going"
            if self.store.claim_tick(
                sched.name, tick, self.owner, status="skipped", message=message
            ):
                self.log(f"tick {sched.name} {self._shown(sched.name, tick)}: skipped ({message})")
            return
        if not self._free_slot():
            return
        broken = self._reload()
        if broken is not None:  # like the CLI, never run a project that does not load
            if self.store.claim_tick(sched.name, tick, self.owner, status="failed", message=broken):
                self.log(f"tick {sched.name} {self._shown(sched.name, tick)}: FAILED ({broken})")
            return
        sched = self._schedule(sched.name) or sched
        if not self.store.claim_tick(sched.name, tick, self.owner):
            return
        earliest = sched.next_tick(since)
        if last is not None and earliest is not None and earliest < tick:
            self.log(
                f"tick {sched.name}: ticks from {self._shown(sched.name, earliest)} until this "
                "one were missed and are not run (catchup=False)"
            )
        self._start(sched, tick)

    def _start(self, sched: Schedule, tick: datetime) -> None:
        project = self.project
        thread = threading.Thread(
            target=self._run,
            args=(project, sched, tick),
            name=f"sluice-tick-{sched.name}",
            daemon=True,
        )
        with self._lock:
            self._running[sched.name] = _Running(sched, tick, thread)
        thread.start()

    def _run(self, project: Project, sched: Schedule, tick: datetime) -> None:
        shown = self._shown(sched.name, tick)
        try:
            if not self.store.start_tick(sched.name, tick, self.owner):
                self.log(f"tick {sched.name} {shown}: taken over by another scheduler")
                return
            self.log(f"tick {sched.name} {shown}: run starting ({' '.join(sched.select)})")
            try:
                result = self._run_tick(project, sched, tick)
            except SluiceError as exc:
                result = TickResult("failed", None, str(exc))
            except Exception as exc:
                detail = traceback.format_exc(limit=5)
                result = TickResult("failed", None, f"{type(exc).__name__}: {exc}\n{detail}")
            self.store.finish_tick(
                sched.name, tick, result.status, run_id=result.run_id, message=result.message
            )
            outcome = "ok" if result.status == "succeeded" else result.status.upper()
            run = f"run {result.run_id}" if result.run_id else "run"
            first_line = result.message.splitlines()[0] if result.message else ""
            self.log(f"{run} of {sched.name} {shown}: {outcome} ({first_line})")
        except Exception as exc:  # the state store itself failed: keep the daemon alive
            self.log(f"tick {sched.name} {shown}: could not be recorded: {exc}")
        finally:
            with self._lock:
                self._running.pop(sched.name, None)

    def _reload(self) -> str | None:
        """Pick up code changes before a run, when no run is going (reloading swaps modules).

        Returns the definition error when the project no longer loads.
        """
        if self.running():
            return None
        try:
            self.project = self._load(self.root)
        except SluiceError as exc:
            return f"the project does not load: {exc}"
        return None

    # -- helpers -----------------------------------------------------------------------------

    def _reap(self) -> None:
        with self._lock:
            for name in [n for n, r in self._running.items() if not r.thread.is_alive()]:
                self._running.pop(name, None)

    def _running_names(self) -> set[str]:
        with self._lock:
            return set(self._running)

    def _free_slot(self) -> bool:
        return len(self.running()) < self.project.config.executor.max_concurrent_runs

    def _schedule(self, name: str) -> Schedule | None:
        return next((s for s in self.project.schedules if s.name == name), None)

    def _shown(self, name: str, tick: datetime) -> str:
        sched = self._schedule(name)
        return (sched.local(tick) if sched else tick).isoformat()

    def _wait_s(self, now: datetime) -> float:
        upcoming = [t for s in self.project.schedules if (t := s.next_tick(now)) is not None]
        if not upcoming:
            return self.settings.poll_s
        until = (min(upcoming) - now) / timedelta(seconds=1)
        return max(0.01, min(self.settings.poll_s, self.clock.real_seconds(until) + 0.01))

    def log(self, message: str) -> None:
        self._log(f"{datetime.now(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')} {message}")


def run_scheduler(project: Project, *, log: Callable[[str], None]) -> int:
    """The `sluice scheduler` command: serve until SIGTERM/SIGINT (see the module doc)."""
    settings, clock = settings_from_env(os.environ)
    from orchestrator.executor import start_workers_from_a_fork_server

    # Runs go on threads of this process: their worker processes must not be forked from it.
    start_workers_from_a_fork_server()
    scheduler = Scheduler(project, log=log, settings=settings, clock=clock)
    stop = StopRequest()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.request(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        code = scheduler.serve(stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if stop.forced:  # the executor's step threads cannot be joined quickly: leave now
        sys.stdout.flush()
        os._exit(code)
    return code


@dataclass(frozen=True)
class ScheduleOverview:
    schedule: Schedule
    next_tick: datetime | None
    last: TickRecord | None


def schedule_overview(project: Project, *, now: datetime | None = None) -> list[ScheduleOverview]:
    """For `sluice schedules`: each schedule, its next tick after `now`, its last recorded tick."""
    now = now or datetime.now(UTC)
    with ScheduleStore(project.config.state_url) as store:
        return [
            ScheduleOverview(s, s.next_tick(now), store.last_tick(s.name))
            for s in project.schedules
        ]
