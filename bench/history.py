"""history: the wap_floor cycle on a table with 1,000 prior publishes vs on a fresh table.

The asset is wap_floor's (1,000 rows, `not_null` + `unique`). Each timed repetition runs in a
fresh process that first warms up on another asset of the same project (untimed), then times
`cycles` (default 3) consecutive `load_project` + `materialize_selection(["bench.t"],
force=True)` and reports their mean: automatic maintenance commits an expiry batch only every
few publishes, and the mean charges that commit to the cycles it serves.

- fresh: a new project per repetition; `bench.t` has its first publish before the timed ones.
- history: `bench.t` has `prior` (default 1,000) real Sluice publishes, made once per
  benchmark run with the default `[maintenance]` settings, exactly as a user's table gets them:
  each publish is followed by the automatic maintenance (expiry of old snapshots in small
  batches, manifest merging). The built project folder (catalog, warehouse, state) is copied
  aside and restored before every repetition, so each one starts from the same 1,000 publishes.

Without maintenance the table would carry about 2 x `prior` snapshots and a cycle on it was
about 40x slower than on a fresh table; with it, the table holds about `keep_last` snapshots.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from bench.harness import BenchFailure, Settings, alternate, run_worker
from bench.projects import open_catalog, write_project
from bench.report import Report
from bench.wap_floor import ASSET, IDENTIFIER, ROWS

TITLE = "the wap_floor cycle after many prior publishes vs on a fresh table"

WARM = """
import pyarrow as pa

from orchestrator import asset, checks


@asset(layer="bench", checks=[checks.not_null("id")])
def warm(ctx):
    return pa.table({"id": list(range(10))})
"""


def project(root: Path) -> Path:
    return write_project(root, {"assets/bench/t.py": ASSET, "assets/bench/warm.py": WARM})


# ---- setup -------------------------------------------------------------------------------


def build_real(root: str, publishes: int) -> dict[str, Any]:
    """Give `bench.t` exactly `publishes` real publishes (and `bench.warm` one), each followed
    by the automatic maintenance a user's publish gets; returns the build's figures."""
    import time
    from inspect import getsource

    from bench.projects import materialize
    from orchestrator import runner
    from orchestrator.loader import load_project
    from orchestrator.maintain import after_publish
    from orchestrator.materialize import materialize_selection, open_lakehouse

    started = time.perf_counter()
    materialize(root, ["*"])  # raises unless both assets published
    published = 1
    project = load_project(Path(root))
    lh = open_lakehouse(project)
    # Once the runner maintains after each publish, the call below finds nothing left to do.
    in_runner = "after_publish" in getsource(runner)
    for _ in range(publishes - 1):
        summary = materialize_selection(project, [IDENTIFIER], command="materialize", force=True)
        if getattr(summary.results[IDENTIFIER], "status", None) != "published":
            raise BenchFailure(f"history build failed: {summary.results[IDENTIFIER]}")
        published += 1
        after_publish(lh, IDENTIFIER, project.config.maintenance)
    return {
        "build_s": time.perf_counter() - started,
        "publishes": published,
        "maintenance_in_runner": in_runner,
    }


def table_shape(root: Path) -> dict[str, int]:
    metadata = open_catalog(root).load_table(IDENTIFIER).metadata
    return {
        "snapshots": len(metadata.snapshots),
        "snapshot_log": len(metadata.snapshot_log),
        "metadata_log": len(metadata.metadata_log),
    }


# ---- measured side -----------------------------------------------------------------------


def cycle_side(root: str, first: bool, cycles: int = 3) -> dict[str, Any]:
    import statistics

    import orchestrator.loader  # noqa: F401  (imports are not timed)
    import orchestrator.materialize  # noqa: F401
    from bench.projects import main_count, materialize

    if first:
        materialize(root, ["*"])  # creates both tables: bench.t gets its first publish
    else:
        materialize(root, ["bench.warm"], force=True)  # warms the process, leaves t alone
    results = [materialize(root, [IDENTIFIER], force=True) for _ in range(cycles)]
    if main_count(Path(root), IDENTIFIER) != ROWS:
        raise BenchFailure("main does not hold exactly the new rows")
    return {
        "seconds": statistics.mean(r["total_s"] for r in results),
        "cpu_s": statistics.mean(r["cpu_s"] for r in results),
        "all": [r["total_s"] for r in results],
    }


# ---- driver ------------------------------------------------------------------------------


def run(settings: Settings, report: Report, console: Any) -> None:
    prior = settings.option("prior", 100 if settings.quick else 1000)
    cycles = settings.option("cycles", 3)
    repeat = settings.repeats(3 if settings.quick else 5)
    history_root = project(settings.workdir / "history")
    pristine = settings.workdir / "history-built"
    console.print(f"building {prior} real publishes with automatic maintenance ...")
    built = run_worker(
        "history:build_real", {"root": str(history_root), "publishes": prior}, timeout=None
    )
    if built["publishes"] != prior:
        raise BenchFailure(f"history has {built['publishes']} publishes, expected {prior}")
    shape = table_shape(history_root)
    shutil.copytree(history_root, pristine)
    report.params.update(
        {
            "prior_publishes": prior,
            "cycles_per_repetition": cycles,
            "repeat": repeat,
            "table": shape,
            "build_s": round(built["build_s"], 1),
            "maintenance_in_runner": built["maintenance_in_runner"],
        }
    )
    console.print(f"history table after {built['build_s']:.0f} s of building: {shape}")

    def fresh(i: int) -> None:
        root = project(settings.workdir / f"fresh_{i}")
        r = run_worker("history:cycle_side", {"root": str(root), "first": True, "cycles": cycles})
        report.add_run("fresh", r["seconds"], cpu_s=r["cpu_s"], rss_bytes=r["maxrss_bytes"])
        console.print(f"  fresh   {r['seconds'] * 1000:.0f} ms per cycle")

    def history(_: int) -> None:
        shutil.rmtree(history_root)  # exactly `prior` publishes again (paths are absolute)
        shutil.copytree(pristine, history_root)
        r = run_worker(
            "history:cycle_side", {"root": str(history_root), "first": False, "cycles": cycles}
        )
        report.add_run(
            f"{prior} publishes", r["seconds"], cpu_s=r["cpu_s"], rss_bytes=r["maxrss_bytes"]
        )
        console.print(f"  history {r['seconds'] * 1000:.0f} ms per cycle")

    alternate(repeat, {"fresh": fresh, "history": history})
    report.ratio(
        f"time {prior} publishes/fresh",
        (f"{prior} publishes", "time_s"),
        ("fresh", "time_s"),
        target=1.5,
    )
    report.ratio(
        f"cpu {prior} publishes/fresh", (f"{prior} publishes", "cpu_s"), ("fresh", "cpu_s")
    )
    report.note(
        "history built with real publishes and the default maintenance settings; "
        + (
            "the runner maintains after each publish"
            if built["maintenance_in_runner"]
            else "the runner does not call maintenance yet: the build called it after each "
            "publish, the timed cycles do not include it"
        )
    )
