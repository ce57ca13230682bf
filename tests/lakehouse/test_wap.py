"""The write-audit-publish cycle: what consumers of `main` can and cannot see, under faults."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from lakehouse import audits
from lakehouse import tables as tables_module
from lakehouse import wap as wap_module
from lakehouse import writes as writes_module
from lakehouse.branches import Lakehouse, list_branches, main_snapshot_id
from lakehouse.config import CatalogConfig
from lakehouse.errors import PublishConflictError
from lakehouse.provenance import Provenance, snapshot_provenance
from lakehouse.tables import INITIAL_PROPERTY
from lakehouse.wap import WapResult, write_audit_publish


def _branches(lh: Lakehouse) -> dict[tuple[str, str], int]:
    return {(b.identifier, b.branch): b.snapshot_id for b in list_branches(lh.catalog)}


# --- the ordinary cycle -----------------------------------------------------------------------


def test_first_materialization_publishes_with_provenance(lh: Lakehouse, wap, rows) -> None:
    checks = [
        audits.not_null("id"),
        audits.unique("id"),
        audits.row_count(min=1, severity="warn"),
    ]
    result = wap(
        "s.orders",
        {"id": [1, 2, 3], "amount": [1.5, 2.5, 3.5]},
        "run-1",
        checks=checks,
        code_version="abc123",
        inputs={"b.raw_orders": 42},
    )

    assert result.status == "published"
    assert result.rows == 3
    assert [c.passed for c in result.checks] == [True, True, True]
    table = lh.table("s.orders")
    assert main_snapshot_id(table) == result.snapshot_id
    assert rows("s.orders") == [
        {"id": 1, "amount": 1.5},
        {"id": 2, "amount": 2.5},
        {"id": 3, "amount": 3.5},
    ]
    assert snapshot_provenance(table, result.snapshot_id) == Provenance(
        run_id="run-1",
        code_version="abc123",
        inputs={"b.raw_orders": 42},
        checks=("not_null(id)", "unique(id)"),  # the checks that had to pass: error severity
    )
    assert set(table.metadata.refs) == {"main"}
    assert list_branches(lh.catalog) == []


def test_rerun_with_the_same_data_gives_identical_rows(lh: Lakehouse, wap, rows) -> None:
    data = {"id": [1, 2, 3], "name": ["a", "b", "c"]}
    first = wap("s.customers", data, "r1")
    expected = rows("s.customers")
    second = wap("s.customers", data, "r2")

    assert second.status == "published"
    assert second.snapshot_id != first.snapshot_id
    assert rows("s.customers") == expected
    assert len(expected) == 3
    assert snapshot_provenance(lh.table("s.customers"), second.snapshot_id).run_id == "r2"


def test_failing_error_check_leaves_main_untouched_and_keeps_the_branch(
    lh: Lakehouse, wap, rows
) -> None:
    good = wap("s.payments", {"id": [1, 2], "amount": [10, 20]}, "r1")
    bad = wap(
        "s.payments",
        {"id": [3, 4, 5], "amount": [30, -1, -2]},
        "r2",
        checks=[audits.not_null("id"), audits.expression("amount >= 0")],
    )

    assert bad.status == "audit_failed"
    assert [c.name for c in bad.failed_checks] == ["expression(amount >= 0)"]
    assert bad.failed_checks[0].failing_rows == 2
    assert main_snapshot_id(lh.table("s.payments")) == good.snapshot_id
    assert rows("s.payments") == [{"id": 1, "amount": 10}, {"id": 2, "amount": 20}]
    assert _branches(lh) == {("s.payments", "sluice-r2"): bad.snapshot_id}
    assert rows("s.payments", bad.snapshot_id) == [
        {"id": 3, "amount": 30},
        {"id": 4, "amount": -1},
        {"id": 5, "amount": -2},
    ]


def test_first_materialization_failing_its_audit_publishes_nothing(
    lh: Lakehouse, wap, rows
) -> None:
    bad = wap("s.first", {"id": [None, 1]}, "r1", checks=[audits.not_null("id")])
    assert bad.status == "audit_failed"
    assert rows("s.first") == []  # consumers see an empty table, never the unaudited rows
    assert rows("s.first", bad.snapshot_id) == [{"id": 1}, {"id": None}]


def test_a_full_refresh_adding_a_column_is_audited_with_that_column(
    lh: Lakehouse, wap, rows
) -> None:
    first = wap("s.people", {"id": [1, 2]}, "r1")
    checks = [audits.not_null("email")]

    bad = wap("s.people", {"id": [1, 2, 3], "email": ["a@x", None, None]}, "r2", checks=checks)
    assert bad.status == "audit_failed"
    [check] = bad.checks
    assert check.error is None and check.failing_rows == 2
    assert main_snapshot_id(lh.table("s.people")) == first.snapshot_id

    good = wap("s.people", {"id": [1], "email": ["a@x"]}, "r3", checks=checks)
    assert good.status == "published"
    assert rows("s.people") == [{"id": 1, "email": "a@x"}]


def test_warn_severity_failure_still_publishes(lh: Lakehouse, wap, rows) -> None:
    result = wap(
        "s.warned",
        {"id": [1, 1]},
        "r1",
        checks=[audits.unique("id", severity="warn")],
    )
    assert result.status == "published"
    [check] = result.checks
    assert not check.passed and check.failing_rows == 1 and not check.blocking
    assert main_snapshot_id(lh.table("s.warned")) == result.snapshot_id
    assert rows("s.warned") == [{"id": 1}, {"id": 1}]
    assert snapshot_provenance(lh.table("s.warned"), result.snapshot_id).checks == ()


def test_relationships_check_against_another_published_table(lh: Lakehouse, wap, rows) -> None:
    wap("gold.dim_customer", {"customer_id": [1, 2]}, "d1")
    # An unpublished (failed) version of the parent must not count as a match.
    parent_branch = wap(
        "gold.dim_customer", {"customer_id": [1, 2, 3]}, "d2", checks=[audits.row_count(max=2)]
    )
    assert parent_branch.status == "audit_failed"

    check = audits.relationships("customer_id", to="gold.dim_customer")
    ok = wap("gold.fct_orders", {"order_id": [10, 11], "customer_id": [1, 2]}, "f1", checks=[check])
    assert ok.status == "published"

    orphan = wap(
        "gold.fct_orders",
        {"order_id": [12, 13, 14], "customer_id": [2, 3, None]},
        "f2",
        checks=[check],
    )
    assert orphan.status == "audit_failed"
    [failed] = orphan.failed_checks
    assert failed.failing_rows == 1
    assert failed.samples == [{"order_id": 13, "customer_id": 3}]
    assert main_snapshot_id(lh.table("gold.fct_orders")) == ok.snapshot_id
    assert [r["order_id"] for r in rows("gold.fct_orders")] == [10, 11]


# --- fault injection --------------------------------------------------------------------------


@pytest.fixture
def audit_barrier(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Once installed, two cycles both finish their write before either audits (and publishes)."""

    def install() -> None:
        barrier = threading.Barrier(2, timeout=30)
        real = wap_module.audit_snapshot

        def audit_after_both_wrote(*args: Any, **kwargs: Any) -> Any:
            barrier.wait()
            return real(*args, **kwargs)

        monkeypatch.setattr(wap_module, "audit_snapshot", audit_after_both_wrote)

    return install


def _writer_data(marker: str, n: int) -> pa.Table:
    return pa.table({"id": list(range(n)), "writer": [marker] * n})


def _run(lh: Lakehouse, identifier: str, data: pa.Table, branch: str) -> WapResult | Exception:
    try:
        return write_audit_publish(
            lh,
            identifier,
            pa.RecordBatchReader.from_batches(data.schema, data.to_batches()),
            branch=branch,
            provenance=Provenance(run_id=branch, code_version="v1"),
            checks=[audits.unique("id")],
        )
    except Exception as exc:  # collected and asserted on by the test
        return exc


def test_two_writers_on_one_table_one_publishes_the_other_conflicts(
    lh: Lakehouse, wap, rows, audit_barrier
) -> None:
    wap("s.shared", _writer_data("seed", 3), "seed")
    audit_barrier()
    data = {"sluice-a": _writer_data("a", 5), "sluice-b": _writer_data("b", 8)}

    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {b: pool.submit(_run, lh, "s.shared", d, b) for b, d in data.items()}
        outcomes = {b: f.result(timeout=60) for b, f in futures.items()}

    published = [b for b, o in outcomes.items() if isinstance(o, WapResult)]
    conflicted = [b for b, o in outcomes.items() if isinstance(o, PublishConflictError)]
    assert len(published) == 1 and len(conflicted) == 1, outcomes
    [winner], [loser] = published, conflicted
    winner_result = outcomes[winner]
    assert isinstance(winner_result, WapResult) and winner_result.status == "published"

    table = lh.table("s.shared")
    assert main_snapshot_id(table) == winner_result.snapshot_id
    # Exactly the winner's rows: none lost, none of the loser's, no duplicates.
    assert rows("s.shared") == sorted(
        data[winner].to_pylist(), key=lambda r: (r["id"], r["writer"])
    )
    branches = _branches(lh)
    assert set(branches) == {("s.shared", loser)}
    assert rows("s.shared", branches[("s.shared", loser)]) == data[loser].to_pylist()


def test_two_writers_on_two_tables_both_publish(lh: Lakehouse, rows, audit_barrier) -> None:
    audit_barrier()
    jobs = {"s.left": _writer_data("l", 4), "s.right": _writer_data("r", 6)}
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {
            ident: pool.submit(_run, lh, ident, d, f"sluice-{ident}") for ident, d in jobs.items()
        }
        outcomes = {ident: f.result(timeout=60) for ident, f in futures.items()}

    for ident, outcome in outcomes.items():
        assert isinstance(outcome, WapResult) and outcome.status == "published", outcome
        assert main_snapshot_id(lh.table(ident)) == outcome.snapshot_id
        assert rows(ident) == jobs[ident].to_pylist()
    assert list_branches(lh.catalog) == []


def test_two_writers_creating_the_same_new_table_at_once(
    lh: Lakehouse, rows, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Whoever enters table creation first waits (briefly) for the other to enter too: without
    # the per-table lock both would create the table and its first snapshot at the same time.
    both_inside = threading.Barrier(2, timeout=0.5)
    real = tables_module.ensure_namespace

    def rendezvous(*args: Any, **kwargs: Any) -> None:
        with contextlib.suppress(threading.BrokenBarrierError):  # the lock kept them apart
            both_inside.wait()
        real(*args, **kwargs)

    monkeypatch.setattr(tables_module, "ensure_namespace", rendezvous)
    data = {"sluice-a": _writer_data("a", 3), "sluice-b": _writer_data("b", 4)}
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {b: pool.submit(_run, lh, "s.brand_new", d, b) for b, d in data.items()}
        outcomes = {b: f.result(timeout=60) for b, f in futures.items()}

    published = [b for b, o in outcomes.items() if isinstance(o, WapResult)]
    others = [o for o in outcomes.values() if not isinstance(o, WapResult)]
    assert len(published) >= 1, outcomes
    assert all(isinstance(o, PublishConflictError) for o in others), outcomes
    table = lh.table("s.brand_new")
    initial = [
        s
        for s in table.snapshots()
        if s.summary and INITIAL_PROPERTY in s.summary.additional_properties
    ]
    assert len(initial) == 1  # one table, one empty first snapshot
    on_main = snapshot_provenance(table, main_snapshot_id(table))
    assert on_main is not None and on_main.run_id in published
    assert rows("s.brand_new") == data[on_main.run_id].to_pylist()


def test_reader_failing_mid_stream_leaves_main_unchanged_and_no_branch(
    lh: Lakehouse, wap, rows, data_files, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = wap("s.stream", {"id": [1, 2]}, "r1")
    files_before = data_files("s.stream")
    monkeypatch.setattr(writes_module, "ROW_GROUP_ROWS", 2)
    monkeypatch.setattr(writes_module, "FILE_ROWS", 2)
    schema = pa.schema([("id", pa.int64())])
    files_mid_stream: set[str] = set()

    def batches() -> Iterator[pa.RecordBatch]:
        for start in (10, 20, 30):
            yield pa.record_batch([pa.array([start, start + 1])], schema=schema)
        files_mid_stream.update(data_files("s.stream") - files_before)
        raise ConnectionError("source went away")

    with pytest.raises(ConnectionError, match="source went away"):
        wap("s.stream", pa.RecordBatchReader.from_batches(schema, batches()), "r2")

    table = lh.table("s.stream")
    assert main_snapshot_id(table) == before.snapshot_id
    assert rows("s.stream") == [{"id": 1}, {"id": 2}]
    assert set(table.metadata.refs) == {"main"}
    assert list_branches(lh.catalog) == []
    assert len(files_mid_stream) >= 2  # files really were written before the failure...
    assert data_files("s.stream") == files_before  # ...and were removed


def test_crash_between_write_and_publish_keeps_main_and_lists_the_branch(
    lh: Lakehouse, wap, rows, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = wap("s.crash", {"id": [1]}, "r1")

    def killed(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt("killed before publish")

    monkeypatch.setattr(wap_module, "publish", killed)
    with pytest.raises(KeyboardInterrupt):
        wap("s.crash", {"id": [2, 3]}, "r2")

    assert main_snapshot_id(lh.table("s.crash")) == before.snapshot_id
    assert rows("s.crash") == [{"id": 1}]
    [orphan] = list_branches(lh.catalog)
    assert (orphan.identifier, orphan.branch) == ("s.crash", "sluice-r2")
    assert orphan.provenance is not None and orphan.provenance.run_id == "r2"
    assert rows("s.crash", orphan.snapshot_id) == [{"id": 2}, {"id": 3}]


# --- two processes ----------------------------------------------------------------------------

LOCK_HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path

    from lakehouse.locks import TableLocks

    with TableLocks(Path(sys.argv[1])).hold("race.table"):
        print("held", flush=True)
        time.sleep(0.6)
    """
)


def test_commit_lock_is_shared_with_another_process(lh: Lakehouse, tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(tmp_path / "catalog" / "locks")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with lh.locks.hold("race.other"):  # another table: not blocked
            assert time.monotonic() - started < 0.3
        with lh.locks.hold("race.table"):  # the same table: waits for the other process
            waited = time.monotonic() - started
        assert waited >= 0.3
    finally:
        holder.wait(timeout=30)


WORKER = textwrap.dedent(
    """
    import json, random, sys, time
    from pathlib import Path

    import pyarrow as pa

    from lakehouse import audits
    from lakehouse.branches import Lakehouse
    from lakehouse.catalog import open_catalog
    from lakehouse.config import CatalogConfig
    from lakehouse.errors import PublishConflictError
    from lakehouse.locks import TableLocks
    from lakehouse.provenance import Provenance
    from lakehouse.wap import write_audit_publish

    config, lock_dir, writer, cycles, rows, go = sys.argv[1:]
    lh = Lakehouse(
        open_catalog(CatalogConfig.model_validate_json(config)), TableLocks(Path(lock_dir))
    )
    print("ready", flush=True)
    while not Path(go).exists():
        time.sleep(0.005)
    for cycle in range(int(cycles)):
        time.sleep(random.random() * 0.1)  # vary the phase so both processes get to win
        marker = f"{writer}-{cycle}"
        n = int(rows)
        data = pa.table({"id": list(range(n)), "marker": [marker] * n})
        try:
            result = write_audit_publish(
                lh,
                "race.table",
                pa.RecordBatchReader.from_batches(data.schema, data.to_batches()),
                branch=f"sluice-{marker}",
                provenance=Provenance(run_id=marker, code_version="v1"),
                checks=[audits.unique("id"), audits.row_count(min=n, max=n)],
            )
            outcome = result.status
        except PublishConflictError:
            outcome = "conflict"
        except BaseException as exc:
            outcome = f"error {type(exc).__name__}: {exc}"
        print(json.dumps({"marker": marker, "outcome": outcome}), flush=True)
    """
)


def test_two_processes_racing_wap_cycles_on_one_table(
    lh: Lakehouse, catalog_config: CatalogConfig, tmp_path: Path, rows
) -> None:
    cycles, n = 5, 20
    go = tmp_path / "go"
    lock_dir = tmp_path / "catalog" / "locks"  # the same lock dir as the `lh` fixture
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WORKER,
                catalog_config.model_dump_json(),
                str(lock_dir),
                writer,
                str(cycles),
                str(n),
                str(go),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for writer in ("p1", "p2")
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready", proc.stderr
        go.touch()
        outputs = [proc.communicate(timeout=60) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()

    outcomes: dict[str, str] = {}
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        for line in out.splitlines():
            record = json.loads(line)
            outcomes[record["marker"]] = record["outcome"]
    assert len(outcomes) == 2 * cycles
    assert set(outcomes.values()) <= {"published", "conflict"}, outcomes
    published = {m for m, o in outcomes.items() if o == "published"}
    conflicted = {m for m, o in outcomes.items() if o == "conflict"}
    assert published

    # main holds exactly one complete cycle: one marker, every id once.
    table = lh.table("race.table")
    final = rows("race.table")
    markers = {r["marker"] for r in final}
    assert len(markers) == 1, markers
    [marker] = markers
    assert marker in published
    assert sorted(r["id"] for r in final) == list(range(n))
    assert snapshot_provenance(table, main_snapshot_id(table)).run_id == marker
    # Every published cycle removed its branch; every conflicted one kept its branch.
    assert {b.branch for b in list_branches(lh.catalog)} == {f"sluice-{m}" for m in conflicted}
