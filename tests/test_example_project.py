"""The example project in `assets/` builds end to end, every check passing: a month backfill
from a fresh catalog, a rerun that publishes nothing, a day rebuilt alone to identical rows, and
a bare `sluice materialize` (the latest complete day)."""

from __future__ import annotations

import contextlib
import io
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from lakehouse import duck
from lakehouse.branches import list_branches, main_snapshot_id
from lakehouse.catalog import open_catalog
from lakehouse.provenance import snapshot_provenance
from lakehouse.reads import create_view
from lakehouse.tables import split_identifier
from orchestrator.cli import main
from orchestrator.config import load_config
from orchestrator.loader import load_project
from orchestrator.state import StateStore

REPO = Path(__file__).resolve().parents[1]
FIRST, LAST = "2024-01-01", "2024-01-31"
JANUARY = {date(2024, 1, 1) + timedelta(days=n) for n in range(31)}
REBUILT = "2024-01-15"
ORDER_FEED = ("bronze.raw_orders", "silver.orders", "silver.orders_rejected")
DEFAULT_ROWS_PER_DAY = 1_000  # assets/source.py DEFAULT_ROWS
# The day each partitioned table files a row under.
DAY_OF = {
    "bronze.raw_orders": "order_date",
    "silver.orders": "CAST(order_ts AS DATE)",
    "silver.orders_rejected": "order_date",
}


@dataclass(frozen=True)
class Month:
    root: Path
    exit_code: int
    output: str


def copy_example(parent: Path) -> Path:
    root = parent / "example"
    shutil.copytree(REPO / "assets", root / "assets", ignore=shutil.ignore_patterns("__pycache__"))
    return root


def sluice(root: Path, *args: str) -> tuple[int, str]:
    """Run the CLI on `root`; its exit code and what it printed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["--project", str(root), *args])
    return code, out.getvalue()


class Lake:
    """What `main` holds for every table of the example, read when this is created."""

    def __init__(self, root: Path) -> None:
        catalog = open_catalog(load_config(root).catalog)
        self.keys = [str(key) for key in load_project(root).graph.assets]
        self.snapshots: dict[str, int] = {}
        self.con = duck.connect()
        for key in self.keys:
            table = catalog.load_table(key)
            snapshot = main_snapshot_id(table)
            assert snapshot is not None, key
            self.snapshots[key] = snapshot
            create_view(self.con, split_identifier(key), table, snapshot)

    def rows(self, sql: str) -> list[tuple[object, ...]]:
        return self.con.execute(sql).fetchall()

    def table(self, key: str, where: str = "true") -> list[tuple[object, ...]]:
        """Every row of `key` (matching `where`), in a canonical order."""
        return sorted(self.rows(f"SELECT * FROM {key} WHERE {where}"), key=repr)

    def count(self, key: str, where: str = "true") -> int:
        (count,) = self.rows(f"SELECT count(*) FROM {key} WHERE {where}")[0]
        assert isinstance(count, int)
        return count

    def days(self, key: str) -> set[object]:
        return {d for (d,) in self.rows(f"SELECT DISTINCT {DAY_OF[key]} FROM {key}")}


def on_day(key: str, day: str) -> str:
    return f"{DAY_OF[key]} = DATE '{day}'"


@pytest.fixture(scope="module")
def month(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Month]:
    """January 2024 backfilled into a fresh catalog, at the default size, as the README does."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("SLUICE_EXAMPLE_ROWS", raising=False)
        root = copy_example(tmp_path_factory.mktemp("month"))
        code, output = sluice(
            root, "backfill", "*", "--from", FIRST, "--to", LAST, "--parallel", "2"
        )
        yield Month(root, code, output)


def test_month_backfill_builds_every_partition_with_every_check_passing(month: Month) -> None:
    assert month.exit_code == 0, month.output
    root = month.root
    graph = load_project(root).graph
    assert {key.layer for key in graph.assets} == {"bronze", "silver", "gold"}
    assert {asset.kind for asset in graph.assets.values()} == {"python", "sql"}
    partitioned = {str(key) for key, asset in graph.assets.items() if asset.partitions}
    assert partitioned == set(ORDER_FEED)
    lake = Lake(root)
    for key, asset in graph.assets.items():
        assert asset.checks, f"{key} has no checks"
        assert lake.count(str(key)) > 0, key
    assert list_branches(open_catalog(load_config(root).catalog)) == []

    # Every day of January in the order feed, and nothing else; a day's size is the knob.
    for key in ORDER_FEED:
        assert lake.days(key) <= JANUARY, key
        assert lake.days(key) == JANUARY or key == "silver.orders_rejected", key
    assert lake.count("bronze.raw_orders") == 31 * DEFAULT_ROWS_PER_DAY
    # The star holds together across all partitions: one fact per valid order, one calendar
    # day per order day (the relationship checks below resolve every key).
    assert lake.count("gold.fct_orders") == lake.count("silver.orders")
    assert lake.rows("SELECT min(calendar_date), max(calendar_date) FROM gold.dim_date") == [
        (date(2024, 1, 1), date(2024, 1, 31))
    ]
    assert lake.count("gold.dim_date") == 31

    store = StateStore(load_config(root).state_url)
    run, steps = store.run(store.runs(limit=1)[0].run_id)  # type: ignore[misc]
    assert run.status == "succeeded"
    failed = [
        (s.asset, c.name) for s in steps for c in s.checks if not c.passed and c.severity == "error"
    ]
    assert failed == []
    assert {s.asset for s in steps} == set(lake.keys)
    for key in ORDER_FEED:
        partitions = sorted(s.partition or "" for s in steps if s.asset == key)
        assert partitions == sorted(d.isoformat() for d in JANUARY), key
    fct_checks = [c for s in steps if s.asset == "gold.fct_orders" for c in s.checks]
    assert sum(c.name.startswith("relationships") and c.passed for c in fct_checks) == 3


def test_rerunning_the_month_backfill_publishes_nothing(month: Month) -> None:
    assert month.exit_code == 0, month.output
    before = Lake(month.root).snapshots
    code, output = sluice(
        month.root, "backfill", "*", "--from", FIRST, "--to", LAST, "--parallel", "2"
    )
    assert code == 0, output
    assert "0 published, 0 failed" in output
    assert Lake(month.root).snapshots == before
    code, output = sluice(month.root, "plan", "--from", FIRST, "--to", LAST)
    assert code == 0 and "nothing to do" in output, output


def test_a_day_rebuilt_alone_gives_identical_rows(month: Month) -> None:
    assert month.exit_code == 0, month.output
    root = month.root
    before = Lake(root)
    assert before.count("bronze.raw_orders", on_day("bronze.raw_orders", REBUILT)) == (
        DEFAULT_ROWS_PER_DAY
    )

    # Rebuild the day from the source up (and the gold that reads it), on top of the month.
    code, output = sluice(root, "materialize", "raw_orders+", "--partition", REBUILT, "--force")
    assert code == 0, output

    after = Lake(root)
    catalog = open_catalog(load_config(root).catalog)
    for key in ORDER_FEED:  # really rewritten: a new snapshot that wrote exactly that partition
        assert after.snapshots[key] != before.snapshots[key], key
        provenance = snapshot_provenance(catalog.load_table(key), after.snapshots[key])
        assert provenance is not None and provenance.partition == REBUILT, key
        where = on_day(key, REBUILT)
        assert after.table(key, where) == before.table(key, where), key
    # ... and the whole lakehouse holds the same rows: no duplicates, no other day touched.
    for key in before.keys:
        assert after.table(key) == before.table(key), key
    code, output = sluice(root, "plan", "--from", FIRST, "--to", LAST)
    assert code == 0 and "nothing to do" in output, output


def test_the_example_is_deterministic_across_catalogs(tmp_path: Path, month: Month) -> None:
    """A second, fresh catalog that builds only one day holds the same rows for it."""
    assert month.exit_code == 0, month.output
    root = copy_example(tmp_path)
    code, output = sluice(root, "backfill", "*", "--from", REBUILT, "--to", REBUILT)
    assert code == 0, output
    alone, whole = Lake(root), Lake(month.root)
    for key in ORDER_FEED:
        assert alone.days(key) == {date.fromisoformat(REBUILT)}, key
        where = on_day(key, REBUILT)
        assert alone.table(key, where) == whole.table(key, where), key
    for key in ("silver.customers", "silver.products", "gold.dim_customer", "gold.dim_product"):
        assert alone.table(key) == whole.table(key), key


def test_bare_materialize_builds_the_latest_complete_day(tmp_path: Path) -> None:
    """Without a range, partitioned assets build yesterday (UTC), as the nightly schedule does:
    the feed has no last day, so that works on any date."""
    root = copy_example(tmp_path)
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    code, output = sluice(root, "materialize")
    assert code == 0, output
    lake = Lake(root)
    latest = datetime.now(UTC).date() - timedelta(days=1)
    assert lake.days("bronze.raw_orders") in ({yesterday}, {latest})  # midnight may pass
    for key in lake.keys:
        assert lake.count(key) > 0, key
    assert lake.count("gold.fct_orders") == lake.count("silver.orders")
