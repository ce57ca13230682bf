"""Writers of different partitions of one table at once, through the orchestrator: a parallel
backfill publishes every partition exactly once, and a timed-out attempt that holds the table
lock across its re-apply still never commits after its deadline."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest
from conftest import ProjectDir
from partition_shop import FILES, publishes, table_rows

from lakehouse import wap as wap_module
from lakehouse.branches import Lakehouse, list_branches, main_snapshot_id
from lakehouse.provenance import Provenance
from lakehouse.wap import WapResult, write_audit_publish
from lakehouse.windows import RowWindow
from orchestrator.backfill import BackfillRequest, run_backfill
from orchestrator.loader import load_project
from orchestrator.materialize import open_lakehouse
from orchestrator.timeouts import AttemptCancelledError, Fence, FencedLocks

DAYS = [f"2024-01-0{d}" for d in range(1, 9)]
CHAIN = ("bronze.raw_orders", "silver.orders")


def test_a_parallel_backfill_publishes_every_partition_exactly_once(project: ProjectDir) -> None:
    project.write(FILES)
    loaded = load_project(project.root)
    open_lakehouse(loaded)  # the catalog exists before the workers start
    outcome = run_backfill(loaded, BackfillRequest(CHAIN, DAYS[0], DAYS[-1], parallel=4))
    assert outcome.ok, (outcome.failed, outcome.blocked)

    for identifier in CHAIN:
        # One publish per partition (none lost to retries, none repeated), in any order.
        assert sorted(publishes(project.root, identifier)) == DAYS, identifier  # type: ignore[arg-type]
        ids = sorted(r["order_id"] for r in table_rows(project.root, identifier))
        assert ids == sorted(int(d[-2:]) * 10 + i for d in DAYS for i in range(3)), identifier
    assert list_branches(open_lakehouse(loaded).catalog) == []


def _day(key: str) -> RowWindow:
    start = datetime.fromisoformat(key).replace(tzinfo=UTC)
    return RowWindow("d", start, start + timedelta(days=1), key)


def _write(lh: Lakehouse, key: str, run_id: str) -> WapResult:
    data = pa.table({"d": [date.fromisoformat(key)] * 2, "id": [1, 2]})
    return write_audit_publish(
        lh,
        "p.fenced",
        data.to_reader(),
        branch=f"sluice-{run_id}",
        provenance=Provenance(run_id=run_id, code_version="v1", partition=key),
        window=_day(key),
    )


def _taken_by_another_thread(lh: Lakehouse, wait_s: float) -> bool:
    got = threading.Event()

    def take() -> None:
        with lh.locks.hold("p.fenced"):
            got.set()

    threading.Thread(target=take, daemon=True).start()
    return got.wait(wait_s)


def test_a_timed_out_reapply_holding_the_lock_never_commits_after_its_deadline(
    lh: Lakehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(lh, "2024-01-01", "seed")
    fence = Fence()
    fenced = Lakehouse(lh.catalog, FencedLocks(lh.locks, fence))
    in_reapply, fence_closed = threading.Event(), threading.Event()
    real_audit = wap_module.audit_snapshot
    audits: list[str] = []

    def audit(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread().name != "attempt":
            return real_audit(*args, **kwargs)
        audits.append("audit")
        if len(audits) == 1:
            # While the attempt audits its first write, another writer publishes another
            # partition: the attempt's publish loses and it re-applies, holding the lock.
            other = threading.Thread(target=_write, args=(lh, "2024-01-03", "other"))
            other.start()
            other.join(60)
        else:
            in_reapply.set()  # now the attempt times out, in the middle of its re-apply
            assert fence_closed.wait(60)
        return real_audit(*args, **kwargs)

    monkeypatch.setattr(wap_module, "audit_snapshot", audit)
    outcome: list[BaseException | WapResult] = []

    def attempt() -> None:
        try:
            outcome.append(_write(fenced, "2024-01-02", "late"))
        except BaseException as exc:  # asserted on below
            outcome.append(exc)

    thread = threading.Thread(target=attempt, name="attempt", daemon=True)
    thread.start()
    assert in_reapply.wait(60), outcome
    before = main_snapshot_id(lh.table("p.fenced"))
    # The re-apply holds the table lock across its audit: no other writer of this host commits.
    assert not _taken_by_another_thread(lh, wait_s=0.3)
    # Yet the fence closes without waiting for that audit: it guards each commit, not the lock.
    assert fence.close(wait_s=30)
    fence_closed.set()
    thread.join(60)

    [error] = outcome
    assert isinstance(error, AttemptCancelledError), error
    table = lh.table("p.fenced")
    assert main_snapshot_id(table) == before  # the abandoned attempt never published
    days = {r["d"] for r in table.scan().to_arrow().to_pylist()}
    assert days == {date(2024, 1, 1), date(2024, 1, 3)}
    # Its lock was released on the way out: the next writer publishes at once.
    assert _taken_by_another_thread(lh, wait_s=30)
    assert _write(lh, "2024-01-04", "next").status == "published"
