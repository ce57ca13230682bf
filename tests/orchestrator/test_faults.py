"""Fault injection through real processes: kill a run mid-write and mid-audit, stream big data."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ProjectDir, snapshots

from lakehouse.branches import list_branches
from lakehouse.catalog import open_catalog
from orchestrator.config import load_config

pytestmark = pytest.mark.slow

BIG = """
    import os
    import pathlib
    import time

    import pyarrow as pa

    from orchestrator import asset, checks

    SCHEMA = pa.schema([("id", pa.int64()), ("payload", pa.string())])
    BATCH_ROWS = int(os.environ.get("BATCH_ROWS", "20000"))
    BATCHES = int(os.environ.get("BATCHES", "40"))
    MARKER = os.environ.get("MID_WRITE_MARKER")
    SLOW_AUDIT = os.environ.get("SLOW_AUDIT")
    # A deliberately slow audit (DuckDB sums three billion numbers) to kill a run inside it.
    AUDITS = [checks.not_null("id")] + (
        [checks.sql("SELECT * FROM this WHERE (SELECT sum(range) FROM range(3000000000)) < 0")]
        if SLOW_AUDIT
        else []
    )


    @asset(layer="bronze", checks=AUDITS)
    def big(ctx):
        payload = pa.array(["x" * 100] * BATCH_ROWS)

        def batches():
            for i in range(BATCHES):
                ids = pa.array(range(i * BATCH_ROWS, (i + 1) * BATCH_ROWS), pa.int64())
                yield pa.record_batch([ids, payload], schema=SCHEMA)
                if MARKER and i == BATCHES // 2:
                    pathlib.Path(MARKER).write_text("half written")
                if MARKER and i >= BATCHES // 2:
                    time.sleep(0.5)

        return pa.RecordBatchReader.from_batches(SCHEMA, batches())
"""

DOWN = """
    -- checks: row_count(min=1)
    SELECT count(*) AS n, max(id) AS max_id FROM bronze.big
"""


def _sluice(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "--project", str(root), *args],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=300)
    return proc.returncode, out


def _rows(root: Path, identifier: str) -> tuple[int, int]:
    table = open_catalog(load_config(root).catalog).load_table(identifier)
    data = table.scan().to_arrow()
    return data.num_rows, int(data.column("id").to_pylist()[-1]) if data.num_rows else -1


def test_a_process_killed_mid_write_leaves_main_as_it_was(project: ProjectDir) -> None:
    project.write({"assets/bronze/big.py": BIG, "assets/silver/down.sql": DOWN})
    code, out = _finish(_sluice(project.root, "materialize"))
    assert code == 0, out
    before = snapshots(project.root)
    rows_before = _rows(project.root, "bronze.big")

    marker = project.root / "marker"
    proc = _sluice(project.root, "materialize", "--force", env={"MID_WRITE_MARKER": str(marker)})
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "the run never reached the middle of its write"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)

    assert snapshots(project.root) == before
    assert _rows(project.root, "bronze.big") == rows_before
    assert "running" in _finish(_sluice(project.root, "runs"))[1]

    code, out = _finish(_sluice(project.root, "materialize", "--force"))
    assert code == 0, out
    after = snapshots(project.root)
    assert all(after[k] != before[k] for k in before)
    assert _rows(project.root, "bronze.big") == rows_before
    assert "abandoned" in _finish(_sluice(project.root, "runs"))[1]


def test_a_process_killed_mid_audit_leaves_an_orphan_branch_that_prune_removes(
    project: ProjectDir,
) -> None:
    project.write({"assets/bronze/big.py": BIG})
    assert _finish(_sluice(project.root, "materialize"))[0] == 0
    before = snapshots(project.root)
    catalog = open_catalog(load_config(project.root).catalog)

    proc = _sluice(project.root, "materialize", "--force", env={"SLOW_AUDIT": "1"})
    deadline = time.monotonic() + 120
    while not list_branches(catalog):
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "the run never reached its audit"
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)

    assert snapshots(project.root) == before
    orphans = list_branches(catalog)
    assert len(orphans) == 1 and orphans[0].identifier == "bronze.big"
    listed = _finish(_sluice(project.root, "branches"))[1]
    assert orphans[0].branch in listed
    code, out = _finish(_sluice(project.root, "branches", "--prune"))
    assert code == 0 and "pruned 1 branch" in out, out
    assert list_branches(catalog) == []
    code, out = _finish(_sluice(project.root, "materialize", "--force"))
    assert code == 0, out


PEAK_RSS = """
import resource, sys
from orchestrator.cli import main
code = main(sys.argv[1:])
print("PEAK_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
sys.exit(code)
"""


def _peak_rss_mb(root: Path, batches: int) -> float:
    proc = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, "--project", str(root), "materialize", "--force"],
        env={**os.environ, "BATCHES": str(batches), "BATCH_ROWS": "100000"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    kb = int(proc.stdout.split("PEAK_KB")[1].split()[0])
    return kb / 1024


def test_a_record_batch_reader_larger_than_the_memory_budget_streams(project: ProjectDir) -> None:
    project.write({"assets/bronze/big.py": BIG})
    small = _peak_rss_mb(project.root, batches=1)
    # 120 batches x 100k rows x ~108 bytes: about 1.3 GB of Arrow data flows through the write.
    large = _peak_rss_mb(project.root, batches=120)
    assert _rows(project.root, "bronze.big")[0] == 12_000_000
    assert large - small < 400, f"peak RSS grew from {small:.0f} MB to {large:.0f} MB"
