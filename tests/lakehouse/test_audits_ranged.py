"""Ranged audits: the checks of a ranged write, counted for many partitions at once, give
exactly the results of auditing each partition on its own (names, pass/fail, failing rows,
samples, errors)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest

from lakehouse import audits, snapshot_audits
from lakehouse.audits import Check, CheckResult
from lakehouse.branches import Lakehouse
from lakehouse.provenance import Provenance
from lakehouse.reads import snapshot_files
from lakehouse.snapshot_audits import audit_snapshot
from lakehouse.wap import WapResult, write_audit_publish
from lakehouse.windows import RowWindow

UTC = ZoneInfo("UTC")
DAYS = [f"2024-01-0{d}" for d in range(1, 7)]
TABLE = "r.events"


def day(key: str) -> RowWindow:
    start = datetime.fromisoformat(key).replace(tzinfo=UTC)
    return RowWindow("d", start, start + timedelta(days=1), key, "day")


RANGE = RowWindow("d", day(DAYS[0]).start, day(DAYS[-1]).end, f"{DAYS[0]}..{DAYS[-1]}", "day")

# Per day: (id, kind, amount). Day 3 has no rows; the others break one check each, or none.
ROWS: dict[str, list[tuple[int | None, str, float]]] = {
    DAYS[0]: [(1, "a", 1.0), (2, "b", 2.0), (3, "a", 3.0)],
    DAYS[1]: [(1, "a", 1.0), (1, "b", 2.0), (2, "zz", -1.0)],  # duplicate id, bad kind, < 0
    DAYS[2]: [],
    DAYS[3]: [(None, "a", 1.0), (5, "c", 9.0)],  # NULL id, kind without a parent
    DAYS[4]: [(1, "a", 1.0), (2, "b", 5.0), (3, "b", 5.0), (4, "a", 5.0)],  # 4 rows
    DAYS[5]: [(1, "b", 0.5)],
}

CHECKS: tuple[Check, ...] = (
    audits.not_null("id"),
    audits.unique("id"),
    audits.accepted_values("kind", ["a", "b", "c"]),
    audits.row_count(min=1, max=3),
    audits.expression("amount >= 0"),
    # Not a row predicate: its subquery reads the partition, so it runs per partition.
    audits.expression("amount < (SELECT max(amount) FROM this) OR id = 1"),
    audits.freshness("d", "36500d"),
    audits.relationships("kind", to="r.kinds", field="kind"),
    audits.sql("SELECT * FROM this WHERE id > 3"),
    audits.not_null("no_such_column"),
    audits.unique("kind", severity="warn"),
)


def data() -> pa.Table:
    days, ids, kinds, amounts = [], [], [], []
    # Rows of all days interleaved, as a query's result may deliver them.
    for i in range(max(len(rows) for rows in ROWS.values())):
        for key, rows in ROWS.items():
            if i < len(rows):
                days.append(date.fromisoformat(key))
                ids.append(rows[i][0])
                kinds.append(rows[i][1])
                amounts.append(rows[i][2])
    return pa.table(
        {
            "d": pa.array(days, pa.date32()),
            "id": pa.array(ids, pa.int64()),
            "kind": pa.array(kinds),
            "amount": pa.array(amounts, pa.float64()),
        }
    )


def ranged_write(lh: Lakehouse, checks: Sequence[Check]) -> WapResult:
    kinds = pa.table({"kind": ["a", "b"]})
    write_audit_publish(
        lh,
        "r.kinds",
        kinds.to_reader(),
        branch="sluice-kinds",
        provenance=Provenance(run_id="kinds", code_version="v1"),
    )
    table = data()
    return write_audit_publish(
        lh,
        TABLE,
        pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=4)),
        branch="sluice-range",
        provenance=Provenance(run_id="range", code_version="v1", partition=RANGE.label),
        checks=checks,
        window=RANGE,
        partitions=[day(k) for k in DAYS],
    )


def one_by_one(lh: Lakehouse, snapshot_id: int, checks: Sequence[Check]) -> list[CheckResult]:
    """The reference: each partition audited alone (its rows as `this`), renamed."""
    return [
        dataclasses.replace(r, name=f"{r.name} [{key}]")
        for key in DAYS
        for r in audit_snapshot(lh, TABLE, snapshot_id, checks, day(key))
    ]


def same(results: Sequence[CheckResult]) -> list[CheckResult]:
    """Results with samples in a fixed order: DuckDB returns the groups of `unique`'s failing
    query in no particular order, whichever way the partition is audited."""
    return [dataclasses.replace(r, samples=sorted(r.samples, key=repr)) for r in results]


@pytest.mark.parametrize("batch", [1, 2, 4, 32])
def test_ranged_audit_equals_auditing_each_partition_alone(
    lh: Lakehouse, monkeypatch: pytest.MonkeyPatch, batch: int
) -> None:
    monkeypatch.setattr(snapshot_audits, "AUDIT_BATCH", batch)
    result = ranged_write(lh, CHECKS)
    expected = one_by_one(lh, result.snapshot_id, CHECKS)

    written = [c for c in result.checks if c.kind != "partition_window"]
    assert same(written) == same(expected)
    # Without the files the write knew: planned per partition, the same results.
    planned = audit_snapshot(
        lh, TABLE, result.snapshot_id, CHECKS, RANGE, partitions=[day(k) for k in DAYS]
    )
    assert same(planned) == same(expected)
    # Partitions that do not tile a span (a gap): each partition's own rows, stacked.
    gapped = [day(k) for k in DAYS if k != DAYS[2]]
    without = [r for r in expected if not r.name.endswith(f"[{DAYS[2]}]")]
    sid = result.snapshot_id
    assert same(audit_snapshot(lh, TABLE, sid, CHECKS, RANGE, partitions=gapped)) == same(without)
    files = {k: snapshot_files(lh.table(TABLE), sid, day(k)) or [] for k in DAYS}
    known = audit_snapshot(lh, TABLE, sid, CHECKS, RANGE, partitions=gapped, partition_files=files)
    assert same(known) == same(without)

    # The reference is not vacuous: every kind of outcome is in it.
    assert result.status == "audit_failed"
    by_name = {c.name: c for c in expected}
    duplicated = by_name[f"unique(id) [{DAYS[1]}]"]
    assert (duplicated.failing_rows, duplicated.samples) == (1, [{"id": 1, "n": 2}])
    assert by_name[f"accepted_values(kind, ['a', 'b', 'c']) [{DAYS[1]}]"].samples == [
        {"d": DAYS[1], "id": 2, "kind": "zz", "amount": -1.0}
    ]
    assert by_name[f"row_count(min=1, max=3) [{DAYS[2]}]"].samples == [{"row_count": 0}]
    assert by_name[f"row_count(min=1, max=3) [{DAYS[4]}]"].samples == [{"row_count": 4}]
    assert by_name[f"freshness(d, max_age=36500d) [{DAYS[2]}]"].samples == [{"latest": None}]
    assert not by_name[f"not_null(id) [{DAYS[3]}]"].passed
    assert by_name[f"relationships(kind -> r.kinds.kind) [{DAYS[3]}]"].failing_rows == 1
    assert by_name[f"sql(SELECT * FROM this WHERE id > 3) [{DAYS[4]}]"].failing_rows == 1
    subquery = "expression(amount < (SELECT MAX(amount) FROM this) OR id = 1)"
    # Day 5's maximum is its own (5.0), not the range's (9.0): rows 2..4 fail there.
    assert by_name[f"{subquery} [{DAYS[4]}]"].failing_rows == 3
    assert all(by_name[f"not_null(no_such_column) [{k}]"].error for k in DAYS)
    assert not by_name[f"unique(kind) [{DAYS[4]}]"].blocking  # a warning
    assert {c.name for c in expected if c.passed} >= {
        f"{check.name} [{DAYS[0]}]" for check in (*CHECKS[:5], *CHECKS[6:8])
    }


def test_checks_holding_per_partition_pass_although_they_fail_over_the_range(
    lh: Lakehouse,
) -> None:
    checks = [audits.unique("id"), audits.row_count(max=4), audits.not_null("id", "kind")]
    result = ranged_write(lh, checks)
    # Over the range ids repeat and there are 16 rows; per day only day 2 repeats an id and
    # only day 4 has a NULL.
    failed = sorted(c.name for c in result.checks if c.blocking)
    assert failed == [f"not_null(id, kind) [{DAYS[3]}]", f"unique(id) [{DAYS[1]}]"]


def test_a_passing_range_is_published_with_one_result_per_check_and_partition(
    lh: Lakehouse,
) -> None:
    checks = [audits.row_count(max=4), audits.accepted_values("kind", ["a", "b", "c", "zz"])]
    result = ranged_write(lh, checks)
    assert result.status == "published"
    names = [c.name for c in result.checks if c.kind != "partition_window"]
    assert names == [f"{c.name} [{k}]" for k in DAYS for c in checks]
    assert all(c.passed and c.failing_rows == 0 and c.samples == [] for c in result.checks)
