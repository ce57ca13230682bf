"""Project maintenance: `[maintenance]` settings, `after_publish`, `maintain_project`; after
maintenance every asset and partition reads, plans and reports exactly as before."""

from __future__ import annotations

import logging
import os
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import ProjectDir
from partition_shop import FILES, ORDERS, table_rows

from lakehouse.catalog import open_catalog
from lakehouse.errors import ConfigError
from orchestrator import maintain
from orchestrator.config import MaintenanceConfig, load_config
from orchestrator.loader import load_project
from orchestrator.maintain import after_publish, maintain_project
from orchestrator.materialize import open_lakehouse
from orchestrator.published import read_published

D1, D2, D3 = "2024-01-01", "2024-01-02", "2024-01-03"
TABLES = ("bronze.raw_orders", "silver.orders", "silver.rolling", "gold.total")


def _config(root: Path, text: str) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "sluice.toml").write_text(textwrap.dedent(text).lstrip("\n"))


def test_maintenance_defaults(tmp_path: Path) -> None:
    settings = load_config(tmp_path).maintenance
    assert settings == MaintenanceConfig()
    assert settings.enabled is True
    assert settings.keep_last == 20
    assert settings.max_expire_per_publish == 10
    assert settings.orphan_min_age_hours == 24.0


def test_maintenance_settings_are_read(tmp_path: Path) -> None:
    _config(
        tmp_path,
        """
        [maintenance]
        enabled = false
        keep_last = 50
        max_expire_per_publish = 4
        orphan_min_age_hours = 72
        """,
    )
    settings = load_config(tmp_path).maintenance
    assert settings == MaintenanceConfig(
        enabled=False, keep_last=50, max_expire_per_publish=4, orphan_min_age_hours=72
    )


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("keep_last = 0", "maintenance.keep_last"),
        ("max_expire_per_publish = 0", "maintenance.max_expire_per_publish"),
        ("orphan_min_age_hours = 0.5", "maintenance.orphan_min_age_hours"),
        ("keep_last = 'many'", "maintenance.keep_last"),
        ("expire = true", "maintenance.expire"),
    ],
)
def test_a_bad_maintenance_value_names_the_key_and_file(
    tmp_path: Path, text: str, where: str
) -> None:
    _config(tmp_path, f"[maintenance]\n{text}\n")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert f"[{where}]" in str(info.value)
    assert "sluice.toml" in str(info.value)


# ---- a partitioned project, maintained -----------------------------------------------------


def _snapshot_count(root: Path, identifier: str) -> int:
    return len(open_catalog(load_config(root).catalog).load_table(identifier).metadata.snapshots)


def _published(root: Path) -> dict[str, Any]:
    project = load_project(root)
    keys = [str(k) for k in project.graph.order]
    return read_published(open_lakehouse(project), project.graph, keys)


def _age_files(root: Path, days: float) -> None:
    stamp = time.time() - days * 86400
    for path in (root / "catalog" / "warehouse").rglob("*"):
        if path.is_file():
            os.utime(path, (stamp, stamp))


def _observations(shop: ProjectDir) -> dict[str, Any]:
    """Everything a user or the scheduler can learn about freshness and contents."""
    plan = shop.sluice("plan", "--from", D1, "--to", D3)
    status = shop.sluice("status")
    assert plan.code == 0 and status.code == 0, plan.out + status.out
    return {
        "published": _published(shop.root),
        "plan": plan.out,
        "status": status.out,
        "rows": {t: table_rows(shop.root, t) for t in TABLES},
    }


@pytest.fixture
def history(project: ProjectDir) -> ProjectDir:
    """The partition shop with a long history (automatic maintenance off, so that all of it
    is there for `maintain_project`)."""
    return _build_history(project, automatic=False)


def _build_history(project: ProjectDir, *, automatic: bool) -> ProjectDir:
    """Every day built, one day republished many times, then a code change that leaves some
    partitions stale."""
    toml = f"[maintenance]\nkeep_last = 2\nenabled = {str(automatic).lower()}\n"
    shop = project.write({**FILES, "sluice.toml": toml})
    assert shop.sluice("backfill", "*", "--from", D1, "--to", D3).code == 0
    for _ in range(8):
        result = shop.sluice("materialize", "bronze.raw_orders", "--partition", D2, "--force")
        assert result.code == 0, result.out
    result = shop.sluice("materialize", "--from", D1, "--to", D3)
    assert result.code == 0, result.out
    # silver.orders' code changes; only D3 is rebuilt, so D1 and D2 (and downstream) are stale.
    shop.write({"assets/silver/orders.sql": ORDERS + "    WHERE amount IS NOT NULL\n"})
    result = shop.sluice("materialize", "silver.orders", "--partition", D3)
    assert result.code == 0, result.out
    return shop


def test_after_maintenance_every_partition_answers_as_before(history: ProjectDir) -> None:
    before = _observations(history)
    assert "silver.orders@2024-01-01 is stale" in before["plan"]
    assert "silver.orders@2024-01-03 is stale" not in before["plan"]
    counts = {t: _snapshot_count(history.root, t) for t in TABLES}
    _age_files(history.root, days=3)

    results = maintain_project(load_project(history.root), None, orphans=True)

    assert {r.asset for r in results} == set(TABLES)
    assert all(r.error is None for r in results), results
    raw = next(r for r in results if r.asset == "bronze.raw_orders")
    assert raw.snapshots_expired > 10 and raw.orphan_files
    assert _snapshot_count(history.root, "bronze.raw_orders") < counts["bronze.raw_orders"] / 3
    after = _observations(history)
    assert after == before
    # And the lakehouse still builds what is stale, from the retained partition versions.
    result = history.sluice("materialize", "--from", D1, "--to", D3)
    assert result.code == 0, result.out
    assert "nothing to do" in history.sluice("plan", "--from", D1, "--to", D3).out


def test_automatic_maintenance_keeps_history_short_and_every_partition_version(
    project: ProjectDir,
) -> None:
    shop = _build_history(project, automatic=True)
    # 1 empty + 3 days + 8 republishes + the code change, two snapshots per write, without it.
    assert _snapshot_count(shop.root, "bronze.raw_orders") <= 8
    plan = shop.sluice("plan", "--from", D1, "--to", D3).out
    assert "silver.orders@2024-01-01 is stale" in plan
    assert "silver.orders@2024-01-02 is stale" in plan
    assert "silver.orders@2024-01-03 is stale" not in plan
    assert "bronze.raw_orders@" not in plan  # every bronze day still knows its version
    result = shop.sluice("materialize", "--from", D1, "--to", D3)
    assert result.code == 0, result.out
    assert "nothing to do" in shop.sluice("plan", "--from", D1, "--to", D3).out


def test_dry_run_changes_nothing(history: ProjectDir) -> None:
    catalog = open_catalog(load_config(history.root).catalog)
    locations = {t: catalog.load_table(t).metadata_location for t in TABLES}
    _age_files(history.root, days=3)
    location = catalog.load_table("bronze.raw_orders").location().removeprefix("file://")
    stray = Path(location) / "data" / "stray.parquet"
    stray.write_bytes(b"")
    os.utime(stray, (time.time() - 86400 * 3,) * 2)
    files = {p for p in (history.root / "catalog" / "warehouse").rglob("*") if p.is_file()}

    results = maintain_project(
        load_project(history.root), ["bronze.raw_orders"], orphans=True, dry_run=True
    )

    assert [r.asset for r in results] == ["bronze.raw_orders"]
    assert results[0].dry_run and results[0].snapshots_expired > 10
    would_remove = {f.path for f in results[0].orphan_files}
    # The stray file, and the files only the snapshots it would expire reference.
    assert str(stray) in would_remove
    assert any(p.endswith(".parquet") for p in would_remove - {str(stray)})
    assert {t: catalog.load_table(t).metadata_location for t in TABLES} == locations
    assert {p for p in (history.root / "catalog" / "warehouse").rglob("*") if p.is_file()} == files


def test_young_orphans_are_kept_by_the_configured_age(history: ProjectDir) -> None:
    results = maintain_project(load_project(history.root), ["bronze.raw_orders"], orphans=True)
    assert results[0].orphan_files == ()  # everything was written just now
    assert results[0].orphans_too_young > 0


def test_an_asset_never_materialized_is_skipped(project: ProjectDir) -> None:
    shop = project.write(FILES)
    results = maintain_project(load_project(shop.root), ["gold.total"], orphans=False)
    assert results[0].skipped and results[0].error is None


# ---- after_publish -----------------------------------------------------------------------


def _with_history(project: ProjectDir, publishes: int) -> ProjectDir:
    shop = project.write(FILES)
    assert shop.sluice("materialize", "bronze.raw_orders", "--partition", D1).code == 0
    for _ in range(publishes - 1):
        result = shop.sluice("materialize", "bronze.raw_orders", "--partition", D1, "--force")
        assert result.code == 0, result.out
    return shop


def test_after_publish_expires_one_small_batch(project: ProjectDir) -> None:
    shop = _with_history(project, publishes=8)
    lh = open_lakehouse(load_project(shop.root))
    before = _snapshot_count(shop.root, "bronze.raw_orders")
    rows = table_rows(shop.root, "bronze.raw_orders")
    settings = MaintenanceConfig(keep_last=2, max_expire_per_publish=3)

    result = after_publish(lh, "bronze.raw_orders", settings)

    assert result.error is None and result.snapshots_expired == 3
    assert _snapshot_count(shop.root, "bronze.raw_orders") == before - 3
    assert result.expirable_left > 0
    assert table_rows(shop.root, "bronze.raw_orders") == rows


def test_after_publish_waits_until_half_a_batch_is_due(project: ProjectDir) -> None:
    shop = _with_history(project, publishes=3)
    lh = open_lakehouse(load_project(shop.root))
    location = lh.table("bronze.raw_orders").metadata_location
    result = after_publish(lh, "bronze.raw_orders", MaintenanceConfig(keep_last=2))
    assert result.error is None and result.snapshots_expired == 0
    assert lh.table("bronze.raw_orders").metadata_location == location


def test_after_publish_does_nothing_when_disabled(project: ProjectDir) -> None:
    shop = _with_history(project, publishes=4)
    lh = open_lakehouse(load_project(shop.root))
    location = lh.table("bronze.raw_orders").metadata_location
    result = after_publish(lh, "bronze.raw_orders", MaintenanceConfig(enabled=False, keep_last=1))
    assert result.skipped and result.snapshots_expired == 0
    assert lh.table("bronze.raw_orders").metadata_location == location


def test_after_publish_never_raises(
    project: ProjectDir, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    shop = _with_history(project, publishes=2)
    lh = open_lakehouse(load_project(shop.root))

    def broken(*_: Any, **__: Any) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(maintain, "expire_snapshots", broken)
    with caplog.at_level(logging.WARNING, logger="sluice.maintenance"):
        result = after_publish(lh, "bronze.raw_orders", MaintenanceConfig())
    assert result.error is not None and "disk on fire" in result.error
    assert "bronze.raw_orders" in caplog.text and "disk on fire" in caplog.text
