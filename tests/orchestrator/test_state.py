"""Tests of the run-history store (`orchestrator.state`) on SQLite files."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from lakehouse.errors import ConfigError
from orchestrator.state import (
    ABANDONED_ERROR,
    AmbiguousRunError,
    BackfillPartition,
    BackfillState,
    CheckRecord,
    StateStore,
    StepRecord,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2025, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)


def _url(path: Path) -> str:
    return f"sqlite:///{path}"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "sluice.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[StateStore]:
    s = StateStore(_url(db_path))
    yield s
    s.close()


def _step(run_id: str, asset: str, **kw: object) -> StepRecord:
    fields: dict[str, object] = {"status": "published", "attempts": 1}
    fields.update(kw)
    return StepRecord(run_id=run_id, asset=asset, **fields)  # type: ignore[arg-type]


def test_creates_parent_directory_and_tables(db_path: Path, store: StateStore) -> None:
    assert db_path.exists()
    assert store.runs() == []
    assert store.latest_steps() == {}
    assert store.run("nope") is None


def test_run_and_steps_round_trip(store: StateStore) -> None:
    store.start_run("r1", command="run", selection="silver.*")
    checks = [
        CheckRecord(
            name="not_null(id)",
            kind="not_null",
            severity="error",
            passed=False,
            failing_rows=2,
            samples=[{"id": None, "amount": 1.5, "tags": ["a"]}, {"id": None, "amount": None}],
            error=None,
        ),
        CheckRecord(name="row_count > 0", kind="sql", severity="warn", passed=True),
    ]
    step = StepRecord(
        run_id="r1",
        asset="silver.orders",
        partition="2025-01-01",
        status="audit_failed",
        attempts=2,
        started_at=T0,
        finished_at=T0 + timedelta(seconds=3),
        duration_s=3.0,
        snapshot_id=2**62 + 7,
        branch="wap_r1",
        rows=1234,
        error="check not_null(id) failed",
        reasons=["upstream bronze.orders changed", "code changed"],
        checks=checks,
    )
    store.record_step(step)
    store.record_step(_step("r1", "gold.revenue", status="blocked", reasons=["upstream failed"]))
    store.finish_run("r1", "failed")

    found = store.run("r1")
    assert found is not None
    run, steps = found
    assert run.run_id == "r1"
    assert run.command == "run"
    assert run.selection == "silver.*"
    assert run.status == "failed"
    assert run.pid == os.getpid()
    assert run.started_at.tzinfo is not None
    assert run.finished_at is not None and run.finished_at >= run.started_at
    assert run.counts == {"audit_failed": 1, "blocked": 1}
    assert steps[0] == step
    assert steps[0].started_at is not None and steps[0].started_at.utcoffset() == timedelta(0)
    assert steps[1].asset == "gold.revenue"
    assert steps[1].partition is None
    assert steps[1].checks == []
    assert steps[1].reasons == ["upstream failed"]


def test_timestamps_are_returned_in_utc(store: StateStore) -> None:
    plus_two = datetime(2025, 6, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    store.start_run("r1", command="run", selection="*")
    store.record_step(_step("r1", "a.b", started_at=plus_two))
    found = store.run("r1")
    assert found is not None
    started = found[1][0].started_at
    assert started == plus_two
    assert started is not None and started.tzinfo == UTC and started.hour == 12


def test_record_step_upserts_and_replaces_checks(store: StateStore) -> None:
    store.start_run("r1", command="run", selection="*")
    failing = CheckRecord(name="c", kind="sql", severity="error", passed=False, failing_rows=1)
    store.record_step(_step("r1", "silver.orders", status="running", checks=[failing]))
    passing = CheckRecord(name="c2", kind="sql", severity="error", passed=True)
    store.record_step(
        _step("r1", "silver.orders", status="published", snapshot_id=42, checks=[passing])
    )
    # Same asset, other partition: a different step.
    store.record_step(_step("r1", "silver.orders", partition="p1", status="running"))

    found = store.run("r1")
    assert found is not None
    run, steps = found
    assert run.counts == {"published": 1, "running": 1}
    by_partition = {s.partition: s for s in steps}
    assert set(by_partition) == {None, "p1"}
    assert by_partition[None].status == "published"
    assert by_partition[None].snapshot_id == 42
    assert by_partition[None].checks == [passing]


def test_runs_newest_first_with_counts(store: StateStore) -> None:
    for i in range(3):
        store.start_run(f"run-{i}", command="run", selection="*")
        for j in range(i + 1):
            store.record_step(_step(f"run-{i}", f"a.t{j}"))
        store.record_step(_step(f"run-{i}", "a.failing", status="failed"))
        store.finish_run(f"run-{i}", "failed")

    runs = store.runs()
    assert [r.run_id for r in runs] == ["run-2", "run-1", "run-0"]
    assert [r.counts for r in runs] == [
        {"published": 3, "failed": 1},
        {"published": 2, "failed": 1},
        {"published": 1, "failed": 1},
    ]
    assert [r.run_id for r in store.runs(limit=2)] == ["run-2", "run-1"]
    assert store.runs(limit=0) == []


def test_run_by_unique_prefix(store: StateStore) -> None:
    store.start_run("20250101-abcdef", command="run", selection="*")
    store.start_run("20250101-abxyz", command="run", selection="*")
    store.start_run("20250102-zzz", command="run", selection="*")

    found = store.run("20250102")
    assert found is not None and found[0].run_id == "20250102-zzz"
    found = store.run("20250101-abc")
    assert found is not None and found[0].run_id == "20250101-abcdef"
    with pytest.raises(AmbiguousRunError, match="20250101-ab"):
        store.run("20250101-ab")
    assert store.run("nope") is None
    assert store.run("2025010_") is None  # LIKE wildcards are literal
    assert store.run("") is None


def test_latest_steps_picks_most_recent_run_per_asset(store: StateStore) -> None:
    store.start_run("old", command="run", selection="*")
    store.record_step(_step("old", "a.x", snapshot_id=1))
    store.record_step(_step("old", "a.y", snapshot_id=1))
    store.record_step(_step("old", "a.y", partition="p1", snapshot_id=1))
    store.finish_run("old", "succeeded")
    store.start_run("new", command="run", selection="a.x")
    check = CheckRecord(name="c", kind="sql", severity="error", passed=False, failing_rows=3)
    store.record_step(_step("new", "a.x", status="audit_failed", checks=[check]))

    latest = store.latest_steps()
    assert set(latest) == {("a.x", None), ("a.y", None), ("a.y", "p1")}
    assert latest[("a.x", None)].run_id == "new"
    assert latest[("a.x", None)].status == "audit_failed"
    assert latest[("a.x", None)].checks == [check]
    assert latest[("a.y", None)].run_id == "old"
    assert latest[("a.y", "p1")].snapshot_id == 1


def _start_run_in_a_process_that_exits(db_path: Path, run_id: str) -> None:
    script = (
        "import sys; from orchestrator.state import StateStore; s = StateStore(sys.argv[1]); "
        "s.start_run(sys.argv[2], command='run', selection='*'); s.close()"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), *sys.path])}
    subprocess.run(
        [sys.executable, "-c", script, _url(db_path), run_id],
        check=True,
        cwd=REPO_ROOT,
        env=env,
        timeout=30,
    )


def test_mark_abandoned_only_marks_dead_processes(db_path: Path, store: StateStore) -> None:
    _start_run_in_a_process_that_exits(db_path, "dead")
    store.record_step(_step("dead", "a.running", status="running"))
    store.record_step(_step("dead", "a.pending", status="pending"))
    store.record_step(_step("dead", "a.done", status="published"))
    store.start_run("alive", command="run", selection="*")
    store.record_step(_step("alive", "a.running", status="running"))

    assert store.mark_abandoned() == ["dead"]
    assert store.mark_abandoned() == []

    found = store.run("dead")
    assert found is not None
    run, steps = found
    assert run.status == "abandoned"
    assert run.finished_at is not None
    by_asset = {s.asset: s for s in steps}
    assert by_asset["a.running"].status == "failed"
    assert by_asset["a.running"].error == ABANDONED_ERROR
    assert by_asset["a.running"].finished_at is not None
    assert by_asset["a.pending"].status == "failed"
    assert by_asset["a.done"].status == "published"
    assert by_asset["a.done"].error is None

    alive = store.run("alive")
    assert alive is not None
    assert alive[0].status == "running"
    assert alive[1][0].status == "running"


def test_starting_a_run_can_close_the_abandoned_ones_in_the_same_transaction(
    db_path: Path, store: StateStore
) -> None:
    _start_run_in_a_process_that_exits(db_path, "dead")
    store.record_step(_step("dead", "a.running", status="running"))

    closed = store.start_run("new", command="run", selection="*", close_abandoned=True)

    assert closed == ["dead"]
    assert store.start_run("newer", command="run", selection="*", close_abandoned=True) == []
    dead, new = store.run("dead"), store.run("new")
    assert dead is not None and new is not None
    assert dead[0].status == "abandoned"
    assert [(s.asset, s.status, s.error) for s in dead[1]] == [
        ("a.running", "failed", ABANDONED_ERROR)
    ]
    assert new[0].status == "running"


def test_a_step_whose_row_went_meanwhile_is_recorded_by_its_key_not_over_another(
    db_path: Path, store: StateStore
) -> None:
    store.start_run("r1", command="run", selection="*")
    store.record_step(_step("r1", "a.first", status="running"))
    with sqlite3.connect(db_path) as con:  # history pruned by hand, say
        con.execute("DELETE FROM steps")
    store.record_step(_step("r1", "a.second", status="running"))  # may get the freed row id
    check = CheckRecord(name="c", kind="sql", severity="error", passed=True)

    store.record_step(_step("r1", "a.first", status="published", checks=[check]))

    found = store.run("r1")
    assert found is not None
    steps = {s.asset: s for s in found[1]}
    assert steps["a.second"].status == "running"
    assert steps["a.second"].checks == []
    assert steps["a.first"].status == "published"
    assert steps["a.first"].checks == [check]


def test_deleting_the_database_loses_only_history(db_path: Path) -> None:
    store = StateStore(_url(db_path))
    store.start_run("r1", command="run", selection="*")
    store.record_step(_step("r1", "a.x"))
    store.close()
    for path in db_path.parent.iterdir():  # the database and its WAL files
        path.unlink()

    reopened = StateStore(_url(db_path))
    try:
        assert reopened.runs() == []
        assert reopened.latest_steps() == {}
        reopened.start_run("r2", command="run", selection="*")
        assert [r.run_id for r in reopened.runs()] == ["r2"]
    finally:
        reopened.close()


def test_deleting_the_database_while_open_recreates_tables(db_path: Path) -> None:
    store = StateStore(_url(db_path))
    try:
        store.start_run("r1", command="run", selection="*")
        for path in db_path.parent.iterdir():  # under its pooled connection
            path.unlink()
        assert store.runs() == []
        store.start_run("r2", command="run", selection="*")
        assert [r.run_id for r in store.runs()] == ["r2"]
    finally:
        store.close()


def test_reopening_after_the_folder_was_deleted_starts_afresh(db_path: Path) -> None:
    with StateStore(_url(db_path)) as store:
        store.start_run("r1", command="run", selection="*")
    shutil.rmtree(db_path.parent)

    with StateStore(_url(db_path)) as reopened:  # the same database URL, in the same process
        assert reopened.runs() == []
        reopened.start_run("r2", command="run", selection="*")
        assert [r.run_id for r in reopened.runs()] == ["r2"]


def _all_at_once(work: Callable[[int], None], threads_n: int) -> list[BaseException]:
    """Run `work(0)` ... `work(threads_n - 1)` in as many threads, released together; the
    errors they raised."""
    barrier = threading.Barrier(threads_n, timeout=30)
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            barrier.wait()
            work(n)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_stores_opened_at_once_on_a_new_database_can_all_write_at_once(tmp_path: Path) -> None:
    # Each thread opens its store while another may still be creating the tables.
    for attempt in range(30):
        url = _url(tmp_path / str(attempt) / "sluice.db")

        def open_and_write(n: int, url: str = url) -> None:
            with StateStore(url) as store:
                store.start_backfill(f"bf-{n}", selection="*", first="a", last="b", ranged=False)

        assert _all_at_once(open_and_write, 3) == []
        with StateStore(url) as store:
            assert len(store.backfills()) == 3


def test_in_memory_stores_are_separate_databases() -> None:
    with StateStore("sqlite://") as one, StateStore("sqlite://") as other:
        one.start_run("r1", command="run", selection="*")
        assert [r.run_id for r in one.runs()] == ["r1"]
        assert other.runs() == []


def test_concurrent_record_step_loses_nothing(db_path: Path) -> None:
    threads_n, steps_n = 8, 25
    store = StateStore(_url(db_path))
    store.start_run("r1", command="run", selection="*")

    def worker(t: int) -> None:
        for i in range(steps_n):
            check = CheckRecord(name=f"c{t}-{i}", kind="sql", severity="error", passed=True)
            asset = f"l.t{t}_{i}"
            store.record_step(_step("r1", asset, status="running"))
            store.record_step(_step("r1", asset, status="published", checks=[check]))

    errors = _all_at_once(worker, threads_n)
    try:
        assert errors == []
        found = store.run("r1")
        assert found is not None
        run, steps = found
        assert run.counts == {"published": threads_n * steps_n}
        assert len(steps) == threads_n * steps_n
        assert all(len(s.checks) == 1 for s in steps)
        assert len(store.latest_steps()) == threads_n * steps_n
    finally:
        store.close()


def _pair(
    asset: str, day: str, state: BackfillState, run: str | None = None, error: str | None = None
) -> BackfillPartition:
    return BackfillPartition(asset=asset, partition=day, state=state, run_id=run, error=error)


def test_backfill_partition_states_upsert_in_bulk(store: StateStore) -> None:
    days = [f"2024-{m:02d}-{d:02d}" for m in range(1, 13) for d in range(1, 29)]  # 336
    for backfill_id in ("bf-a", "bf-b"):
        store.start_backfill(backfill_id, selection="*", first=days[0], last=days[-1], ranged=False)
    store.set_backfill_partitions(
        "bf-a",
        [_pair(a, d, "missing", "r1") for a in ("x.one", "x.two") for d in days],
    )
    store.set_backfill_partitions("bf-b", [_pair("x.one", days[0], "published")])
    store.set_backfill_partitions(
        "bf-a",
        [
            _pair("x.one", days[0], "running", "r2"),
            _pair("x.one", days[0], "failed", "r2", "boom"),  # the last one wins
            _pair("x.two", days[5], "published", "r2"),
            _pair("x.three", days[5], "missing", "r2"),  # a new pair
        ],
    )

    store.set_backfill_partitions("bf-a", [_pair("x.two", d, "running", "r3") for d in days])

    found = store.backfill("bf-a")
    assert found is not None
    states = {(p.asset, p.partition): p for p in found[1]}
    assert {states["x.two", d].state for d in days} == {"running"}
    assert len(states) == 2 * len(days) + 1
    assert states["x.one", days[0]] == _pair("x.one", days[0], "failed", "r2", "boom")
    assert states["x.three", days[5]].state == "missing"
    assert states["x.one", days[1]] == _pair("x.one", days[1], "missing", "r1")
    other = store.backfill("bf-b")
    assert other is not None
    assert [(p.asset, p.partition, p.state) for p in other[1]] == [("x.one", days[0], "published")]


def test_invalid_status_is_rejected(store: StateStore) -> None:
    store.start_run("r1", command="run", selection="*")
    with pytest.raises(ValueError, match="invalid step status"):
        store.record_step(_step("r1", "a.x", status="done"))
    with pytest.raises(ValueError, match="invalid run status"):
        store.finish_run("r1", "done")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "make_url",
    [
        lambda tmp: "not a database url",
        lambda tmp: "nosuchdialect://user@host/db",
        lambda tmp: f"sqlite:///{tmp / 'a_file' / 'sluice.db'}",  # parent is a file
        lambda tmp: f"sqlite:///{tmp}",  # a directory, not a database
    ],
    ids=["garbage", "unknown-dialect", "parent-is-file", "is-directory"],
)
def test_unusable_url_raises_config_error(tmp_path: Path, make_url: Callable[[Path], str]) -> None:
    (tmp_path / "a_file").write_text("not a directory")
    url = make_url(tmp_path)
    for _ in range(2):  # the second time too: an engine that could not be used is not kept
        with pytest.raises(ConfigError) as info:
            StateStore(url)
        assert "run-history database" in str(info.value)
        assert url in str(info.value)
