"""overhead: orchestration cost of a layered graph of tiny assets, Sluice vs Dagster.

The graph: `root` -> `layers` layers of `width` nodes, each node reading every node of the
layer before -> `sink` (default 1 + 10 x 10 + 1 = 102 assets). Every asset returns a tiny
Arrow table (10 rows) and counts the rows of its inputs.

- Sluice: `load_project` + `materialize_selection(["*"], force=True)` with `max_workers=2`;
  every asset is a full WAP cycle (branch, write, one `not_null` audit, publish). The tables
  exist already (an untimed first run created them), as on any day after the first. Measured
  with each executor kind (option `kinds`, default both): `threads` (the default: Python code
  of two steps takes turns on the GIL) and `processes` (two forked worker processes).
- Dagster: import the same graph as Dagster assets + `dagster.materialize(...)` in process,
  default IO manager (pickles on the local filesystem), no Iceberg at all.

Each side runs in a fresh process per repetition; imports of the libraries are not timed,
importing the asset definitions is.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.harness import BenchFailure, Settings, alternate, clock, run_worker
from bench.projects import write_project
from bench.report import Report

TITLE = "layered graph of tiny assets, full WAP per asset vs Dagster materialize()"
ROWS_PER_ASSET = 10


def _names(layers: int, width: int) -> list[list[str]]:
    return [["root"]] + [[f"l{k}_{j}" for j in range(width)] for k in range(layers)] + [["sink"]]


def _sluice_module(prev: list[str], nodes: list[str]) -> str:
    lines = [
        "import pyarrow as pa",
        "",
        "from orchestrator import asset, checks",
        "",
        "",
        "def _rows(*relations):",
        "    return sum(r.aggregate('count(*)').fetchall()[0][0] for r in relations)",
        "",
    ]
    params = ", ".join(prev)
    for node in nodes:
        signature = f"ctx, {params}" if prev else "ctx"
        counted = f"_rows({params})" if prev else "0"
        lines += [
            "",
            '@asset(layer="bench", checks=[checks.not_null("id")])',
            f"def {node}({signature}):",
            f"    n = {counted}",
            f"    return pa.table({{'id': list(range({ROWS_PER_ASSET})), "
            f"'upstream_rows': [n] * {ROWS_PER_ASSET}}})",
            "",
        ]
    return "\n".join(lines)


def _dagster_module(layers: list[list[str]]) -> str:
    lines = ["import dagster as dg", "import pyarrow as pa", "", "ASSETS = []", ""]
    prev: list[str] = []
    for nodes in layers:
        params = ", ".join(prev)
        counted = f"sum(t.num_rows for t in ({params},))" if prev else "0"
        for node in nodes:
            lines += [
                "",
                "@dg.asset",
                f"def {node}({params}):",
                f"    n = {counted}",
                f"    return pa.table({{'id': list(range({ROWS_PER_ASSET})), "
                f"'upstream_rows': [n] * {ROWS_PER_ASSET}}})",
                "",
                f"ASSETS.append({node})",
                "",
            ]
        prev = nodes
    return "\n".join(lines)


def build(workdir: Path, layers: int, width: int) -> tuple[Path, Path, int]:
    graph = _names(layers, width)
    files = {}
    prev: list[str] = []
    for index, nodes in enumerate(graph):
        files[f"assets/graph/layer_{index:03d}.py"] = _sluice_module(prev, nodes)
        prev = nodes
    sluice_root = write_project(workdir / "sluice_project", files, max_workers=2)
    dagster_dir = workdir / "dagster_project"
    dagster_dir.mkdir()
    (dagster_dir / "bench_dagster_graph.py").write_text(_dagster_module(graph))
    return sluice_root, dagster_dir, sum(len(nodes) for nodes in graph)


# ---- measured sides (run in `bench.worker`) ----------------------------------------------


def sluice_side(
    root: str, force: bool, expected_assets: int, width: int, kind: str = "threads"
) -> dict[str, Any]:
    import orchestrator.loader  # noqa: F401  (imports are not timed)
    import orchestrator.materialize  # noqa: F401
    from bench.projects import main_count, materialize, write_executor

    write_executor(Path(root), kind)
    result = materialize(root, ["*"], force=force)
    if result["steps"] != expected_assets:
        raise BenchFailure(f"{result['steps']} steps published, expected {expected_assets}")
    if any(rows != ROWS_PER_ASSET for rows in result["rows"].values()):
        raise BenchFailure(f"unexpected row counts: {result['rows']}")
    sink_input = main_count(Path(root), "bench.sink", "max(upstream_rows)")
    if sink_input != width * ROWS_PER_ASSET:
        raise BenchFailure(f"sink saw {sink_input} upstream rows, expected {width * 10}")
    return {"seconds": result["total_s"], "cpu_s": result["cpu_s"], "load_s": result["load_s"]}


def dagster_side(module_dir: str, expected_assets: int) -> dict[str, Any]:
    import importlib
    import sys

    import dagster as dg
    import pyarrow  # noqa: F401

    sys.path.insert(0, module_dir)
    with clock() as measured:
        module = importlib.import_module("bench_dagster_graph")
        result = dg.materialize(module.ASSETS)
    materialized = len(result.get_asset_materialization_events())
    if not result.success or materialized != expected_assets:
        raise BenchFailure(f"dagster: success={result.success}, {materialized} materialized")
    return {"seconds": measured.wall, "cpu_s": measured.cpu}


# ---- driver ------------------------------------------------------------------------------


def run(settings: Settings, report: Report, console: Any) -> None:
    layers = settings.option("layers", 3 if settings.quick else 10)
    width = settings.option("width", 10)
    repeat = settings.repeats(3 if settings.quick else 5)
    kinds = str(settings.option("kinds", "threads,processes")).split(",")
    sluice_root, dagster_dir, count = build(settings.workdir, layers, width)
    report.params.update(
        {
            "assets": count,
            "layers": layers,
            "width": width,
            "repeat": repeat,
            "max_workers": 2,
            "kinds": kinds,
        }
    )
    console.print(f"{count} assets; first (untimed) Sluice run creates the tables ...")
    run_worker(
        "overhead:sluice_side",
        {"root": str(sluice_root), "force": False, "expected_assets": count, "width": width},
    )
    run_worker(  # untimed too: bytecode cache of the generated module, as Sluice's setup run
        "overhead:dagster_side",
        {"module_dir": str(dagster_dir), "expected_assets": count},
        cwd=dagster_dir,
    )

    def sluice(kind: str) -> Callable[[int], None]:
        def side(_: int) -> None:
            r = run_worker(
                "overhead:sluice_side",
                {
                    "root": str(sluice_root),
                    "force": True,
                    "expected_assets": count,
                    "width": width,
                    "kind": kind,
                },
            )
            label = f"sluice {kind}"
            report.add_run(label, r["seconds"], cpu_s=r["cpu_s"], rss_bytes=r["maxrss_bytes"])
            report.add(label, "per_asset_s", r["seconds"] / count)
            console.print(f"  {label}  {r['seconds']:.2f} s")

        return side

    def dagster(_: int) -> None:
        r = run_worker(
            "overhead:dagster_side",
            {"module_dir": str(dagster_dir), "expected_assets": count},
            cwd=dagster_dir,
        )
        report.add_run("dagster", r["seconds"], cpu_s=r["cpu_s"], rss_bytes=r["maxrss_bytes"])
        report.add("dagster", "per_asset_s", r["seconds"] / count)
        console.print(f"  dagster {r['seconds']:.2f} s")

    sides = {f"sluice {kind}": sluice(kind) for kind in kinds}
    alternate(repeat, {**sides, "dagster": dagster})
    for label in sides:
        report.ratio(f"time {label}/dagster", (label, "time_s"), ("dagster", "time_s"), target=1.0)
        report.ratio(
            f"time {label}/dagster (stretch)", (label, "time_s"), ("dagster", "time_s"), target=0.5
        )
        report.ratio(f"cpu {label}/dagster", (label, "cpu_s"), ("dagster", "cpu_s"))
    report.note(
        "Sluice: every asset is a WAP cycle with one not_null audit, 2 workers (threads of one "
        "process, or forked processes; cpu includes the workers); Dagster: in-process executor "
        "(one at a time), fs IO manager, no checks."
    )
