"""One step as plain data: it runs in another process, retries, and never raises for user errors."""

from __future__ import annotations

import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor

from conftest import ProjectDir, snapshots

from lakehouse.catalog import open_catalog
from orchestrator.config import load_config
from orchestrator.runner import StepSpec, run_step

RAW = """
    import pathlib

    import pyarrow as pa

    from orchestrator import Retry, asset

    ATTEMPTS = pathlib.Path(__file__).parent / "attempts.txt"


    @asset(layer="bronze")
    def raw(ctx):
        return pa.table({"id": [1, 2, 3]})


    @asset(layer="bronze", retry=Retry(attempts=3, backoff_s=0.01, jitter=0.0))
    def flaky(ctx):
        seen = int(ATTEMPTS.read_text()) if ATTEMPTS.exists() else 0
        ATTEMPTS.write_text(str(seen + 1))
        if seen < 2:
            raise ConnectionError(f"source unavailable (attempt {seen + 1})")
        return pa.table({"id": [seen]})


    @asset(layer="bronze", retry=Retry(attempts=2, backoff_s=0.01, jitter=0.0))
    def broken(ctx):
        raise ConnectionError("always down")
"""


def _spec(project: ProjectDir, asset: str, run_id: str) -> StepSpec:
    return StepSpec(
        project_root=str(project.root),
        run_id=run_id,
        asset=asset,
        inputs={},
        branch=f"sluice-{run_id}-{asset.split('.')[1]}",
    )


def test_a_step_spec_runs_in_another_process(project: ProjectDir) -> None:
    project.write({"assets/bronze/raw.py": RAW})
    spec = _spec(project, "bronze.raw", "r-process")
    assert pickle.loads(pickle.dumps(spec)) == spec
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        outcome = pool.submit(run_step, spec).result(timeout=120)
    assert outcome.status == "published", outcome.error
    assert outcome.rows == 3
    assert snapshots(project.root)["bronze.raw"] == outcome.snapshot_id


def test_a_failing_step_is_retried_and_then_publishes(project: ProjectDir) -> None:
    project.write({"assets/bronze/raw.py": RAW})
    outcome = run_step(_spec(project, "bronze.flaky", "r-retry"))
    assert outcome.status == "published", outcome.error
    assert outcome.attempts == 3
    assert (project.root / "assets" / "bronze" / "attempts.txt").read_text() == "3"


def test_exhausted_retries_report_the_last_error_without_raising(project: ProjectDir) -> None:
    project.write({"assets/bronze/raw.py": RAW})
    outcome = run_step(_spec(project, "bronze.broken", "r-broken"))
    assert outcome.status == "failed"
    assert outcome.attempts == 2
    assert outcome.error is not None
    assert "asset bronze.broken raised ConnectionError" in outcome.error
    assert "always down" in outcome.error
    assert "bronze.broken" not in snapshots(project.root)


READERS = """
    import pyarrow as pa

    from orchestrator import asset


    @asset(layer="bronze")
    def up(ctx):
        return pa.table({"id": [1, 2, 3]})


    @asset(layer="silver")
    def by_relation(ctx, up):
        return up.filter("id > 1")


    @asset(layer="silver")
    def by_sql(ctx, up):
        full = ctx.sql("SELECT id FROM bronze.up WHERE id > 1")
        short = ctx.sql("SELECT count(*) FROM up").fetchall()[0][0]
        return full.project(f"id, {short} AS n")


    @asset(layer="silver")
    def by_connection(ctx, up):
        [(total,)] = ctx.con.execute("SELECT sum(id) FROM up").fetchall()
        return pa.table({"total": [total]})
"""


def test_an_asset_reads_its_upstream_as_a_relation_by_name_and_on_the_connection(
    project: ProjectDir,
) -> None:
    project.write({"assets/readers.py": READERS})
    result = project.sluice("materialize")
    assert result.code == 0, result.out
    catalog = open_catalog(load_config(project.root).catalog)

    def rows(identifier: str) -> list[dict[str, object]]:
        return sorted(catalog.load_table(identifier).scan().to_arrow().to_pylist(), key=str)

    assert rows("silver.by_relation") == [{"id": 2}, {"id": 3}]
    assert rows("silver.by_sql") == [{"id": 2, "n": 3}, {"id": 3, "n": 3}]
    assert rows("silver.by_connection") == [{"total": 6}]


FAILS_AT_RUNTIME = """
    -- A cast that fails on one row only: the query binds, and fails while its rows are written.
    SELECT range AS id, CAST(CASE WHEN range = 70000 THEN 'x' ELSE '1' END AS INTEGER) AS n
    FROM range(100000)
"""


def test_a_query_failing_as_its_rows_are_written_is_the_assets_error(
    project: ProjectDir,
) -> None:
    project.write({"assets/bronze/numbers.sql": FAILS_AT_RUNTIME})
    outcome = run_step(_spec(project, "bronze.numbers", "r-runtime"))
    assert outcome.status == "failed"
    assert outcome.error is not None
    assert "asset bronze.numbers" in outcome.error and "numbers.sql" in outcome.error
    assert "Could not convert string 'x'" in outcome.error
    assert "Traceback" not in outcome.error
    table = open_catalog(load_config(project.root).catalog).load_table("bronze.numbers")
    assert table.scan().to_arrow().num_rows == 0  # consumers see no row of the failed write
