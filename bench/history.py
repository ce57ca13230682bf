"""history: the wap_floor cycle on a table with 1,000 prior publishes vs on a fresh table.

The asset is wap_floor's (1,000 rows, `not_null` + `unique`). Each timed cycle runs in a fresh
process that first warms up on another asset of the same project (untimed), then times
`load_project` + `materialize_selection(["bench.t"], force=True)`.

- fresh: a new project per repetition; `bench.t` has its first publish only.
- history: `bench.t` has `prior` publishes (default 1,000). Every Sluice publish after the first
  is two snapshots (delete + append) and moves `main` once, so the table carries
  2 * prior - 1 snapshots besides its empty first one, `prior` snapshot-log entries and the
  metadata log pyiceberg keeps (at most 100 entries).

Building 1,000 real publishes takes longer than the benchmark may (each cycle gets slower as
history grows), so by default the history is *synthesized*: two real Sluice publishes are
made, then their delete/append snapshot pair is repeated `prior - 2` times in the table
metadata (new ids, parents, sequence numbers, run ids; the same manifest lists, so every
snapshot reads back real data and `main` holds the real 1,000 rows), written as a new metadata
file and registered in the catalog. Every repetition re-registers that same metadata file, so
each timed cycle sees exactly `prior` publishes. `-o history_build=real` builds the history
with real Sluice cycles instead (use a small `-o prior=N` for that, to validate the synthesis).
"""

from __future__ import annotations

import random
import uuid
from pathlib import Path
from typing import Any

from bench.harness import BenchFailure, Report, Settings, alternate, run_worker
from bench.projects import open_catalog, write_project
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
    """Give `bench.t` exactly `publishes` real publishes (and `bench.warm` one)."""
    from bench.projects import materialize

    materialize(root, ["*"])
    for _ in range(publishes - 1):
        materialize(root, [IDENTIFIER], force=True)
    return {}


def synthesize(root: Path, prior: int) -> str:
    """Extend `bench.t` (2 real publishes) to `prior` publishes; returns the metadata file."""
    from pyiceberg.serializers import ToOutputFile
    from pyiceberg.table.metadata import MetadataLogEntry
    from pyiceberg.table.refs import MAIN_BRANCH, SnapshotRef, SnapshotRefType
    from pyiceberg.table.snapshots import SnapshotLogEntry, Summary

    catalog = open_catalog(root)
    table = catalog.load_table(IDENTIFIER)
    metadata = table.metadata
    delete_t, append_t = metadata.snapshots[-2], metadata.snapshots[-1]
    if (
        delete_t.summary is None
        or append_t.summary is None
        or delete_t.summary.operation.value != "delete"
        or append_t.summary.operation.value != "append"
        or metadata.current_snapshot_id != append_t.snapshot_id
    ):
        raise BenchFailure("expected the table to end with a real delete + append publish")
    rng = random.Random(42)
    used = {s.snapshot_id for s in metadata.snapshots}
    snapshots = list(metadata.snapshots)
    log = list(metadata.snapshot_log)
    parent, sequence, stamp = append_t.snapshot_id, metadata.last_sequence_number, 0
    stamp = append_t.timestamp_ms
    for k in range(prior - 2):
        run_id = f"synthetic-{k:05d}"
        for template in (delete_t, append_t):
            snapshot_id = rng.getrandbits(62)
            while snapshot_id in used:
                snapshot_id = rng.getrandbits(62)
            used.add(snapshot_id)
            sequence += 1
            stamp += 1
            assert template.summary is not None
            properties = dict(template.summary.additional_properties)
            properties["sluice.run-id"] = run_id
            snapshots.append(
                template.model_copy(
                    update={
                        "snapshot_id": snapshot_id,
                        "parent_snapshot_id": parent,
                        "sequence_number": sequence,
                        "timestamp_ms": stamp,
                        "summary": Summary(template.summary.operation, **properties),
                    }
                )
            )
            parent = snapshot_id
        log.append(SnapshotLogEntry(snapshot_id=parent, timestamp_ms=stamp))
    previous = list(metadata.metadata_log)
    metadata_log = [
        MetadataLogEntry(
            metadata_file=previous[i % len(previous)].metadata_file, timestamp_ms=stamp - 100 + i
        )
        for i in range(min(100, max(len(previous), prior)))
    ]
    synthetic = metadata.model_copy(
        update={
            "snapshots": snapshots,
            "snapshot_log": log,
            "metadata_log": metadata_log,
            "current_snapshot_id": parent,
            "refs": {
                MAIN_BRANCH: SnapshotRef(
                    snapshot_id=parent, snapshot_ref_type=SnapshotRefType.BRANCH
                )
            },
            "last_sequence_number": sequence,
            "last_updated_ms": stamp,
        }
    )
    path = f"{table.location()}/metadata/99999-{uuid.uuid4()}.metadata.json"
    ToOutputFile.table_metadata(synthetic, table.io.new_output(path))
    register(root, path)
    return path


def register(root: Path, metadata_location: str) -> None:
    """Point the catalog's `bench.t` at `metadata_location` (drop keeps every file)."""
    catalog = open_catalog(root)
    catalog.drop_table(IDENTIFIER)
    catalog.register_table(IDENTIFIER, metadata_location)


def table_shape(root: Path) -> dict[str, int]:
    metadata = open_catalog(root).load_table(IDENTIFIER).metadata
    publishes = (
        sum(1 for s in metadata.snapshots if s.summary and s.summary.operation.value == "append")
        - 1
    )  # the empty first snapshot is an append too
    return {
        "snapshots": len(metadata.snapshots),
        "publishes": publishes,
        "snapshot_log": len(metadata.snapshot_log),
        "metadata_log": len(metadata.metadata_log),
    }


# ---- measured side -----------------------------------------------------------------------


def cycle_side(root: str, first: bool) -> dict[str, Any]:
    import orchestrator.loader  # noqa: F401  (imports are not timed)
    import orchestrator.materialize  # noqa: F401
    from bench.projects import main_count, materialize

    if first:
        materialize(root, ["*"])  # creates both tables: bench.t gets its first publish
    else:
        materialize(root, ["bench.warm"], force=True)  # warms the process, leaves t alone
    result = materialize(root, [IDENTIFIER], force=True)
    if main_count(Path(root), IDENTIFIER) != ROWS:
        raise BenchFailure("main does not hold exactly the new rows")
    return {"seconds": result["total_s"], "cpu_s": result["cpu_s"]}


# ---- driver ------------------------------------------------------------------------------


def run(settings: Settings, report: Report, console: Any) -> None:
    prior = settings.option("prior", 100 if settings.quick else 1000)
    build = settings.option("history_build", "synthetic")
    repeat = settings.repeats(3 if settings.quick else 5)
    history_root = project(settings.workdir / "history")
    if build == "real":
        console.print(f"building {prior} real publishes (slow) ...")
        run_worker(
            "history:build_real", {"root": str(history_root), "publishes": prior}, timeout=None
        )
        location = open_catalog(history_root).load_table(IDENTIFIER).metadata_location
    elif build == "synthetic":
        run_worker("history:build_real", {"root": str(history_root), "publishes": 2})
        location = synthesize(history_root, prior)
    else:
        raise BenchFailure(f"unknown history_build {build!r}: real or synthetic")
    shape = table_shape(history_root)
    if shape["publishes"] != prior:
        raise BenchFailure(f"history has {shape['publishes']} publishes, expected {prior}")
    report.params.update(
        {"prior_publishes": prior, "history_build": build, "repeat": repeat, "table": shape}
    )
    console.print(f"history table: {shape}")

    def fresh(i: int) -> None:
        root = project(settings.workdir / f"fresh_{i}")
        r = run_worker("history:cycle_side", {"root": str(root), "first": True})
        report.add_run("fresh", r["seconds"], cpu_s=r["cpu_s"], rss_bytes=r["maxrss_bytes"])
        console.print(f"  fresh   {r['seconds'] * 1000:.0f} ms")

    def history(_: int) -> None:
        register(history_root, location)  # exactly `prior` publishes again
        r = run_worker("history:cycle_side", {"root": str(history_root), "first": False})
        report.add_run(
            f"{prior} publishes", r["seconds"], cpu_s=r["cpu_s"], rss_bytes=r["maxrss_bytes"]
        )
        console.print(f"  history {r['seconds'] * 1000:.0f} ms")

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
    report.note(f"history built as: {build} (see the module docstring)")
