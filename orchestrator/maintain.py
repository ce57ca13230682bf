"""Table maintenance for a project: automatically after each publish, or `sluice maintain`.

Both expire old snapshots (never what `main` or a branch holds, never the newest write of a
partition: see `lakehouse.maintenance`) and give tables the properties they lack
(`lakehouse.tables.TABLE_PROPERTIES`);
`sluice maintain --orphans` also deletes unreferenced files older than the configured age.
Maintenance never changes what a reader sees or what staleness says.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from pyiceberg.table import Table

from lakehouse.branches import Lakehouse
from lakehouse.catalog import open_catalog
from lakehouse.locks import TableLocks
from lakehouse.maintenance import (
    ExpiryResult,
    OrphanFile,
    ensure_table_properties,
    expire_snapshots,
    remove_orphan_files,
)
from lakehouse.tables import load_table
from orchestrator.config import MaintenanceConfig
from orchestrator.loader import Project
from orchestrator.selection import select

log = logging.getLogger("sluice.maintenance")
CLI_BATCH = 50
"""Snapshots per expiry commit for `sluice maintain`, which runs until nothing is left: larger
than the automatic batch (fewer commits), small enough to keep each commit's lock short."""


@dataclass(frozen=True)
class MaintenanceResult:
    """What maintenance did to one table (with `dry_run`: what it would do)."""

    asset: str
    snapshots_before: int = 0
    snapshots_expired: int = 0
    snapshots_after: int = 0
    expirable_left: int = 0
    """Snapshots that could still be expired (automatic maintenance works in batches)."""
    properties_set: bool = False
    """True if this pass gave the table properties it lacked (`TABLE_PROPERTIES`)."""
    orphan_files: tuple[OrphanFile, ...] = field(default_factory=tuple)
    orphans_too_young: int = 0
    dry_run: bool = False
    skipped: str | None = None
    """Why nothing was done (e.g. the table does not exist yet)."""
    error: str | None = None

    @property
    def orphan_bytes(self) -> int:
        return sum(f.size for f in self.orphan_files)

    @classmethod
    def of(
        cls,
        expiry: ExpiryResult,
        *,
        properties_set: bool,
        orphan_files: tuple[OrphanFile, ...] = (),
        orphans_too_young: int = 0,
        dry_run: bool = False,
    ) -> MaintenanceResult:
        """The result of a pass whose expiry did `expiry`."""
        return cls(
            expiry.identifier,
            snapshots_before=expiry.snapshots_before,
            snapshots_expired=len(expiry.expired),
            snapshots_after=expiry.snapshots_after,
            expirable_left=expiry.expirable_left,
            properties_set=properties_set,
            orphan_files=orphan_files,
            orphans_too_young=orphans_too_young,
            dry_run=dry_run,
        )


def after_publish(
    lh: Lakehouse, identifier: str, settings: MaintenanceConfig, table: Table | None = None
) -> MaintenanceResult:
    """Maintain `identifier` right after a publish to it; never raises (a failure is logged as
    a warning and returned in `error`: the publish stands and the run goes on). `table`, when
    given, is the table as the publish left it (spares a load: it only decides whether anything
    is due; commits reload).

    Cheap when there is nothing to do: one metadata load and no commit. Otherwise one expiry
    commit of at most `max_expire_per_publish` snapshots, made only once half that many are
    due, and, for a table created before Sluice set them, one commit of the table properties.
    """
    if not settings.enabled:
        return MaintenanceResult(identifier, skipped="maintenance is disabled")
    try:
        table = table if table is not None else lh.table(identifier)
        expiry = expire_snapshots(
            lh,
            identifier,
            keep_last=settings.keep_last,
            max_batch=settings.max_expire_per_publish,
            batches=1,
            min_batch=max(1, settings.max_expire_per_publish // 2),
            table=table,
        )
        properties_set = ensure_table_properties(
            lh, identifier, table if not expiry.expired else None
        )
    except Exception as exc:  # maintenance must never fail the publish it follows
        log.warning("maintenance of %s after its publish failed: %s", identifier, exc)
        return MaintenanceResult(identifier, error=f"{type(exc).__name__}: {exc}")
    return MaintenanceResult.of(expiry, properties_set=properties_set)


def maintain_table(
    lh: Lakehouse,
    identifier: str,
    settings: MaintenanceConfig,
    *,
    orphans: bool,
    dry_run: bool = False,
) -> MaintenanceResult:
    """Expire everything expirable (in batches of `CLI_BATCH`), set the table
    properties, and with `orphans` delete unreferenced files older than
    `settings.orphan_min_age_hours`. Raises `SluiceError` subclasses on failure."""
    if load_table(lh.catalog, identifier) is None:
        return MaintenanceResult(identifier, dry_run=dry_run, skipped="not materialized yet")
    expiry = expire_snapshots(
        lh,
        identifier,
        keep_last=settings.keep_last,
        max_batch=CLI_BATCH,
        batches=None,
        dry_run=dry_run,
    )
    properties_set = False
    if not dry_run:
        properties_set = ensure_table_properties(lh, identifier)
    found: tuple[OrphanFile, ...] = ()
    young = 0
    if orphans:
        result = remove_orphan_files(
            lh,
            identifier,
            timedelta(hours=settings.orphan_min_age_hours),
            dry_run=dry_run,
            assume_expired=expiry.expired if dry_run else (),
        )
        found, young = result.removed, result.too_young
    return MaintenanceResult.of(
        expiry,
        properties_set=properties_set,
        orphan_files=found,
        orphans_too_young=young,
        dry_run=dry_run,
    )


def maintain_project(
    project: Project,
    selection: Sequence[str] | None,
    *,
    orphans: bool,
    dry_run: bool = False,
    lh: Lakehouse | None = None,
) -> list[MaintenanceResult]:
    """`sluice maintain [SELECT...] [--orphans] [--dry-run]`: maintain every selected asset's
    table (all assets without a selection), in run order, with the project's `[maintenance]`
    settings (`enabled` only governs automatic maintenance). A table that fails is reported in
    its result's `error` and the others are still maintained."""
    lakehouse = lh or Lakehouse(
        open_catalog(project.config.catalog), TableLocks(project.config.lock_dir)
    )
    settings = project.config.maintenance
    results: list[MaintenanceResult] = []
    for key in select(project.graph, list(selection or [])):
        identifier = str(key)
        try:
            results.append(
                maintain_table(lakehouse, identifier, settings, orphans=orphans, dry_run=dry_run)
            )
        except Exception as exc:
            log.warning("maintenance of %s failed: %s", identifier, exc)
            results.append(
                MaintenanceResult(identifier, dry_run=dry_run, error=f"{type(exc).__name__}: {exc}")
            )
    return results
