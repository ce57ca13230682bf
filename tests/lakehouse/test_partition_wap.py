"""Write-audit-publish of one partition (a row window): the spec, exact replacement, scoped
audits, the partition_window check, and two writers at once."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
import pyarrow as pa
import pytest

from lakehouse import audits
from lakehouse import wap as wap_module
from lakehouse.audits import Check
from lakehouse.branches import Lakehouse, is_ancestor, list_branches, main_snapshot_id
from lakehouse.errors import PublishConflictError
from lakehouse.provenance import Provenance, published_history, snapshot_provenance
from lakehouse.reads import create_view, snapshot_files
from lakehouse.wap import WapResult, write_audit_publish
from lakehouse.windows import RowWindow

UTC_ZONE = ZoneInfo("UTC")
DAYS = ["2024-01-01", "2024-01-02", "2024-01-03"]


def window(key: str, column: str = "d", transform: str = "day") -> RowWindow:
    """The UTC partition `key` (`2024-01-02`, `2024-01-02T05` or `2024-01`)."""
    if transform == "hour":
        start = datetime.strptime(key, "%Y-%m-%dT%H").replace(tzinfo=UTC_ZONE)
        end = start + timedelta(hours=1)
    elif transform == "month":
        start = datetime.strptime(key, "%Y-%m").replace(tzinfo=UTC_ZONE)
        end = (start + timedelta(days=32)).replace(day=1)
    else:
        start = datetime.strptime(key, "%Y-%m-%d").replace(tzinfo=UTC_ZONE)
        end = start + timedelta(days=1)
    return RowWindow(column, start, end, key, transform)  # type: ignore[arg-type]


def day_rows(key: str, ids: Sequence[int], tag: str = "v1") -> pa.Table:
    day = date.fromisoformat(key)
    return pa.table({"d": [day] * len(ids), "id": list(ids), "tag": [tag] * len(ids)})


PartitionWap = Callable[..., WapResult]
Rows = Callable[..., list[dict[str, Any]]]


@pytest.fixture
def pwap(lh: Lakehouse) -> PartitionWap:
    """`pwap(identifier, data, key, run_id, checks=(), ...)`: one WAP cycle of one partition."""

    def run(
        identifier: str,
        data: pa.Table,
        key: str | RowWindow,
        run_id: str,
        *,
        checks: Sequence[Check] = (),
    ) -> WapResult:
        win = key if isinstance(key, RowWindow) else window(key)
        return write_audit_publish(
            lh,
            identifier,
            pa.RecordBatchReader.from_batches(data.schema, data.to_batches()),
            branch=f"sluice-{run_id}",
            provenance=Provenance(run_id=run_id, code_version="v1", partition=win.label),
            checks=checks,
            window=win,
        )

    return run


def seed(pwap: PartitionWap, identifier: str = "p.orders") -> dict[str, WapResult]:
    """Three daily partitions of three rows each, ids 1..3 in every partition."""
    return {d: pwap(identifier, day_rows(d, [1, 2, 3]), d, f"seed-{d}") for d in DAYS}


def files_by_partition(lh: Lakehouse, identifier: str) -> dict[str, set[str]]:
    """Live data file paths of `main`, by partition value."""
    table = lh.table(identifier)
    found: dict[str, set[str]] = {}
    for task in table.scan(snapshot_id=main_snapshot_id(table)).plan_files():
        found.setdefault(str(task.file.partition), set()).add(task.file.file_path)
    return found


def rows_of(rows: Rows, identifier: str, key: str) -> list[Any]:
    return [r for r in rows(identifier) if r["d"] == date.fromisoformat(key)]


# --- the table and its partitions ---------------------------------------------------------------


def test_partition_writes_give_the_table_a_matching_partition_spec(
    lh: Lakehouse, pwap: PartitionWap
) -> None:
    pwap("p.daily", day_rows("2024-01-02", [1]), "2024-01-02", "r1")
    hourly = pa.table(
        {"ts": pa.array([datetime(2024, 1, 2, 5, 30)], pa.timestamp("us", "UTC")), "id": [1]}
    )
    pwap("p.hourly", hourly, window("2024-01-02T05", "ts", "hour"), "r2")
    monthly = pa.table({"m": [date(2024, 2, 10), date(2024, 2, 29)], "id": [1, 2]})
    pwap("p.monthly", monthly, window("2024-02", "m", "month"), "r3")

    for identifier, column, transform in [
        ("p.daily", "d", "day"),
        ("p.hourly", "ts", "hour"),
        ("p.monthly", "m", "month"),
    ]:
        table = lh.table(identifier)
        [field] = table.spec().fields
        assert table.schema().find_column_name(field.source_id) == column
        assert str(field.transform) == transform
        assert main_snapshot_id(table) is not None
        # Every data file is registered with its partition value.
        [partition] = files_by_partition(lh, identifier)
        assert "None" not in partition


def test_a_table_whose_asset_stopped_being_partitioned_takes_a_full_refresh(
    lh: Lakehouse, pwap: PartitionWap, wap: PartitionWap, rows: Rows
) -> None:
    seed(pwap)
    across_days = pa.concat_tables([day_rows(DAYS[0], [7]), day_rows(DAYS[2], [8])])
    result = wap("p.orders", across_days, run_id="unpartitioned")
    assert result.status == "published"
    assert sorted(r["id"] for r in rows("p.orders")) == [7, 8]
    assert not lh.table("p.orders").spec().fields


def test_replacing_a_partition_rewrites_no_other_partitions_files(
    lh: Lakehouse, pwap: PartitionWap, rows: Rows
) -> None:
    seed(pwap)
    before = files_by_partition(lh, "p.orders")
    assert len(before) == 3 and all(len(paths) == 1 for paths in before.values())
    unchanged = {d: rows_of(rows, "p.orders", d) for d in ("2024-01-01", "2024-01-03")}

    result = pwap("p.orders", day_rows("2024-01-02", [7, 8], "v2"), "2024-01-02", "r2")
    assert result.status == "published"

    after = files_by_partition(lh, "p.orders")
    changed = [p for p in after if after[p] != before[p]]
    assert len(changed) == 1 and after[changed[0]].isdisjoint(before[changed[0]])
    for d, expected in unchanged.items():
        assert rows_of(rows, "p.orders", d) == expected
    assert [(r["id"], r["tag"]) for r in rows_of(rows, "p.orders", "2024-01-02")] == [
        (7, "v2"),
        (8, "v2"),
    ]
    # The replace dropped one whole file and added one: no file was rewritten.
    table = lh.table("p.orders")
    head = table.snapshot_by_id(result.snapshot_id)
    assert head is not None and head.parent_snapshot_id is not None
    delete = table.snapshot_by_id(head.parent_snapshot_id)
    assert delete is not None and delete.summary is not None
    assert delete.summary["deleted-data-files"] == "1"
    assert "added-data-files" not in delete.summary.additional_properties


def test_rerunning_a_partition_is_idempotent_and_leaves_the_others_alone(
    lh: Lakehouse, pwap: PartitionWap, rows: Rows
) -> None:
    seed(pwap)
    everything = rows("p.orders")
    for run in ("again-1", "again-2"):
        assert pwap("p.orders", day_rows("2024-01-02", [1, 2, 3]), "2024-01-02", run).status == (
            "published"
        )
        assert rows("p.orders") == everything  # same rows, never duplicated
    provenance = snapshot_provenance(lh.table("p.orders"), main_snapshot_id(lh.table("p.orders")))
    assert provenance is not None and provenance.partition == "2024-01-02"
    assert provenance.window == ("d", "2024-01-02T00:00:00+00:00", "2024-01-03T00:00:00+00:00")


def test_reading_a_window_reads_only_that_partitions_files(
    lh: Lakehouse, pwap: PartitionWap
) -> None:
    seed(pwap)
    table = lh.table("p.orders")
    head = main_snapshot_id(table)
    assert head is not None
    paths = snapshot_files(table, head, window("2024-01-02"))
    assert paths is not None and len(paths) == 1
    assert {paths[0]} in files_by_partition(lh, "p.orders").values()
    other = snapshot_files(table, head, window("2024-01-03"))
    assert other is not None and len(other) == 1 and other != paths
    con = duckdb.connect()
    create_view(con, ("v",), table, head, window("2024-01-02"))
    assert con.sql("SELECT DISTINCT d FROM v").fetchall() == [(date(2024, 1, 2),)]
    con.close()


# --- audits of a partition ----------------------------------------------------------------------


def test_rows_outside_the_window_fail_the_partition_window_check(
    lh: Lakehouse, pwap: PartitionWap, rows: Rows
) -> None:
    seed(pwap)
    before = main_snapshot_id(lh.table("p.orders"))
    everything = rows("p.orders")
    stray = pa.concat_tables(
        [
            day_rows("2024-01-02", [4, 5]),
            day_rows("2024-01-03", [6]),  # belongs to another partition
            pa.table({"d": pa.array([None], pa.date32()), "id": [9], "tag": ["v1"]}),
        ]
    )
    result = pwap("p.orders", stray, "2024-01-02", "stray", checks=[audits.not_null("id")])

    assert result.status == "audit_failed"
    [failed] = result.failed_checks
    assert failed.kind == "partition_window"
    assert failed.name == "partition_window(d in 2024-01-02)"
    assert failed.failing_rows == 2  # the row of 2024-01-03 and the row without a date
    assert {s["id"] for s in failed.samples} == {"6", "9"}
    assert main_snapshot_id(lh.table("p.orders")) == before
    assert rows("p.orders") == everything
    assert [b.branch for b in list_branches(lh.catalog)] == ["sluice-stray"]


def test_checks_see_only_the_partition_being_written(
    lh: Lakehouse, pwap: PartitionWap, rows: Rows
) -> None:
    seed(pwap)  # ids 1..3 in every partition
    checks = [audits.unique("id"), audits.row_count(min=3, max=3)]
    ok = pwap(
        "p.orders", day_rows("2024-01-02", [1, 2, 3], "v2"), "2024-01-02", "ok", checks=checks
    )
    assert ok.status == "published", [c for c in ok.checks if not c.passed]

    dup = pwap("p.orders", day_rows("2024-01-02", [1, 1, 2]), "2024-01-02", "dup", checks=checks)
    assert dup.status == "audit_failed"
    [failed] = dup.failed_checks
    assert failed.name == "unique(id)" and failed.failing_rows == 1
    assert main_snapshot_id(lh.table("p.orders")) == ok.snapshot_id


# --- two writers --------------------------------------------------------------------------------


@pytest.fixture
def both_written(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Once installed, two cycles both finish their write before either audits (and
    publishes); a re-applied cycle's second audit does not wait."""

    def install() -> None:
        barrier = threading.Barrier(2, timeout=30)
        waited: set[int] = set()
        real = wap_module.audit_snapshot

        def audit_after_both_wrote(*args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() not in waited:
                waited.add(threading.get_ident())
                barrier.wait()
            return real(*args, **kwargs)

        monkeypatch.setattr(wap_module, "audit_snapshot", audit_after_both_wrote)

    return install


def _race(
    pwap: PartitionWap, jobs: dict[str, tuple[pa.Table, str | RowWindow | None]]
) -> dict[str, WapResult | Exception]:
    def one(run_id: str, data: pa.Table, key: str | RowWindow | None) -> WapResult | Exception:
        try:
            if key is None:  # a whole-table write
                return write_audit_publish(
                    pwap.lh,  # type: ignore[attr-defined]
                    "p.orders",
                    data.to_reader(),
                    branch=f"sluice-{run_id}",
                    provenance=Provenance(run_id=run_id, code_version="v1"),
                )
            return pwap("p.orders", data, key, run_id, checks=[audits.unique("id")])
        except Exception as exc:  # asserted on by the test
            return exc

    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {r: pool.submit(one, r, d, k) for r, (d, k) in jobs.items()}
        return {r: f.result(timeout=60) for r, f in futures.items()}


@pytest.fixture
def racer(lh: Lakehouse, pwap: PartitionWap) -> PartitionWap:
    pwap.lh = lh  # type: ignore[attr-defined]
    return pwap


def test_two_writers_of_the_same_partition_never_both_publish(
    lh: Lakehouse, racer: PartitionWap, rows: Rows, both_written: Callable[[], None]
) -> None:
    seed(racer)
    both_written()
    others = {d: rows_of(rows, "p.orders", d) for d in ("2024-01-01", "2024-01-03")}
    outcomes = _race(
        racer,
        {
            "a": (day_rows("2024-01-02", [10, 11], "a"), "2024-01-02"),
            "b": (day_rows("2024-01-02", [20, 21, 22], "b"), "2024-01-02"),
        },
    )
    published = [r for r, o in outcomes.items() if isinstance(o, WapResult)]
    conflicts = {r: o for r, o in outcomes.items() if isinstance(o, PublishConflictError)}
    assert len(published) == 1 and len(conflicts) == 1, outcomes
    [winner], [(loser, error)] = published, conflicts.items()
    assert "2024-01-02 of p.orders conflicts" in str(error)
    assert f"run {winner} wrote the same rows (2024-01-02)" in str(error)

    # main: the winner's partition, exactly once; the other partitions untouched.
    assert {r["tag"] for r in rows_of(rows, "p.orders", "2024-01-02")} == {winner}
    for d, expected in others.items():
        assert rows_of(rows, "p.orders", d) == expected
    table = lh.table("p.orders")
    assert main_snapshot_id(table) == outcomes[winner].snapshot_id  # type: ignore[union-attr]
    assert [b.branch for b in list_branches(lh.catalog)] == [f"sluice-{loser}"]


def test_two_writers_of_different_partitions_both_publish(
    lh: Lakehouse, racer: PartitionWap, rows: Rows, both_written: Callable[[], None]
) -> None:
    seed(racer)
    both_written()
    base = main_snapshot_id(lh.table("p.orders"))
    outcomes = _race(
        racer,
        {
            "a": (day_rows("2024-01-02", [10, 11], "a"), "2024-01-02"),
            "b": (day_rows("2024-01-03", [20, 21, 22], "b"), "2024-01-03"),
        },
    )
    assert all(isinstance(o, WapResult) for o in outcomes.values()), outcomes
    results = {r: o for r, o in outcomes.items() if isinstance(o, WapResult)}
    # Both branched from the same main; the second to publish was re-applied on the first.
    reapplied = [r for r in results.values() if r.base_snapshot_id != base]
    assert len(reapplied) == 1
    table = lh.table("p.orders")
    head = main_snapshot_id(table)
    assert head == reapplied[0].snapshot_id
    for result in results.values():
        assert is_ancestor(table, result.snapshot_id, of=head)
    assert [r["tag"] for r in rows_of(rows, "p.orders", "2024-01-01")] == ["v1"] * 3
    assert [r["id"] for r in rows_of(rows, "p.orders", "2024-01-02")] == [10, 11]
    assert [r["id"] for r in rows_of(rows, "p.orders", "2024-01-03")] == [20, 21, 22]
    assert list_branches(lh.catalog) == []


def test_a_whole_table_writer_and_a_partition_writer_never_both_publish(
    lh: Lakehouse, racer: PartitionWap, rows: Rows, both_written: Callable[[], None]
) -> None:
    seed(racer)
    both_written()
    outcomes = _race(
        racer,
        {
            "whole": (day_rows("2024-01-05", [1]), None),
            "part": (day_rows("2024-01-02", [5]), "2024-01-02"),
        },
    )
    published = [r for r, o in outcomes.items() if isinstance(o, WapResult)]
    conflicts = [r for r, o in outcomes.items() if isinstance(o, PublishConflictError)]
    assert len(published) == 1 and len(conflicts) == 1, outcomes
    on_main = rows("p.orders")
    if published == ["whole"]:
        assert [r["d"] for r in on_main] == [date(2024, 1, 5)]
    else:
        assert [r["id"] for r in rows_of(rows, "p.orders", "2024-01-02")] == [5]
        assert len(on_main) == 7


# --- many writers -------------------------------------------------------------------------------


def test_eight_writers_of_eight_partitions_all_publish_each_exactly_once(
    lh: Lakehouse, pwap: PartitionWap, rows: Rows, monkeypatch: pytest.MonkeyPatch
) -> None:
    """All eight write their branch on the same `main` before any audits, so seven lose the
    first publish. A loser re-applies holding the table lock, so on one host it cannot lose
    again: every writer publishes after at most two writes, far inside the retry budget."""
    pwap("p.orders", day_rows("2024-02-01", [0]), "2024-02-01", "seed")
    days = [f"2024-02-{d:02d}" for d in range(2, 10)]
    barrier = threading.Barrier(len(days), timeout=60)
    audited: set[int] = set()
    writes: dict[str, int] = {}
    real_audit, real_write = wap_module.audit_snapshot, wap_module.write_branch

    def audit_after_all_wrote(*args: Any, **kwargs: Any) -> Any:
        if threading.get_ident() not in audited:
            audited.add(threading.get_ident())
            barrier.wait()
        return real_audit(*args, **kwargs)

    def counted_write(*args: Any, **kwargs: Any) -> Any:
        writes[kwargs["branch"]] = writes.get(kwargs["branch"], 0) + 1
        return real_write(*args, **kwargs)

    monkeypatch.setattr(wap_module, "audit_snapshot", audit_after_all_wrote)
    monkeypatch.setattr(wap_module, "write_branch", counted_write)
    ids = {d: [i * 100 + n for n in range(3)] for i, d in enumerate(days)}

    def one(day: str) -> WapResult | Exception:
        try:
            return pwap("p.orders", day_rows(day, ids[day], day), day, f"w{day}")
        except Exception as exc:  # asserted on below
            return exc

    with ThreadPoolExecutor(max_workers=len(days)) as pool:
        outcomes = dict(zip(days, pool.map(one, days), strict=True))

    assert all(isinstance(o, WapResult) and o.status == "published" for o in outcomes.values()), (
        outcomes
    )
    assert sorted(writes.values()) == [1] + [2] * (len(days) - 1), writes
    table = lh.table("p.orders")
    history = published_history(table)
    published_runs = [p.run_id for _, p in history]
    assert sorted(published_runs) == sorted(["seed"] + [f"w{d}" for d in days])  # each once
    for day in days:
        assert sorted(r["id"] for r in rows_of(rows, "p.orders", day)) == ids[day]
        assert {r["tag"] for r in rows_of(rows, "p.orders", day)} == {day}
    assert len(rows("p.orders")) == 1 + 3 * len(days)  # nothing lost, nothing duplicated
    assert list_branches(lh.catalog) == []


def test_a_partition_write_whose_base_was_expired_meanwhile_still_publishes(
    lh: Lakehouse, pwap: PartitionWap, rows: Rows, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lakehouse.maintenance import expire_snapshots

    seed(pwap)
    base = main_snapshot_id(lh.table("p.orders"))
    real_write = wap_module.write_data_files
    done = threading.Event()

    def others_publish_and_expire(*args: Any, **kwargs: Any) -> Any:
        written = real_write(*args, **kwargs)
        if not done.is_set():  # only around the write under test
            done.set()
            for n in range(4):
                pwap("p.orders", day_rows(DAYS[2], [30 + n], f"v{n + 2}"), DAYS[2], f"o{n}")
            expire_snapshots(lh, "p.orders", keep_last=1, max_batch=100, batches=None)
        return written

    monkeypatch.setattr(wap_module, "write_data_files", others_publish_and_expire)
    result = pwap("p.orders", day_rows(DAYS[0], [10, 11, 12], "v2"), DAYS[0], "late")

    assert done.is_set() and lh.table("p.orders").snapshot_by_id(base) is None  # really expired
    assert result.status == "published"
    assert [r["tag"] for r in rows_of(rows, "p.orders", DAYS[0])] == ["v2"] * 3
    assert [r["id"] for r in rows_of(rows, "p.orders", DAYS[1])] == [1, 2, 3]
    assert [r["id"] for r in rows_of(rows, "p.orders", DAYS[2])] == [33]
