"""cli_start: whole-process `sluice --help` and `sluice plan` vs importing the libraries.

The example project (this repository's `assets/`) is copied into a temporary folder and
materialized once, untimed, so `sluice plan` finds everything fresh (it reads what `main`
holds for every asset, as on any day after the first).

- `sluice --help` and `sluice --project EXAMPLE plan`, each a whole process.
- Baseline: `python -c "import pyiceberg, duckdb, pyarrow"`.
- Information: `python -c pass` (the interpreter alone).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

from bench.harness import REPO_ROOT, BenchFailure, Settings, alternate, run_process
from bench.projects import sluice_argv
from bench.report import Report

TITLE = "whole-process `sluice --help` and `sluice plan` vs importing pyiceberg, duckdb, pyarrow"
IMPORTS = "import pyiceberg, duckdb, pyarrow"


def example_copy(target: Path) -> Path:
    shutil.copytree(
        REPO_ROOT / "assets", target / "assets", ignore=shutil.ignore_patterns("__pycache__")
    )
    if (REPO_ROOT / "sluice.toml").exists():
        shutil.copy(REPO_ROOT / "sluice.toml", target / "sluice.toml")
    return target


def run(settings: Settings, report: Report, console: Any) -> None:
    repeat = settings.repeats(5 if settings.quick else 15)
    root = example_copy(settings.workdir / "example")
    console.print("materializing the example project once (untimed) ...")
    run_process(sluice_argv("--project", str(root), "materialize"), cwd=root).check(
        "sluice materialize (setup)"
    )
    first = run_process(sluice_argv("--project", str(root), "plan"), cwd=root)
    first.check("sluice plan")
    if not first.stdout.startswith("nothing to do"):
        raise BenchFailure(f"example not fresh after materializing:\n{first.stdout[:500]}")
    report.params.update({"repeat": repeat, "plan_output": first.stdout.strip().splitlines()[0]})

    def side(name: str, argv: list[str]) -> Any:
        def measure(_: int) -> None:
            r = run_process(argv, cwd=root).check(name)
            report.add_run(name, r.wall_s, cpu_s=r.cpu_s)

        return measure

    alternate(
        repeat,
        {
            "sluice --help": side("sluice --help", sluice_argv("--help")),
            "sluice plan": side("sluice plan", sluice_argv("--project", str(root), "plan")),
            "import libraries": side("import libraries", [sys.executable, "-c", IMPORTS]),
            "python -c pass": side("python -c pass", [sys.executable, "-c", "pass"]),
        },
    )
    report.limit("sluice --help, absolute", ("sluice --help", "time_s"), 0.3)
    report.ratio(
        "time plan/import", ("sluice plan", "time_s"), ("import libraries", "time_s"), target=1.5
    )
    report.ratio("time --help/import", ("sluice --help", "time_s"), ("import libraries", "time_s"))
    report.ratio("cpu plan/import", ("sluice plan", "cpu_s"), ("import libraries", "cpu_s"))
    report.note(f"baseline: python -c {IMPORTS!r}")
