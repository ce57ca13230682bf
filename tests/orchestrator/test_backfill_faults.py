"""Backfills under faults, through real processes: killed mid-way then resumed, and two
backfill processes on disjoint ranges of the same tables at once."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ProjectDir
from partition_shop import FILES, set_knobs, table_rows

from lakehouse.branches import list_branches
from lakehouse.catalog import open_catalog
from lakehouse.provenance import published_history, snapshot_provenance
from orchestrator.config import load_config
from orchestrator.loader import load_project
from orchestrator.materialize import open_lakehouse
from orchestrator.published import read_published
from orchestrator.staleness import PublishedState

pytestmark = pytest.mark.slow

CHAIN = ("bronze.raw_orders", "silver.orders")
DAYS = [f"2024-01-0{d}" for d in range(1, 7)]


def _sluice(root: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "--project", str(root), *args],
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=300)
    return proc.returncode, out


def _published(root: Path) -> dict[str, PublishedState]:
    project = load_project(root)
    return read_published(open_lakehouse(project), project.graph, list(CHAIN))


def test_a_killed_backfill_resumes_with_only_the_rest(project: ProjectDir) -> None:
    project.write(FILES)
    set_knobs(project.root, slow_days=["2024-01-03"])
    proc = _sluice(project.root, "backfill", *CHAIN, "--from", DAYS[0], "--to", DAYS[2])
    reached = project.root / "reached-2024-01-03"
    deadline = time.monotonic() + 120
    while not reached.exists():
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "the backfill never reached its third partition"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)

    # Killed while computing bronze@01-03: 01-01 and 01-02 of bronze are published, no more.
    before = _published(project.root)
    done = {"bronze.raw_orders@2024-01-01", "bronze.raw_orders@2024-01-02"}
    assert {n for n in before if "@" in n} == done
    listed = project.sluice("backfills").out
    [backfill_id] = re.findall(r"^(bf-\S+)", listed, flags=re.MULTILINE)
    # The dead process's backfill is not shown as running; its partitions in flight failed.
    assert re.search(rf"{backfill_id}\s+abandoned .* \d+ failed, .*2 published$", listed), listed
    assert "running" not in listed, listed

    mixed = project.sluice("backfill", "--resume", backfill_id, "--from", DAYS[0])
    assert mixed.code == 2 and "--resume ID takes the selection and range" in mixed.out, mixed.out
    set_knobs(project.root)
    resumed = project.sluice("backfill", "--resume", backfill_id)
    assert resumed.code == 0, resumed.out
    assert f"backfill {backfill_id}: 4 published, 0 failed, 2 already fresh" in resumed.out
    assert "published bronze.raw_orders@2024-01-03" in resumed.out
    assert "published bronze.raw_orders@2024-01-01" not in resumed.out
    after = _published(project.root)
    for node in done:
        assert after[node] == before[node], f"{node} was rewritten"
    assert len(table_rows(project.root, "silver.orders")) == 3 * 3
    listed = project.sluice("backfills").out
    assert re.search(rf"{backfill_id}\s+succeeded .* 6 published", listed), listed


def test_two_backfill_processes_on_disjoint_ranges_lose_nothing(project: ProjectDir) -> None:
    project.write(FILES)
    # Both processes compute both their bronze partitions, then all four write at once: every
    # publish but the first finds main moved and re-applies its partition on top.
    set_knobs(project.root, gate_days=DAYS[:4])
    open_catalog(load_config(project.root).catalog)  # created before the race, not during it
    procs = [
        _sluice(project.root, "backfill", *CHAIN, "--from", first, "--to", last, "--parallel", "2")
        for first, last in ((DAYS[0], DAYS[1]), (DAYS[2], DAYS[3]))
    ]
    deadline = time.monotonic() + 120
    while not all((project.root / f"reached-{day}").exists() for day in DAYS[:4]):
        assert all(proc.poll() is None for proc in procs), [_finish(p)[1] for p in procs]
        assert time.monotonic() < deadline, "the backfills never reached their partitions"
        time.sleep(0.05)
    (project.root / "go").touch()
    outcomes = [_finish(proc) for proc in procs]
    for code, out in outcomes:
        assert code == 0, out
        assert ": 4 published, 0 failed" in out, out

    for identifier in CHAIN:
        rows = table_rows(project.root, identifier)
        assert sorted(r["order_id"] for r in rows) == sorted(
            day * 10 + i for day in range(1, 5) for i in range(3)
        ), identifier
    published = _published(project.root)
    assert {n for n in published if "@" in n} == {f"{t}@{d}" for t in CHAIN for d in DAYS[:4]}
    assert list_branches(open_catalog(load_config(project.root).catalog)) == []
    # They really raced: writes that found main moved were re-applied, so the table holds
    # snapshots of abandoned first attempts besides the four in main's history.
    table = open_catalog(load_config(project.root).catalog).load_table("bronze.raw_orders")
    on_main = {s for s, _ in published_history(table)}
    written = {
        s.snapshot_id for s in table.snapshots() if snapshot_provenance(table, s.snapshot_id)
    }
    assert len(on_main) == 4 and len(written - on_main) >= 1
    listed = project.sluice("backfills").out.splitlines()
    assert len(listed) == 2 and all("succeeded" in line for line in listed), listed
