"""Retries with growing backoff, the project's default retry, and timeouts that end a stuck
attempt without ever letting it publish afterwards."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import ProjectDir, snapshots

import orchestrator.runner as runner
from lakehouse.branches import Lakehouse, list_branches
from lakehouse.catalog import open_catalog
from lakehouse.locks import TableLocks
from orchestrator.errors import DefinitionError
from orchestrator.executor import Blocked
from orchestrator.loader import load_project
from orchestrator.materialize import materialize_selection
from orchestrator.runner import StepOutcome
from orchestrator.sql_assets import load_sql_asset
from orchestrator.timeouts import AttemptCancelledError, Fence, FencedLocks

FLAKY = """
    import pathlib

    import pyarrow as pa

    from orchestrator import Retry, asset

    HERE = pathlib.Path(__file__).parent


    def attempt(name):
        counter = HERE / f"{name}.attempts"
        seen = int(counter.read_text()) if counter.exists() else 0
        counter.write_text(str(seen + 1))
        return seen + 1


    @asset(layer="bronze", retry=Retry(attempts=3, backoff_s=0.5, max_backoff_s=10, jitter=0.25))
    def flaky(ctx):
        n = attempt("flaky")
        if n < 3:
            raise ConnectionError(f"source unavailable (attempt {n})")
        return pa.table({"attempt": [n]})


    @asset(layer="silver")
    def downstream(ctx, flaky):
        return flaky


    @asset(layer="bronze")
    def inherits(ctx):
        n = attempt("inherits")
        if n < 3:
            raise ConnectionError(f"down (attempt {n})")
        return pa.table({"attempt": [n]})


    @asset(layer="bronze", retry=Retry(attempts=1))
    def opted_out(ctx):
        attempt("opted_out")
        raise ConnectionError("down")
    """


class RecordingTime:
    """Stands in for the `time` module inside the runner: records sleeps, skips them."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def outcome(result: StepOutcome | Blocked) -> StepOutcome:
    assert isinstance(result, StepOutcome), result
    return result


def test_an_asset_failing_twice_then_succeeding_publishes_with_growing_backoff(
    project: ProjectDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.write({"assets/bronze/flaky.py": FLAKY})
    clock = RecordingTime()
    monkeypatch.setattr(runner, "time", clock)
    summary = materialize_selection(load_project(project.root), ["flaky+"], command="test")
    flaky = outcome(summary.results["bronze.flaky"])
    assert flaky.status == "published", flaky.error
    assert flaky.attempts == 3
    assert outcome(summary.results["silver.downstream"]).status == "published"
    # Backoff 0.5 then 1.0, each within +-25% jitter: the second pause is always longer.
    first, second = clock.sleeps
    assert 0.375 <= first <= 0.625
    assert 0.75 <= second <= 1.25
    shown = project.sluice("run", summary.run_id)
    assert "bronze.flaky" in shown.out and "3 attempts" in shown.out


def test_the_project_retry_default_applies_to_assets_without_their_own(
    project: ProjectDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.write(
        {
            "assets/bronze/flaky.py": FLAKY,
            "sluice.toml": "[retry]\nattempts = 3\nbackoff_s = 0.25\njitter = 0\n",
        }
    )
    clock = RecordingTime()
    monkeypatch.setattr(runner, "time", clock)
    loaded = load_project(project.root)
    summary = materialize_selection(loaded, ["inherits", "opted_out"], command="test")
    inherits = outcome(summary.results["bronze.inherits"])
    assert (inherits.status, inherits.attempts) == ("published", 3)
    assert clock.sleeps == [0.25, 0.5]
    opted_out = outcome(summary.results["bronze.opted_out"])
    assert (opted_out.status, opted_out.attempts) == ("failed", 1)  # its own Retry wins


STUCK = """
    import pathlib
    import time

    import pyarrow as pa

    from orchestrator import Retry, asset

    HERE = pathlib.Path(__file__).parent


    @asset(layer="bronze", timeout_s=1.0, retry=Retry(attempts=ATTEMPTS, backoff_s=0))
    def stuck(ctx):
        counter = HERE / "attempts"
        n = int(counter.read_text()) + 1 if counter.exists() else 1
        counter.write_text(str(n))
        (HERE / f"started-{n}").touch()
        if n == 1:  # the first attempt hangs until the test releases it
            deadline = time.monotonic() + 60
            while not (HERE / "release").exists() and time.monotonic() < deadline:
                time.sleep(0.02)
        (HERE / f"finished-{n}").touch()
        return pa.table({"attempt": [n]})


    @asset(layer="silver")
    def after(ctx, stuck):
        return stuck
    """


def wait_for_abandoned_attempts(timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while any(t.name.startswith("sluice-attempt-") for t in threading.enumerate()):
        assert time.monotonic() < deadline, "an abandoned attempt never ended"
        time.sleep(0.05)


def release(here: Path) -> None:
    (here / "release").touch()
    deadline = time.monotonic() + 30
    while not (here / "finished-1").exists():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    wait_for_abandoned_attempts()


def test_a_timeout_ends_a_stuck_attempt_and_blocks_downstream(project: ProjectDir) -> None:
    project.write({"assets/bronze/stuck.py": STUCK.replace("ATTEMPTS", "1")})
    here = project.root / "assets" / "bronze"
    summary = materialize_selection(load_project(project.root), ["stuck+"], command="test")
    stuck = outcome(summary.results["bronze.stuck"])
    assert stuck.status == "failed"
    assert stuck.error is not None and "attempt timed out after 1s" in stuck.error
    assert isinstance(summary.results["silver.after"], Blocked)
    assert not (here / "finished-1").exists()  # the run ended while the attempt still hung

    release(here)  # the abandoned attempt wakes up and tries to write and publish
    tables = snapshots(project.root)
    assert "bronze.stuck" not in tables or tables["bronze.stuck"] is None
    assert "silver.after" not in tables


def test_a_retry_after_a_timeout_publishes_and_the_abandoned_attempt_never_does(
    project: ProjectDir,
) -> None:
    project.write({"assets/bronze/stuck.py": STUCK.replace("ATTEMPTS", "2")})
    here = project.root / "assets" / "bronze"
    loaded = load_project(project.root)
    summary = materialize_selection(loaded, ["stuck+"], command="test")
    stuck = outcome(summary.results["bronze.stuck"])
    assert (stuck.status, stuck.attempts) == ("published", 2), stuck.error
    published = snapshots(project.root)

    release(here)
    assert snapshots(project.root) == published  # main did not move
    lh = Lakehouse(open_catalog(loaded.config.catalog), TableLocks(loaded.config.lock_dir))
    assert list_branches(lh.catalog) == []
    rows = project.sluice("query", "SELECT attempt FROM bronze.stuck")
    assert rows.code == 0 and " 2" in rows.out and " 1\n" not in rows.out


def test_a_fence_refuses_commits_once_closed_and_waits_for_one_under_way() -> None:
    fence = Fence()
    locks = FencedLocks(TableLocks(None), fence)
    with locks.hold("bronze.t"):
        pass
    entered, leave = threading.Event(), threading.Event()

    def commit() -> None:
        with locks.hold("bronze.t"):
            entered.set()
            leave.wait(10)

    worker = threading.Thread(target=commit)
    worker.start()
    assert entered.wait(10)
    assert fence.close(wait_s=0.1) is False  # a commit is under way: close cannot wait it out
    leave.set()
    worker.join(10)
    assert fence.commits == 2
    with pytest.raises(AttemptCancelledError), locks.hold("bronze.t"):
        pass


def test_sql_assets_take_a_timeout_header(tmp_path: Path) -> None:
    gold = tmp_path / "assets" / "gold"
    gold.mkdir(parents=True)
    (gold / "report.sql").write_text("-- timeout_s: 30\nSELECT 1 AS x")
    assert load_sql_asset(gold / "report.sql", tmp_path / "assets").timeout_s == 30.0
    (gold / "report.sql").write_text("-- timeout_s: soon\nSELECT 1 AS x")
    with pytest.raises(DefinitionError, match="timeout_s must be a number of seconds"):
        load_sql_asset(gold / "report.sql", tmp_path / "assets")


def test_a_python_timeout_must_be_positive(project: ProjectDir) -> None:
    project.write(
        {
            "assets/bronze/bad.py": """
                from orchestrator import asset

                @asset(layer="bronze", timeout_s=0)
                def bad(ctx):
                    return None
                """
        }
    )
    result = project.sluice("plan")
    assert result.code == 2
    assert "timeout_s must be > 0" in result.out
