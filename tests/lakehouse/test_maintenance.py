"""Table maintenance: expiry keeps what readers, branches and per-partition provenance need;
manifest merging; orphan-file removal deletes only old, unreferenced files."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.table import TableProperties
from pyiceberg.table.update import RemovePropertiesUpdate

from lakehouse import audits, branches, maintenance
from lakehouse.audits import Check
from lakehouse.branches import (
    Lakehouse,
    branch_snapshot_id,
    is_ancestor,
    main_snapshot_id,
    remove_branch,
    rollback,
    write_branch,
)
from lakehouse.maintenance import (
    ensure_table_properties,
    expire_snapshots,
    plan_expiry,
    remove_orphan_files,
)
from lakehouse.provenance import Provenance, main_lineage, published_history
from lakehouse.tables import TABLE_PROPERTIES
from lakehouse.wap import WapResult, write_audit_publish
from lakehouse.windows import RowWindow
from lakehouse.writes import write_data_files

Rows = Callable[..., list[dict[str, Any]]]
WapRunner = Callable[..., WapResult]
T = "m.t"
P = "m.p"


def day_window(first: str, last: str | None = None) -> RowWindow:
    """The UTC days `first`..`last` as one row window labelled like the orchestrator does."""
    start = datetime.fromisoformat(first).replace(tzinfo=UTC)
    end = datetime.fromisoformat(last or first).replace(tzinfo=UTC) + timedelta(days=1)
    label = first if last is None else f"{first}..{last}"
    return RowWindow("d", start, end, label, "day")


def days_rows(window: RowWindow, tag: str) -> pa.Table:
    days, ids = [], []
    day = window.start.date()
    while day < window.end.date():
        days += [day, day]
        ids += [day.day * 10, day.day * 10 + 1]
        day += timedelta(days=1)
    return pa.table({"d": pa.array(days, pa.date32()), "id": ids, "tag": [tag] * len(ids)})


@pytest.fixture
def pwap(lh: Lakehouse) -> Callable[..., WapResult]:
    """`pwap(window, run_id, code_version="v1", checks=())`: publish one window of table P."""

    def run(
        window: RowWindow, run_id: str, code_version: str = "v1", checks: Sequence[Check] = ()
    ) -> WapResult:
        data = days_rows(window, run_id)
        return write_audit_publish(
            lh,
            P,
            pa.RecordBatchReader.from_batches(data.schema, data.to_batches()),
            branch=f"sluice-{run_id}",
            provenance=Provenance(
                run_id=run_id,
                code_version=code_version,
                partition=window.label,
                inputs={"up": hash(run_id) % 1000},
            ),
            checks=checks,
            window=window,
        )

    return run


def newest_per_day(lh: Lakehouse, identifier: str) -> dict[str, tuple[int, Provenance]]:
    """What the orchestrator derives per partition: the newest write covering each day (the
    walk ends at a whole-table write, which covers every day before it)."""
    found: dict[str, tuple[int, Provenance]] = {}
    for snapshot_id, prov in published_history(lh.table(identifier)):
        if prov.window is None:
            found.setdefault("*", (snapshot_id, prov))
            break
        _, start, end = prov.window
        day = datetime.fromisoformat(start).date()
        while day < datetime.fromisoformat(end).date():
            found.setdefault(day.isoformat(), (snapshot_id, prov))
            day += timedelta(days=1)
    return found


def expire_all(lh: Lakehouse, identifier: str, keep_last: int, max_batch: int = 7) -> int:
    """Expire until nothing is left; each call's batch stays within `max_batch`."""
    total = 0
    while True:
        result = expire_snapshots(lh, identifier, keep_last=keep_last, max_batch=max_batch)
        assert len(result.expired) <= max_batch
        total += len(result.expired)
        if not result.expired:
            return total


def test_expiry_keeps_keep_last_and_main_reads_the_same(
    lh: Lakehouse, wap: WapRunner, rows: Rows
) -> None:
    for i in range(12):
        wap(T, {"id": [i, i + 100], "v": [f"run{i}"] * 2}, run_id=f"r{i}")
    table = lh.table(T)
    head, before_rows = main_snapshot_id(table), rows(T)
    lineage = [s.snapshot_id for s in main_lineage(table)]
    # The empty first, then one overwrite snapshot per whole-table replace.
    assert len(table.metadata.snapshots) == 13

    expired = expire_all(lh, T, keep_last=5, max_batch=7)

    table = lh.table(T)
    assert expired == 8
    assert main_snapshot_id(table) == head
    assert [s.snapshot_id for s in table.metadata.snapshots] == sorted(
        lineage[:5],
        key=lambda s: table.snapshot_by_id(s).sequence_number,  # type: ignore[union-attr]
    )
    assert [s.snapshot_id for s in main_lineage(table)] == lineage[:5]
    assert rows(T) == before_rows
    # The newest history is still a chain: rollback reaches the previous publish.
    assert [p.run_id for _, p in published_history(table)] == ["r11", "r10", "r9", "r8", "r7"]
    assert is_ancestor(table, published_history(table)[1][0], of=head)


def test_nothing_to_do_commits_nothing(lh: Lakehouse, wap: WapRunner) -> None:
    for i in range(3):
        wap(T, {"id": [i]}, run_id=f"r{i}")
    location = lh.table(T).metadata_location
    result = expire_snapshots(lh, T, keep_last=20, max_batch=10)
    assert result.expired == () and lh.table(T).metadata_location == location
    # Not enough due for a batch yet: no commit either.
    result = expire_snapshots(lh, T, keep_last=2, max_batch=10, min_batch=5)
    assert result.expired == () and lh.table(T).metadata_location == location


def test_dry_run_reports_and_changes_nothing(lh: Lakehouse, wap: WapRunner) -> None:
    for i in range(6):
        wap(T, {"id": [i]}, run_id=f"r{i}")
    location = lh.table(T).metadata_location
    result = expire_snapshots(lh, T, keep_last=3, max_batch=2, batches=None, dry_run=True)
    assert result.snapshots_before == 7  # the empty first, then one per publish
    assert result.dry_run and len(result.expired) == 4 and result.snapshots_after == 3
    assert lh.table(T).metadata_location == location


def test_branch_and_tag_snapshots_survive_and_branches_still_descend_from_their_base(
    lh: Lakehouse, wap: WapRunner, rows: Rows
) -> None:
    wap(T, {"id": [1, 2]}, run_id="r0")
    # A tag on an old publish, and an audit branch that failed its checks (kept).
    tagged = main_snapshot_id(lh.table(T))
    assert tagged is not None
    lh.table(T).manage_snapshots().create_tag(tagged, "keep-me").commit()
    wap(T, {"id": [3, 4]}, run_id="r0b")
    bad = wap(T, {"id": [7, 7]}, run_id="bad-audit", checks=[audits.unique("id")])
    assert bad.status == "audit_failed"
    failed_rows = rows(T, bad.snapshot_id)
    for i in range(10):
        wap(T, {"id": [i]}, run_id=f"r{i + 1}")

    expire_all(lh, T, keep_last=3)

    table = lh.table(T)
    assert table.snapshot_by_id(tagged) is not None
    assert branch_snapshot_id(table, "sluice-bad-audit") == bad.snapshot_id
    assert is_ancestor(table, bad.base_snapshot_id, of=bad.snapshot_id)
    assert rows(T, bad.snapshot_id) == failed_rows
    # Neither the failed branch nor the tag is mistaken for a publish.
    history = [p.run_id for _, p in published_history(table)]
    assert "bad-audit" not in history
    assert history[0] == "r10"


def test_abandoned_branch_snapshots_are_expired_and_never_published(
    lh: Lakehouse, wap: WapRunner
) -> None:
    wap(T, {"id": [1]}, run_id="r0")
    base = main_snapshot_id(lh.table(T))
    assert base is not None
    # What a re-apply leaves behind: a written branch, then removed.
    data = pa.table({"id": [5]})
    written = write_data_files(lh.table(T), data_reader(data), data.schema, prefix="x")
    head, _ = write_branch(
        lh,
        T,
        branch="sluice-abandoned",
        base_snapshot_id=base,
        paths=written.paths,
        properties=Provenance(run_id="abandoned", code_version="v1").to_properties(),
    )
    remove_branch(lh, T, "sluice-abandoned")
    plan = plan_expiry(lh.table(T), keep_last=100)
    assert head in plan.expirable and plan.expirable[0] != base
    assert "abandoned" not in [p.run_id for _, p in published_history(lh.table(T))]
    expire_snapshots(lh, T, keep_last=100, max_batch=10)
    assert lh.table(T).snapshot_by_id(head) is None


def data_reader(data: pa.Table) -> pa.RecordBatchReader:
    return pa.RecordBatchReader.from_batches(data.schema, data.to_batches())


def test_every_partition_keeps_its_newest_write_after_expiry(
    lh: Lakehouse, pwap: Callable[..., WapResult], rows: Rows
) -> None:
    # Days written at different times, by different code, one of them as part of a range;
    # then one day republished many times.
    pwap(day_window("2024-01-01", "2024-01-04"), "range", code_version="v0")
    pwap(day_window("2024-01-02"), "d2", code_version="v1")
    pwap(day_window("2024-01-05"), "d5", code_version="v2")
    pwap(day_window("2024-01-03"), "d3", code_version="v3")
    for i in range(15):
        pwap(day_window("2024-01-06"), f"d6-{i}", code_version="v4")
    before = newest_per_day(lh, P)
    before_rows = rows(P)
    heads_rows = {day: rows(P, sid) for day, (sid, _) in before.items()}
    assert {day: p.run_id for day, (_, p) in before.items()} == {
        "2024-01-01": "range",
        "2024-01-02": "d2",
        "2024-01-03": "d3",
        "2024-01-04": "range",
        "2024-01-05": "d5",
        "2024-01-06": "d6-14",
    }
    snapshots_before = len(lh.table(P).metadata.snapshots)

    expire_all(lh, P, keep_last=2, max_batch=5)

    table = lh.table(P)
    assert len(table.metadata.snapshots) < snapshots_before / 4
    assert newest_per_day(lh, P) == before
    assert rows(P) == before_rows
    for day, (sid, _) in newest_per_day(lh, P).items():
        assert rows(P, sid) == heads_rows[day]  # each retained head reads as it did
    # The covered writes (d6-0 .. d6-13) are gone from the history; the needed ones are not.
    assert [p.run_id for _, p in published_history(table)] == ["d6-14", "d3", "d5", "d2", "range"]


def test_a_whole_table_write_ends_what_must_be_kept(
    lh: Lakehouse, pwap: Callable[..., WapResult], wap: WapRunner
) -> None:
    pwap(day_window("2024-01-01"), "old1")
    pwap(day_window("2024-01-02"), "old2")
    wap(P, days_rows(day_window("2024-01-01"), "full"), run_id="full")
    for i in range(6):
        pwap(day_window("2024-01-02"), f"d2-{i}")
    before = newest_per_day(lh, P)
    expire_all(lh, P, keep_last=2)
    assert newest_per_day(lh, P) == before
    assert [p.run_id for _, p in published_history(lh.table(P))] == ["d2-5", "full"]


def test_expiry_after_a_rollback_never_resurrects_the_rolled_back_snapshots(
    lh: Lakehouse, wap: WapRunner, rows: Rows
) -> None:
    for i in range(6):
        wap(T, {"id": [i]}, run_id=f"r{i}")
    history = published_history(lh.table(T))
    target, rolled_over = history[3][0], history[0][0]  # r2; r5 is stepped over
    rollback(lh, T, to_snapshot_id=target, expected_main=history[0][0])
    # A tag keeps a stepped-over snapshot alive: it must still not count as published.
    lh.table(T).manage_snapshots().create_tag(rolled_over, "audit-trail").commit()
    for i in range(6, 9):
        wap(T, {"id": [i]}, run_id=f"r{i}")
    before_history = [p.run_id for _, p in published_history(lh.table(T))]
    assert before_history == ["r8", "r7", "r6", "r2", "r1", "r0"]

    expire_all(lh, T, keep_last=1, max_batch=1)

    table = lh.table(T)
    assert table.snapshot_by_id(rolled_over) is not None
    # r8 replaced the whole table, so nothing older is needed for provenance; r2 is kept as
    # the rollback target that tells the tagged r5 apart from main's history.
    assert [p.run_id for _, p in published_history(table)] == ["r8", "r2"]
    assert rows(T) == [{"id": 8}]


def test_a_commit_race_is_retried_on_fresh_metadata(
    lh: Lakehouse, wap: WapRunner, rows: Rows, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(8):
        wap(T, {"id": [i]}, run_id=f"r{i}")
    real_plan = maintenance.plan_expiry
    calls = {"n": 0}

    def plan_then_someone_publishes(table: Any, keep_last: int) -> maintenance.ExpiryPlan:
        calls["n"] += 1
        plan = real_plan(table, keep_last)
        if calls["n"] == 2:  # the plan made under the lock: another writer publishes now
            wap(T, {"id": [99]}, run_id="racer")
        return plan

    monkeypatch.setattr(maintenance, "plan_expiry", plan_then_someone_publishes)
    result = expire_snapshots(lh, T, keep_last=3, max_batch=50)
    # Planned once to decide, once under the lock (its commit lost the race), once again.
    assert calls["n"] == 3 and result.expired
    table = lh.table(T)
    assert [p.run_id for _, p in published_history(table)][0] == "racer"
    assert rows(T) == [{"id": 99}]
    assert len(main_lineage(table)) == 3


def test_a_commit_that_keeps_failing_raises_and_changes_nothing(
    lh: Lakehouse, wap: WapRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(5):
        wap(T, {"id": [i]}, run_id=f"r{i}")
    location = lh.table(T).metadata_location

    def refuse(*_: Any) -> None:
        raise CommitFailedException("simulated")

    monkeypatch.setattr(branches.time, "sleep", lambda _: None)
    monkeypatch.setattr(lh.catalog, "commit_table", refuse)
    with pytest.raises(CommitFailedException):
        expire_snapshots(lh, T, keep_last=2, max_batch=5)
    monkeypatch.undo()
    assert lh.table(T).metadata_location == location


def test_keep_last_must_be_positive(lh: Lakehouse, wap: WapRunner) -> None:
    wap(T, {"id": [1]})
    with pytest.raises(maintenance.MaintenanceError, match="keep_last"):
        plan_expiry(lh.table(T), keep_last=0)


# ---- manifests ---------------------------------------------------------------------------


def test_new_tables_merge_manifests_and_old_ones_get_the_properties(
    lh: Lakehouse, pwap: Callable[..., WapResult], wap: WapRunner
) -> None:
    for day in range(1, 21):
        pwap(day_window(f"2024-01-{day:02d}"), f"d{day}")
    table = lh.table(P)
    for key, value in TABLE_PROPERTIES.items():
        assert table.properties[key] == value
    current = table.current_snapshot()
    assert current is not None
    assert len(current.manifests(table.io)) < 20  # without merging: one per write
    assert len(list(table.scan().plan_files())) == 20

    wap(T, {"id": [1]})
    lh.catalog.commit_table(
        lh.table(T),
        (),
        (RemovePropertiesUpdate(removals=list(TABLE_PROPERTIES)),),
    )
    assert TableProperties.MANIFEST_MERGE_ENABLED not in lh.table(T).properties
    assert ensure_table_properties(lh, T) is True
    assert ensure_table_properties(lh, T) is False
    assert lh.table(T).properties[TableProperties.MANIFEST_MERGE_ENABLED] == "true"


def test_the_metadata_log_stays_short(lh: Lakehouse, wap: WapRunner) -> None:
    """Every commit copies the metadata log: Sluice tables keep 10 entries, not 100."""
    for i in range(15):
        wap(T, {"id": [i]}, run_id=f"r{i}")
    table = lh.table(T)
    assert table.properties[TableProperties.METADATA_PREVIOUS_VERSIONS_MAX] == "10"
    assert len(table.metadata.metadata_log) == 10


def test_a_user_setting_of_manifest_merge_is_respected(lh: Lakehouse, wap: WapRunner) -> None:
    wap(T, {"id": [1]})
    with lh.table(T).transaction() as tx:
        tx.set_properties({TableProperties.MANIFEST_MERGE_ENABLED: "false"})
    ensure_table_properties(lh, T)
    assert lh.table(T).properties[TableProperties.MANIFEST_MERGE_ENABLED] == "false"


# ---- orphan files ------------------------------------------------------------------------


def _table_dir(lh: Lakehouse, identifier: str) -> Path:
    return Path(lh.table(identifier).location().removeprefix("file://"))


def _age(path: Path, days: float) -> None:
    stamp = time.time() - days * 86400
    os.utime(path, (stamp, stamp))


def _age_everything(root: Path, days: float) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            _age(path, days)


def test_orphan_removal_deletes_old_unreferenced_files_only(
    lh: Lakehouse, wap: WapRunner, rows: Rows
) -> None:
    for i in range(4):
        wap(T, {"id": [i, i + 10]}, run_id=f"r{i}")
    root = _table_dir(lh, T)
    old_orphan = root / "data" / "stray-old.parquet"
    young_orphan = root / "data" / "stray-young.parquet"
    for path in (old_orphan, young_orphan):
        path.write_bytes(b"not referenced by anything")
    _age_everything(root, days=3)  # referenced files are old too: age alone never deletes
    _age(young_orphan, days=0.01)
    before = rows(T)
    files_before = {p for p in root.rglob("*") if p.is_file()}

    dry = remove_orphan_files(lh, T, timedelta(days=1), dry_run=True)
    assert {f.path for f in dry.removed} >= {str(old_orphan)}
    assert {p for p in root.rglob("*") if p.is_file()} == files_before

    result = remove_orphan_files(lh, T, timedelta(days=1))
    assert not old_orphan.exists()
    assert young_orphan.exists()
    assert result.too_young == 1
    assert str(young_orphan) not in {f.path for f in result.removed}
    assert rows(T) == before
    # Everything the metadata references is still there, for every snapshot it keeps.
    table = lh.table(T)
    for snapshot_id in [s.snapshot_id for s in table.metadata.snapshots]:
        rows(T, snapshot_id)
    assert Path(table.metadata_location.removeprefix("file://")).exists()


def test_files_of_expired_snapshots_become_orphans(
    lh: Lakehouse, wap: WapRunner, rows: Rows
) -> None:
    wap(T, {"id": [0]}, run_id="r0")
    with lh.table(T).transaction() as tx:  # keep 2 metadata files in the log, not 100
        tx.set_properties({TableProperties.METADATA_PREVIOUS_VERSIONS_MAX: "2"})
    for i in range(1, 8):
        wap(T, {"id": [i]}, run_id=f"r{i}")
    root = _table_dir(lh, T)
    parquet_before = set((root / "data").glob("*.parquet"))
    expire_all(lh, T, keep_last=2)
    _age_everything(root, days=3)
    result = remove_orphan_files(lh, T, timedelta(days=1))
    parquet_after = set((root / "data").glob("*.parquet"))
    assert len(parquet_after) < len(parquet_before)
    assert any(f.path.endswith(".parquet") for f in result.removed)
    assert any(f.path.endswith(".metadata.json") for f in result.removed)
    assert rows(T) == [{"id": 7}]
    table = lh.table(T)
    for snapshot in table.metadata.snapshots:
        rows(T, snapshot.snapshot_id)  # every kept snapshot still reads


def test_orphan_removal_refuses_a_negative_age(lh: Lakehouse, wap: WapRunner) -> None:
    wap(T, {"id": [1]})
    with pytest.raises(maintenance.MaintenanceError):
        remove_orphan_files(lh, T, timedelta(hours=-1))


def test_maintenance_never_touches_other_tables(lh: Lakehouse, wap: WapRunner, rows: Rows) -> None:
    wap(T, {"id": [1]})
    wap("m.t_other", {"id": [2]})
    _age_everything(_table_dir(lh, "m.t_other").parent, days=3)
    other_files = {p for p in _table_dir(lh, "m.t_other").rglob("*") if p.is_file()}
    remove_orphan_files(lh, T, timedelta(days=1))
    assert {p for p in _table_dir(lh, "m.t_other").rglob("*") if p.is_file()} == other_files
    assert rows("m.t_other") == [{"id": 2}]
