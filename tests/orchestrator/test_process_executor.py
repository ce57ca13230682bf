"""`[executor] kind = "processes"`: steps in forked worker processes, a dying worker."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from conftest import ProjectDir, snapshots

from lakehouse.catalog import open_catalog
from orchestrator.config import load_config
from orchestrator.state import StateStore

CONFIG = """
    [executor]
    kind = "processes"
    max_workers = 2
"""

# Each asset records the process it ran in; `slow` announces itself and waits while a flag
# file exists, so that a test can kill its worker mid-step.
ASSETS = """
    import os
    import pathlib
    import time

    import pyarrow as pa

    from orchestrator import asset, checks

    HERE = pathlib.Path(__file__).parent


    def _pid_table(n):
        return pa.table({"id": list(range(n)), "pid": [os.getpid()] * n})


    @asset(layer="bronze", checks=[checks.not_null("id")])
    def left(ctx):
        return _pid_table(3)


    @asset(layer="bronze", checks=[checks.unique("id")])
    def slow(ctx):
        hold = HERE / "hold"
        if hold.exists():
            (HERE / "slow.pid").write_text(str(os.getpid()))
            while hold.exists():
                time.sleep(0.05)
        return _pid_table(4)


    @asset(layer="silver")
    def joined(ctx, left, slow):
        n = sum(r.aggregate("count(*)").fetchall()[0][0] for r in (left, slow))
        return _pid_table(n)


    @asset(layer="silver")
    def after_left(ctx, left):
        return ctx.sql("SELECT id, pid FROM bronze.left")
"""


def _main(root: Path, identifier: str) -> list[tuple[int, int]]:
    table = open_catalog(load_config(root).catalog).load_table(identifier)
    data = table.scan().to_arrow().sort_by("id")
    return list(zip(data.column("id").to_pylist(), data.column("pid").to_pylist(), strict=True))


def test_steps_run_in_worker_processes_and_publish(project: ProjectDir) -> None:
    project.write({"sluice.toml": CONFIG, "assets/graph.py": ASSETS})
    result = project.sluice("materialize")
    assert result.code == 0, result.out
    rows = {a: _main(project.root, a) for a in ("bronze.left", "bronze.slow", "silver.joined")}
    assert [i for i, _ in rows["silver.joined"]] == list(range(7))
    workers = {pid for table in rows.values() for _, pid in table}
    assert os.getpid() not in workers
    assert [r[0] for r in _main(project.root, "silver.after_left")] == [0, 1, 2]

    again = project.sluice("materialize")
    assert again.code == 0 and "nothing to do" in again.out, again.out


def test_a_killed_worker_fails_its_step_and_the_run_goes_on(project: ProjectDir) -> None:
    project.write({"sluice.toml": CONFIG, "assets/graph.py": ASSETS})
    assert project.sluice("materialize").code == 0
    before = snapshots(project.root)
    hold, pid_file = project.root / "assets" / "hold", project.root / "assets" / "slow.pid"
    hold.write_text("")

    def kill_slow_worker() -> None:
        deadline = time.monotonic() + 60
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid_file.exists():
            os.kill(int(pid_file.read_text()), signal.SIGKILL)

    killer = threading.Thread(target=kill_slow_worker)
    killer.start()
    try:
        result = project.sluice("materialize", "--force")
    finally:
        killer.join()
        hold.unlink()
    assert pid_file.exists(), "the slow step never started"
    assert result.code == 1, result.out
    assert "the worker process running bronze.slow died" in result.out
    after = snapshots(project.root)
    assert after["bronze.slow"] == before["bronze.slow"]  # main untouched
    assert after["silver.joined"] == before["silver.joined"]  # blocked downstream
    assert after["bronze.left"] != before["bronze.left"]  # the rest went on
    assert after["silver.after_left"] != before["silver.after_left"]

    rerun = project.sluice("materialize")  # what the failure left stale, and only that
    assert rerun.code == 0, rerun.out
    final = snapshots(project.root)
    assert final["bronze.slow"] == before["bronze.slow"]  # its main is still fresh
    assert final["silver.joined"] != before["silver.joined"]
    assert final["bronze.left"] == after["bronze.left"]


@pytest.mark.parametrize("kind", ["threads", "processes"])
def test_a_step_is_recorded_running_only_once_a_worker_took_it(
    project: ProjectDir, kind: str
) -> None:
    """One worker, held by `slow`: `tail` (planned after it) waits unrecorded, not `running`."""
    config = CONFIG.replace('"processes"', f'"{kind}"').replace(
        "max_workers = 2", "max_workers = 1"
    )
    tail = """

    @asset(layer="bronze")
    def tail(ctx):
        return _pid_table(1)
"""
    project.write({"sluice.toml": config, "assets/graph.py": ASSETS + tail})
    hold, pid_file = project.root / "assets" / "hold", project.root / "assets" / "slow.pid"
    hold.write_text("")
    store = StateStore(load_config(project.root).state_url)
    seen: dict[str, str] = {}

    def look_then_release() -> None:
        deadline = time.monotonic() + 60
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        seen.update({asset: step.status for (asset, _), step in store.latest_steps().items()})
        hold.unlink()

    looker = threading.Thread(target=look_then_release)
    looker.start()
    try:
        result = project.sluice("materialize", "bronze.slow", "bronze.tail")
    finally:
        looker.join()
        hold.unlink(missing_ok=True)
        store.close()
    assert result.code == 0, result.out
    assert seen.get("bronze.slow") == "running"
    assert "bronze.tail" not in seen
