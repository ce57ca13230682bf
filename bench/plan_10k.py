"""plan_10k: discover + validate + plan a generated 10,000-asset project with nothing stale.

The project: `assets` Python assets (default 10,000) in modules of 100, named `a00000`...;
the first 20% are `bronze` roots, the next 40% `silver` assets reading 1-3 bronze assets, the
last 40% `gold` assets reading 1-3 bronze or silver assets (deterministic pseudo-random
choice).

- Sluice: in a fresh process (library imports untimed), `load_project` (import every asset
  module, hash code versions, build and validate the graph) + `make_plan(..., ["*"])` (read
  what `main` holds for every asset and decide staleness). Asserts that nothing is stale.
- Dagster: the same assets as Dagster `@asset`s: import the modules, `load_assets_from_modules`,
  `Definitions(...)`, `resolve_asset_graph()` and its topological order.

Each side runs once untimed first (bytecode caches of the generated modules, OS caches).

"Nothing stale" needs every asset published. Materializing 10,000 assets takes far longer than
a benchmark may, so one asset is materialized for real and the catalog of the others is
synthesized from it: per asset, a metadata file holding its empty first snapshot and one
published snapshot whose summary carries the provenance Sluice records (code version from the
loaded project, upstream snapshot ids, checks), registered in the SQL catalog. Sluice then
reads that state through its normal path; the zero-step assertion proves it read it all.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

from bench.harness import BenchFailure, Settings, alternate, clock, run_worker
from bench.projects import write_project
from bench.report import Report

TITLE = "discover + validate + plan a 10,000-asset project with nothing stale vs Dagster"
PER_MODULE = 100


def graph(count: int) -> list[tuple[str, str, list[str]]]:
    """(layer, name, upstream names) per asset, in definition order."""
    rng = random.Random(7)
    bronze_end, silver_end = count // 5, count // 5 * 3
    assets: list[tuple[str, str, list[str]]] = []
    for i in range(count):
        name = f"a{i:05d}"
        if i < bronze_end:
            assets.append(("bronze", name, []))
            continue
        layer, pool = ("silver", bronze_end) if i < silver_end else ("gold", silver_end)
        ups = sorted({f"a{rng.randrange(pool):05d}" for _ in range(1 + i % 3)})
        assets.append((layer, name, ups))
    return assets


def _module(assets: list[tuple[str, str, list[str]]], dagster: bool) -> str:
    if dagster:
        lines = ["import dagster as dg", "import pyarrow as pa", ""]
    else:
        lines = ["import pyarrow as pa", "", "from orchestrator import asset", ""]
    for layer, name, ups in assets:
        decorator = f'@dg.asset(group_name="{layer}")' if dagster else f'@asset(layer="{layer}")'
        params = ", ".join(ups) if dagster else ", ".join(["ctx", *ups])
        lines += ["", decorator, f"def {name}({params}):", '    return pa.table({"id": [1]})', ""]
    return "\n".join(lines)


def build(workdir: Path, count: int) -> tuple[Path, Path]:
    assets = graph(count)
    files = {}
    dagster_dir = workdir / "dagster_project" / "bench_dagster_plan"
    dagster_dir.mkdir(parents=True)
    (dagster_dir / "__init__.py").touch()
    for start in range(0, count, PER_MODULE):
        chunk = assets[start : start + PER_MODULE]
        files[f"assets/generated/m{start // PER_MODULE:04d}.py"] = _module(chunk, dagster=False)
        (dagster_dir / f"m{start // PER_MODULE:04d}.py").write_text(_module(chunk, dagster=True))
    root = write_project(workdir / "sluice_project", files)
    return root, dagster_dir.parent


# ---- setup: one real publish, the rest synthesized --------------------------------------


def materialize_one(root: str) -> dict[str, Any]:
    from bench.projects import materialize

    materialize(root, ["bronze.a00000"])
    return {}


def synthesize(root: Path) -> int:
    """Publish every asset but `bronze.a00000` by writing its metadata; returns the count."""
    from bench.projects import open_catalog
    from orchestrator.loader import load_project

    project = load_project(root)
    catalog = open_catalog(root)
    template_table = catalog.load_table("bronze.a00000")
    template = json.loads(
        Path(template_table.metadata_location.removeprefix("file://")).read_text()
    )
    initial, published = template["snapshots"][0], template["snapshots"][-1]
    warehouse = template["location"].rsplit("/", 2)[0]
    ids = {str(key): 10**15 + i for i, key in enumerate(sorted(project.graph.assets))}
    ids["bronze.a00000"] = published["snapshot-id"]
    rows = []
    for key, snapshot_id in ids.items():
        if key == "bronze.a00000":
            continue
        layer, name = key.split(".")
        asset = project.graph.assets[project.graph.resolve(key)]
        inputs = {str(u): ids[str(u)] for u in project.graph.upstream(asset.key)}
        summary = dict(published["summary"])
        summary.update(
            {
                "sluice.run-id": "synthetic",
                "sluice.code-version": asset.code_version,
                "sluice.partition": "",
                "sluice.inputs": json.dumps(inputs, sort_keys=True),
                "sluice.checks": "[]",
            }
        )
        first = dict(initial, **{"snapshot-id": snapshot_id + 5 * 10**14})
        snap = dict(
            published,
            **{
                "snapshot-id": snapshot_id,
                "summary": summary,
                "parent-snapshot-id": first["snapshot-id"],
            },
        )
        location = f"{warehouse}/{layer}/{name}"
        metadata = dict(
            template,
            **{
                "location": location,
                "table-uuid": str(uuid.uuid4()),
                "current-snapshot-id": snapshot_id,
                "snapshots": [first, snap],
                "snapshot-log": [
                    {"snapshot-id": first["snapshot-id"], "timestamp-ms": first["timestamp-ms"]},
                    {"snapshot-id": snapshot_id, "timestamp-ms": snap["timestamp-ms"]},
                ],
                "metadata-log": [],
                "refs": {"main": {"snapshot-id": snapshot_id, "type": "branch"}},
            },
        )
        folder = Path(location.removeprefix("file://")) / "metadata"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"00001-{uuid.uuid4()}.metadata.json"
        path.write_text(json.dumps(metadata))
        rows.append((catalog.name, layer, name, f"file://{path}", None, "TABLE"))
    for layer in sorted({key.split(".")[0] for key in ids}):
        catalog.create_namespace_if_not_exists(layer)
    db = sqlite3.connect(catalog.properties["uri"].removeprefix("sqlite:///"))
    with db:
        db.executemany(
            "INSERT INTO iceberg_tables (catalog_name, table_namespace, table_name, "
            "metadata_location, previous_metadata_location, iceberg_type) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )
    db.close()
    return len(ids)


# ---- measured sides ----------------------------------------------------------------------


def sluice_side(root: str, expected: int) -> dict[str, Any]:
    import pyarrow  # noqa: F401
    import pyiceberg.catalog.sql  # noqa: F401

    import lakehouse.branches  # noqa: F401  (imports are not timed)
    import lakehouse.catalog  # noqa: F401
    import orchestrator.loader  # noqa: F401
    import orchestrator.materialize  # noqa: F401
    import orchestrator.plan_cache  # noqa: F401
    from orchestrator.loader import load_project
    from orchestrator.materialize import make_plan, open_lakehouse

    with clock() as measured:
        start = time.perf_counter()
        project = load_project(Path(root))
        loaded = time.perf_counter()
        plan = make_plan(project, open_lakehouse(project), ["*"])
        done = time.perf_counter()
    if plan.steps or len(plan.fresh) != expected:
        raise BenchFailure(f"{len(plan.steps)} stale, {len(plan.fresh)} fresh; expected none")
    return {
        "seconds": measured.wall,
        "cpu_s": measured.cpu,
        "discover_s": loaded - start,
        "plan_s": done - loaded,
    }


def dagster_side(module_dir: str, expected: int) -> dict[str, Any]:
    import importlib
    import pkgutil
    import sys

    import dagster as dg
    import pyarrow  # noqa: F401

    sys.path.insert(0, module_dir)
    with clock() as measured:
        package = importlib.import_module("bench_dagster_plan")
        modules = [
            importlib.import_module(f"bench_dagster_plan.{m.name}")
            for m in pkgutil.iter_modules(package.__path__)
        ]
        defs = dg.Definitions(assets=dg.load_assets_from_modules(modules))
        asset_graph = defs.resolve_asset_graph()
        order = asset_graph.toposorted_asset_keys
    if len(order) != expected:
        raise BenchFailure(f"dagster graph has {len(order)} assets, expected {expected}")
    return {"seconds": measured.wall, "cpu_s": measured.cpu}


# ---- driver ------------------------------------------------------------------------------


def run(settings: Settings, report: Report, console: Any) -> None:
    count = settings.option("assets", 1000 if settings.quick else 10_000)
    repeat = settings.repeats(3)
    root, dagster_dir = build(settings.workdir, count)
    console.print(f"{count:,} assets; publishing one, synthesizing the catalog of the rest ...")
    run_worker("plan_10k:materialize_one", {"root": str(root)})
    published = synthesize(root)
    if published != count:
        raise BenchFailure(f"{published} assets published, expected {count}")
    report.params.update({"assets": count, "repeat": repeat, "modules": count // PER_MODULE})
    console.print("one untimed run per side (writes bytecode caches, warms the OS caches) ...")
    run_worker("plan_10k:sluice_side", {"root": str(root), "expected": count})
    run_worker("plan_10k:dagster_side", {"module_dir": str(dagster_dir), "expected": count})

    def sluice(_: int) -> None:
        r = run_worker("plan_10k:sluice_side", {"root": str(root), "expected": count})
        for metric in ("discover_s", "plan_s"):
            report.add("sluice", metric, r[metric])
        report.add_run("sluice", r["seconds"], cpu_s=r["cpu_s"], rss_bytes=r["maxrss_bytes"])
        console.print(f"  sluice  {r['seconds']:.2f} s")

    def dagster(_: int) -> None:
        r = run_worker("plan_10k:dagster_side", {"module_dir": str(dagster_dir), "expected": count})
        report.add_run("dagster", r["seconds"], cpu_s=r["cpu_s"], rss_bytes=r["maxrss_bytes"])
        console.print(f"  dagster {r['seconds']:.2f} s")

    alternate(repeat, {"sluice": sluice, "dagster": dagster})
    report.limit("sluice plan, absolute", ("sluice", "time_s"), 1.0)
    report.ratio("time sluice/dagster", ("sluice", "time_s"), ("dagster", "time_s"), target=0.1)
    report.note("the catalog of all but one asset is synthesized (see the module docstring)")
