"""One write-audit-publish cycle: the only way data reaches `main`.

1. branch from `main`'s current snapshot; 2. write the result to the branch (a full refresh
replaces every row); 3. audit the branch head with DuckDB; 4. publish exactly the audited
snapshot by compare-and-swap of `main`, removing the branch; 5. on a blocking audit failure or a
conflict, `main` is untouched and the branch is kept for inspection.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import pyarrow as pa

from lakehouse import duck
from lakehouse.audits import Check, CheckResult, run_checks
from lakehouse.branches import Lakehouse, main_snapshot_id, publish, write_branch
from lakehouse.errors import SluiceError
from lakehouse.provenance import Provenance
from lakehouse.reads import create_view
from lakehouse.tables import (
    ensure_table,
    load_table,
    split_identifier,
    storable_schema,
    write_schema,
)
from lakehouse.writes import write_data_files

AUDIT_VIEW = "this"


@dataclass(frozen=True)
class WapResult:
    """What one cycle did. `snapshot_id` is the audited snapshot (on main if published)."""

    status: Literal["published", "audit_failed"]
    identifier: str
    branch: str
    base_snapshot_id: int
    snapshot_id: int
    rows: int
    checks: tuple[CheckResult, ...]

    @property
    def failed_checks(self) -> tuple[CheckResult, ...]:
        return tuple(c for c in self.checks if c.blocking)


def audit_snapshot(
    lh: Lakehouse, identifier: str, snapshot_id: int, checks: Sequence[Check]
) -> tuple[CheckResult, ...]:
    """Run `checks` over one snapshot; referenced tables are read at their `main`."""
    if not checks:
        return ()
    table = lh.table(identifier)
    con = duck.connect()
    try:
        create_view(con, (AUDIT_VIEW,), table, snapshot_id)
        create_view(con, split_identifier(identifier), table, snapshot_id)
        for ref in sorted({r for c in checks for r in c.references} - {identifier}):
            other = load_table(lh.catalog, ref)
            other_main = main_snapshot_id(other) if other is not None else None
            if other is not None and other_main is not None:
                create_view(con, split_identifier(ref), other, other_main)
        return tuple(run_checks(con, AUDIT_VIEW, checks))
    finally:
        con.close()


def write_audit_publish(
    lh: Lakehouse,
    identifier: str,
    data: pa.RecordBatchReader,
    *,
    branch: str,
    provenance: Provenance,
    checks: Sequence[Check] = (),
) -> WapResult:
    """Materialize `data` as the new content of table `identifier` through WAP.

    Guarantees: `main` only ever moves to a snapshot whose error-severity checks all passed;
    rerunning with the same data yields the same rows; a concurrent publish to the same table
    raises `PublishConflictError` instead of silently dropping either write.
    """
    schema = storable_schema(data.schema)
    with lh.locks.hold(identifier):
        table = ensure_table(lh.catalog, identifier, schema)
    base = main_snapshot_id(table)
    if base is None:
        raise SluiceError(f"table {identifier} has no main branch", asset=identifier)
    written = write_data_files(table, data, write_schema(table, schema), prefix=branch)
    properties = provenance.model_copy(
        update={"checks": tuple(c.name for c in checks if c.severity == "error")}
    ).to_properties()
    head = write_branch(
        lh,
        identifier,
        branch=branch,
        base_snapshot_id=base,
        paths=written.paths,
        properties=properties,
    )
    results = audit_snapshot(lh, identifier, head, checks)
    status: Literal["published", "audit_failed"] = "published"
    if any(r.blocking for r in results):
        status = "audit_failed"
    else:
        publish(lh, identifier, branch=branch, base_snapshot_id=base, head=head)
    return WapResult(
        status=status,
        identifier=identifier,
        branch=branch,
        base_snapshot_id=base,
        snapshot_id=head,
        rows=written.rows,
        checks=results,
    )
