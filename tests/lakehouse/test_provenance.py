"""Provenance is read from each snapshot's own summary, however many snapshots were read before."""

from __future__ import annotations

from typing import cast

from pyiceberg.table import Table
from pyiceberg.table.snapshots import Operation, Snapshot, Summary

from lakehouse.provenance import Provenance, snapshot_provenance

SHARED_MANIFEST_LIST = "file:///warehouse/t/metadata/snap-1-0-shared.avro"


class _Snapshots:
    """The one part of a table `snapshot_provenance` reads."""

    def __init__(self, *snapshots: Snapshot) -> None:
        self._by_id = {s.snapshot_id: s for s in snapshots}

    def snapshot_by_id(self, snapshot_id: int) -> Snapshot | None:
        return self._by_id.get(snapshot_id)


def _snapshot(snapshot_id: int, provenance: Provenance | None) -> Snapshot:
    properties = provenance.to_properties() if provenance is not None else {}
    return Snapshot(  # type: ignore[call-arg]
        snapshot_id=snapshot_id,
        sequence_number=1,
        timestamp_ms=1,
        manifest_list=SHARED_MANIFEST_LIST,
        summary=Summary(Operation.APPEND, **properties),
    )


def test_snapshots_sharing_a_manifest_list_keep_their_own_provenance() -> None:
    # Tables registered from copied metadata files share manifest lists; a copy may say
    # otherwise in its summary (another code version, other inputs).
    first = Provenance(run_id="r1", code_version="v1", inputs={"bronze.a": 1})
    second = Provenance(run_id="r2", code_version="v2", inputs={"bronze.a": 2})
    table = cast(Table, _Snapshots(_snapshot(1, first), _snapshot(2, second), _snapshot(3, None)))
    for _ in range(2):  # read, then read again
        assert snapshot_provenance(table, 1) == first
        assert snapshot_provenance(table, 2) == second
        assert snapshot_provenance(table, 3) is None
