"""End to end over a temporary project, through the CLI as a user runs it."""

from __future__ import annotations

import json
import re

import pytest
from conftest import ProjectDir, snapshots

from lakehouse.branches import list_branches
from lakehouse.catalog import open_catalog
from lakehouse.provenance import snapshot_provenance
from orchestrator.config import load_config
from orchestrator.loader import load_project

RAW = """
    import pyarrow as pa

    from orchestrator import asset, checks


    @asset(layer="bronze", checks=[checks.not_null("id")])
    def raw(ctx):
        return pa.table(
            {
                "id": [1, 2, 3, 4, 5],
                "amount": [10.0, 20.0, 30.0, 40.0, 50.0],
                "status": ["ok", "ok", "bad", "ok", "ok"],
            }
        )
"""
CLEAN = """
    -- checks: unique(id); accepted_values(status, ['ok'])
    SELECT id, amount, status FROM bronze.raw WHERE status = 'ok'
"""
TOTAL = """
    from orchestrator import asset, checks


    @asset(layer="gold", checks=[checks.row_count(min=1, max=1)])
    def total(ctx, clean):
        return ctx.sql("SELECT sum(amount) AS total, count(*) AS n FROM clean")
"""
OTHER = """
    -- checks: not_null(id)
    SELECT id FROM bronze.raw
"""


@pytest.fixture
def shop(project: ProjectDir) -> ProjectDir:
    return project.write(
        {
            "assets/bronze/raw.py": RAW,
            "assets/silver/clean.sql": CLEAN,
            "assets/gold/total.py": TOTAL,
            "assets/silver/other.sql": OTHER,
        }
    )


def _catalog(shop: ProjectDir):  # type: ignore[no-untyped-def]
    return open_catalog(load_config(shop.root).catalog)


def test_full_build_publishes_every_table_with_provenance(shop: ProjectDir) -> None:
    result = shop.sluice("materialize")
    assert result.code == 0, result.out
    catalog = _catalog(shop)
    heads = snapshots(shop.root)
    assert set(heads) == {"bronze.raw", "silver.clean", "silver.other", "gold.total"}
    graph = load_project(shop.root).graph
    for key, asset in graph.assets.items():
        table = catalog.load_table(str(key))
        prov = snapshot_provenance(table, heads[str(key)])
        assert prov is not None, key
        assert prov.code_version == asset.code_version
        assert prov.inputs == {str(u): heads[str(u)] for u in graph.upstream(key)}
    gold = catalog.load_table("gold.total").scan().to_arrow().to_pylist()
    assert gold == [{"total": 120.0, "n": 4}]
    assert list_branches(catalog) == []


def test_second_run_changes_no_snapshot(shop: ProjectDir) -> None:
    assert shop.sluice("materialize").code == 0
    before = snapshots(shop.root)
    again = shop.sluice("materialize")
    assert again.code == 0
    assert "nothing to do" in again.out
    assert snapshots(shop.root) == before


def test_reformatting_sql_changes_nothing_but_a_logic_change_rebuilds_it_and_downstream(
    shop: ProjectDir,
) -> None:
    assert shop.sluice("materialize").code == 0
    before = snapshots(shop.root)
    shop.write(
        {
            "assets/silver/clean.sql": """
                -- checks: unique(id); accepted_values(status, ['ok'])
                -- a comment that explains nothing
                select id,
                       amount,
                       status
                  from bronze.raw   -- trailing comment
                 where status = 'ok'
            """
        }
    )
    plan = shop.sluice("plan")
    assert "nothing to do" in plan.out, plan.out
    assert shop.sluice("materialize").code == 0
    assert snapshots(shop.root) == before

    shop.write({"assets/silver/clean.sql": CLEAN.replace("'ok'\n", "'ok' AND amount > 15\n")})
    plan = shop.sluice("plan")
    assert "silver.clean is stale because its code changed" in plan.out
    assert "gold.total is stale because silver.clean changed, because its code changed" in plan.out
    assert "bronze.raw" not in plan.out and "silver.other" not in plan.out
    assert shop.sluice("materialize").code == 0
    after = snapshots(shop.root)
    changed = {k for k in after if after[k] != before[k]}
    assert changed == {"silver.clean", "gold.total"}


def test_failing_audit_leaves_main_untouched_keeps_branch_and_blocks_downstream(
    shop: ProjectDir,
) -> None:
    assert shop.sluice("materialize").code == 0
    before = snapshots(shop.root)
    shop.write({"assets/silver/clean.sql": CLEAN.replace(" WHERE status = 'ok'", "")})

    result = shop.sluice("materialize")

    assert result.code == 1
    assert "audit failed silver.clean" in result.out
    assert "accepted_values(status, ['ok'])" in result.out
    assert re.search(r"blocked\s+gold\.total", result.out)
    assert snapshots(shop.root) == before
    branches = list_branches(_catalog(shop))
    assert [(b.identifier) for b in branches] == ["silver.clean"]
    branch = branches[0].branch
    bad = shop.sluice("query", "SELECT id FROM silver.clean WHERE status = 'bad'", "--ref", branch)
    assert bad.code == 0 and "silver.clean@" + branch in bad.out
    assert re.search(r"^\s*3\s*$", bad.out, re.M), bad.out
    on_main = shop.sluice("query", "SELECT count(*) AS n FROM silver.clean WHERE status = 'bad'")
    assert re.search(r"^\s*0\s*$", on_main.out, re.M), on_main.out

    run_id = re.search(r"run (\S+): FAILED", result.out).group(1)  # type: ignore[union-attr]
    detail = shop.sluice("run", run_id)
    assert "audit_failed" in detail.out and "blocked" in detail.out
    assert json.dumps({"id": 3, "amount": 30.0, "status": "bad"}) in detail.out
    status = shop.sluice("status")
    assert re.search(r"silver\.clean\s+failed", status.out), status.out

    shop.write({"assets/silver/clean.sql": CLEAN})
    fixed = shop.sluice("materialize")
    assert fixed.code == 0, fixed.out
    pruned = shop.sluice("branches", "--prune")
    assert "pruned 1 branch" in pruned.out
    assert list_branches(_catalog(shop)) == []


def test_a_failure_blocks_only_its_own_downstream(shop: ProjectDir) -> None:
    shop.write({"assets/silver/clean.sql": CLEAN.replace(" WHERE status = 'ok'", "")})
    result = shop.sluice("materialize")
    assert result.code == 1
    heads = snapshots(shop.root)
    assert heads["silver.other"] is not None and "published silver.other" in result.out
    assert "published bronze.raw" in result.out
    assert "gold.total" not in heads or heads["gold.total"] is None


def test_deleting_the_state_database_keeps_everything_fresh(shop: ProjectDir) -> None:
    assert shop.sluice("materialize").code == 0
    before = snapshots(shop.root)
    (shop.root / "catalog" / "sluice.db").unlink()
    plan = shop.sluice("plan")
    assert "nothing to do: 4 selected assets are fresh" in plan.out
    status = shop.sluice("status")
    assert status.out.count(" fresh ") == 4, status.out
    assert shop.sluice("materialize").code == 0
    assert snapshots(shop.root) == before


def test_force_rebuilds_fresh_assets(shop: ProjectDir) -> None:
    assert shop.sluice("materialize").code == 0
    before = snapshots(shop.root)
    assert shop.sluice("materialize", "+clean", "--force").code == 0
    after = snapshots(shop.root)
    assert {k for k in after if after[k] != before[k]} == {"bronze.raw", "silver.clean"}
    plan = shop.sluice("plan").out
    assert "gold.total is stale because silver.clean was republished since it was built" in plan
    assert "silver.other is stale because bronze.raw was republished since it was built" in plan


def test_upstream_outside_the_selection_that_was_never_published_blocks(shop: ProjectDir) -> None:
    result = shop.sluice("materialize", "clean")
    assert result.code == 1
    assert "upstream bronze.raw never published: select it too (+silver.clean)" in result.out


def test_rollback_returns_main_to_the_previous_publish(shop: ProjectDir) -> None:
    assert shop.sluice("materialize").code == 0
    first = snapshots(shop.root)
    shop.write({"assets/silver/clean.sql": CLEAN.replace("'ok'\n", "'ok' AND amount > 15\n")})
    assert shop.sluice("materialize").code == 0
    result = shop.sluice("rollback", "silver.clean", "--downstream")
    assert result.code == 0, result.out
    assert snapshots(shop.root) == first
