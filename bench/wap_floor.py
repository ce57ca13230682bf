"""wap_floor: one small materialization in process, Sluice vs a hand-written pyiceberg WAP cycle.

Both sides, each in a fresh process with a fresh catalog, first run one untimed cycle (which
creates the table, with its empty first snapshot, and warms the process), then time three
cycles that each replace the table's 1,000 rows; a repetition reports their median:

- Sluice: `load_project` + `materialize_selection(["*"], force=True)` of a one-asset project
  whose asset returns a 1,000-row Arrow table, audited by `not_null(id)` and `unique(id)`.
- Hand-written: `load_table`, create a branch, overwrite the branch with the rows, audit the
  branch's new files with the same two DuckDB queries (on a fresh cursor), check `main` is an
  ancestor, then publish and remove the branch in one `manage_snapshots()` commit.

Each side keeps what a process keeps between runs: Sluice its catalog and its DuckDB database,
the hand-written cycle a catalog and a DuckDB database opened once, untimed (opening them costs
about 5 and 20-30 ms, a large share of a cycle).
"""

from __future__ import annotations

import statistics
import uuid
from pathlib import Path
from typing import Any

from bench.harness import BenchFailure, Settings, alternate, clock, run_worker
from bench.projects import write_project
from bench.report import Report

TITLE = "one 1,000-row materialization, in process, vs a hand-written pyiceberg WAP cycle"
ROWS = 1000
IDENTIFIER = "bench.t"

ASSET = f"""
import pyarrow as pa

from orchestrator import asset, checks


@asset(layer="bench", checks=[checks.not_null("id"), checks.unique("id")])
def t(ctx):
    return pa.table(
        {{
            "id": list(range({ROWS})),
            "amount": [i * 0.5 for i in range({ROWS})],
            "status": ["ok"] * {ROWS},
        }}
    )
"""


def sluice_project(root: Path) -> Path:
    return write_project(root, {"assets/bench/t.py": ASSET}, max_workers=2)


# ---- measured sides ----------------------------------------------------------------------


def sluice_side(root: str, cycles: int = 3) -> dict[str, Any]:
    import orchestrator.loader  # noqa: F401  (imports are not timed)
    import orchestrator.materialize  # noqa: F401
    from bench.projects import main_count, materialize

    materialize(root, ["*"])  # untimed: creates the table and warms the process
    times, cpus, loads = [], [], []
    for _ in range(cycles):
        result = materialize(root, ["*"], force=True)
        times.append(result["total_s"])
        cpus.append(result["cpu_s"])
        loads.append(result["load_s"])
    if main_count(Path(root), IDENTIFIER) != ROWS:
        raise BenchFailure("sluice: main does not hold exactly the new rows")
    return {
        "seconds": statistics.median(times),
        "cpu_s": statistics.median(cpus),
        "load_s": statistics.median(loads),
        "all": times,
    }


def _data() -> Any:
    import pyarrow as pa

    return pa.table(
        {
            "id": list(range(ROWS)),
            "amount": [i * 0.5 for i in range(ROWS)],
            "status": ["ok"] * ROWS,
        }
    )


def _catalog(catalog_dir: Path) -> Any:
    from pyiceberg.catalog import load_catalog

    return load_catalog(
        "bench",
        type="sql",
        uri=f"sqlite:///{catalog_dir / 'catalog.db'}",
        warehouse=f"file://{catalog_dir / 'warehouse'}",
    )


def hand_cycle(catalog: Any, database: Any, data: Any) -> None:
    """One write-audit-publish cycle written directly against pyiceberg and DuckDB."""
    from pyiceberg.table.snapshots import ancestors_of

    table = catalog.load_table(IDENTIFIER)
    base = table.metadata.current_snapshot_id
    branch = f"wap-{uuid.uuid4().hex[:12]}"
    table.manage_snapshots().create_branch(base, branch).commit()
    table.overwrite(data, branch=branch)
    head = table.metadata.refs[branch].snapshot_id
    files = [
        t.file.file_path.removeprefix("file://") for t in table.scan(snapshot_id=head).plan_files()
    ]
    con = database.cursor()
    source = f"read_parquet({files!r})"
    nulls = con.sql(f"SELECT count(*) FROM {source} WHERE id IS NULL").fetchall()[0][0]
    dupes = con.sql(
        f"SELECT count(*) FROM (SELECT id FROM {source} GROUP BY id HAVING count(*) > 1)"
    ).fetchall()[0][0]
    con.close()
    if nulls or dupes:
        raise BenchFailure("hand-written audit failed")
    if not any(
        s.snapshot_id == base for s in ancestors_of(table.snapshot_by_id(head), table.metadata)
    ):
        raise BenchFailure("main is not an ancestor of the branch")
    table.manage_snapshots().set_current_snapshot(snapshot_id=head).remove_branch(branch).commit()


def hand_setup(catalog_dir: Path) -> None:
    """Create the table with an empty first snapshot (as Sluice does), untimed."""
    (catalog_dir / "warehouse").mkdir(parents=True, exist_ok=True)
    catalog = _catalog(catalog_dir)
    catalog.create_namespace_if_not_exists("bench")
    table = catalog.create_table(IDENTIFIER, schema=_data().schema)
    with table.transaction() as tx:
        tx.update_snapshot().fast_append().commit()


def hand_side(catalog_dir: str, cycles: int = 3) -> dict[str, Any]:
    import duckdb

    path = Path(catalog_dir)
    hand_setup(path)
    catalog = _catalog(path)
    database = duckdb.connect()
    database.execute("SET enable_progress_bar = false")
    hand_cycle(catalog, database, _data())  # untimed: warms the process
    times, cpus = [], []
    for _ in range(cycles):
        with clock() as measured:
            hand_cycle(catalog, database, _data())
        times.append(measured.wall)
        cpus.append(measured.cpu)
    if catalog.load_table(IDENTIFIER).scan().to_arrow().num_rows != ROWS:
        raise BenchFailure("hand-written: main does not hold exactly the new rows")
    return {"seconds": statistics.median(times), "cpu_s": statistics.median(cpus), "all": times}


# ---- driver ------------------------------------------------------------------------------


def run(settings: Settings, report: Report, console: Any) -> None:
    repeat = settings.repeats(5 if settings.quick else 9)
    report.params.update({"rows": ROWS, "repeat": repeat, "checks": 2})

    def sluice(i: int) -> None:
        root = sluice_project(settings.workdir / f"sluice_{i}")
        r = run_worker("wap_floor:sluice_side", {"root": str(root)})
        report.add_run("sluice", r["seconds"], cpu_s=r["cpu_s"], rss_bytes=r["maxrss_bytes"])
        report.add("sluice", "load_project_s", r["load_s"])
        console.print(f"  sluice       {r['seconds'] * 1000:.0f} ms")

    def hand(i: int) -> None:
        r = run_worker("wap_floor:hand_side", {"catalog_dir": str(settings.workdir / f"hand_{i}")})
        report.add_run("hand-written", r["seconds"], cpu_s=r["cpu_s"], rss_bytes=r["maxrss_bytes"])
        console.print(f"  hand-written {r['seconds'] * 1000:.0f} ms")

    alternate(repeat, {"sluice": sluice, "hand-written": hand})
    report.ratio(
        "time sluice/hand-written", ("sluice", "time_s"), ("hand-written", "time_s"), target=1.2
    )
    report.ratio("cpu sluice/hand-written", ("sluice", "cpu_s"), ("hand-written", "cpu_s"))
    report.note(
        "fresh table = created with its empty first snapshot plus one untimed publish; the "
        "timed cycle replaces its 1,000 rows (Sluice writes one overwrite snapshot; the "
        "hand-written cycle pyiceberg's `overwrite`: a delete and an append snapshot)."
    )
