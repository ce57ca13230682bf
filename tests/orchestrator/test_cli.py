"""The CLI as a new user meets it: init, inspection commands, and mistakes without tracebacks."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ProjectDir

from orchestrator.cli import main


def test_init_writes_a_project_that_materializes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "demo"
    assert main(["init", str(target)]) == 0
    assert main(["--project", str(target), "materialize"]) == 0
    out = capsys.readouterr().out
    assert "published bronze.raw_events" in out and "published silver.clicks" in out
    assert main(["init", str(target)]) == 2
    assert "already exists" in capsys.readouterr().out


def test_inspection_commands_report_what_happened(project: ProjectDir) -> None:
    project.write(
        {
            "assets/bronze/raw.py": """
                import pyarrow as pa

                from orchestrator import asset, checks


                @asset(layer="bronze", checks=[checks.unique("id")], tags=["finance"])
                def raw(ctx):
                    return pa.table({"id": [1, 2, 3], "amount": [1.5, 2.5, 3.5]})
            """,
            "assets/gold/revenue.sql": """
                -- checks: row_count(min=1)
                SELECT sum(r.amount) AS revenue, count(*) AS orders FROM bronze.raw AS r
            """,
        }
    )
    run = project.sluice("materialize")
    assert run.code == 0
    run_id = re.search(r"run (\S+): ok", run.out).group(1)  # type: ignore[union-attr]

    status = project.sluice("status")
    assert re.search(r"gold\.revenue\s+fresh", status.out), status.out
    assert run_id in project.sluice("runs").out
    detail = project.sluice("run", run_id[:10])
    assert "published" in detail.out and "unique(id)" in detail.out

    query = project.sluice("query", "SELECT revenue, orders FROM gold.revenue")
    assert re.search(r"7\.5\s+3", query.out), query.out

    lineage = project.sluice("lineage", "revenue", "--columns")
    assert "bronze.raw" in lineage.out
    assert re.search(r"revenue\s+bronze\.raw\.amount", lineage.out), lineage.out

    assert "gold.revenue" in project.sluice("plan", "tag:finance+", "--force").out
    assert project.sluice("branches").out.strip() == "no audit branches"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "no-such-run"], "no run 'no-such-run'"),
        (["query", "SELECT * FROM silver.nothing"], "no table silver.nothing"),
        (["query", "SELEC 1"], "cannot parse query"),
        (["plan", "layer:gld"], "no asset has layer 'gld' (layers: bronze)"),
        (["lineage", "raw", "--columns"], "column lineage needs a SQL asset"),
    ],
)
def test_user_mistakes_exit_2_without_a_traceback(
    project: ProjectDir, args: list[str], message: str
) -> None:
    project.write(
        {
            "assets/bronze/raw.py": """
                import pyarrow as pa

                from orchestrator import asset


                @asset(layer="bronze")
                def raw(ctx):
                    return pa.table({"id": [1]})
            """
        }
    )
    result = project.sluice(*args)
    assert result.code == 2, result.out
    assert message in result.out
    assert "Traceback" not in result.out


def test_console_script_help_runs_in_a_fresh_process() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "--help"], capture_output=True, text=True
    )
    assert proc.returncode == 0
    for command in ("plan", "materialize", "status", "query", "branches", "rollback", "init"):
        assert command in proc.stdout


def test_usage_error_exits_2(project: ProjectDir, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["materialize", "--no-such-flag"])
    assert exit_info.value.code == 2
