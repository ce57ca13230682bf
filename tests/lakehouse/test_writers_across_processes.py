"""Many writers of different partitions of one table at once, across threads and processes:
every one publishes, exactly once, without starving, and without raising the retry budget."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import date
from pathlib import Path
from typing import Any

from lakehouse.branches import Lakehouse, list_branches
from lakehouse.config import CatalogConfig
from lakehouse.provenance import published_history

WORKER = textwrap.dedent(
    """
    import json, os, sys, threading, time
    from concurrent.futures import ThreadPoolExecutor
    from datetime import date, datetime, timedelta, timezone
    from pathlib import Path

    import pyarrow as pa

    from lakehouse import audits, wap
    from lakehouse.branches import Lakehouse
    from lakehouse.catalog import open_catalog
    from lakehouse.config import CatalogConfig
    from lakehouse.locks import TableLocks
    from lakehouse.provenance import Provenance
    from lakehouse.windows import RowWindow

    config, lock_dir, days, rendezvous, total = sys.argv[1:]
    lh = Lakehouse(
        open_catalog(CatalogConfig.model_validate_json(config)), TableLocks(Path(lock_dir))
    )
    writes = {}
    audited = set()
    real_audit, real_write = wap.audit_snapshot, wap.write_branch

    def audit_after_all_wrote(*args, **kwargs):
        # Every writer of both processes writes its branch on the same main before any
        # audits (and publishes): all but one lose their first publish.
        if threading.get_ident() not in audited:
            audited.add(threading.get_ident())
            Path(rendezvous, f"{os.getpid()}-{threading.get_ident()}").touch()
            deadline = time.monotonic() + 60
            while len(list(Path(rendezvous).iterdir())) < int(total):
                assert time.monotonic() < deadline, "the other writers never wrote"
                time.sleep(0.005)
        return real_audit(*args, **kwargs)

    def counted_write(*args, **kwargs):
        writes[kwargs["branch"]] = writes.get(kwargs["branch"], 0) + 1
        return real_write(*args, **kwargs)

    wap.audit_snapshot, wap.write_branch = audit_after_all_wrote, counted_write

    def one(day):
        start = datetime.fromisoformat(day).replace(tzinfo=timezone.utc)
        window = RowWindow("d", start, start + timedelta(days=1), day)
        ids = [int(day[-2:]) * 100 + n for n in range(50)]
        data = pa.table({"d": [date.fromisoformat(day)] * len(ids), "id": ids})
        try:
            result = wap.write_audit_publish(
                lh,
                "race.daily",
                data.to_reader(),
                branch=f"sluice-{day}",
                provenance=Provenance(run_id=f"w{day}", code_version="v1", partition=day),
                checks=[audits.unique("id"), audits.row_count(min=50, max=50)],
                window=window,
            )
            outcome = result.status
        except BaseException as exc:
            outcome = f"error {type(exc).__name__}: {exc}"
        return {"day": day, "outcome": outcome}

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, days.split(",")))
    for result in results:
        result["writes"] = writes.get(f"sluice-{result['day']}", 0)
        print(json.dumps(result), flush=True)
    """
)


def test_two_processes_of_four_writers_each_all_publish_each_exactly_once(
    lh: Lakehouse, catalog_config: CatalogConfig, tmp_path: Path, wap: Any, rows: Any
) -> None:
    # The table exists (with one partition) before the race: creating it is not the subject.
    seed_day = date(2024, 3, 1)
    wap("race.daily", {"d": [seed_day], "id": [0]}, "seed")
    days = [f"2024-03-{d:02d}" for d in range(2, 10)]
    rendezvous = tmp_path / "written"
    rendezvous.mkdir()
    lock_dir = tmp_path / "catalog" / "locks"  # the same lock dir as the `lh` fixture
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WORKER,
                catalog_config.model_dump_json(),
                str(lock_dir),
                ",".join(mine),
                str(rendezvous),
                str(len(days)),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for mine in (days[:4], days[4:])
    ]
    try:
        outputs = [proc.communicate(timeout=180) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()

    results: dict[str, dict[str, Any]] = {}
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        for line in out.splitlines():
            record = json.loads(line)
            results[record["day"]] = record
    assert sorted(results) == days
    assert all(r["outcome"] == "published" for r in results.values()), results
    # One writer won the first publish; each of the others re-applied exactly once: holding
    # the table lock (shared by both processes through its lock file), it could not lose again.
    assert sorted(r["writes"] for r in results.values()) == [1] + [2] * (len(days) - 1), results

    table = lh.table("race.daily")
    published = sorted(p.run_id for _, p in published_history(table))
    assert published == sorted(["seed"] + [f"w{d}" for d in days])  # each exactly once
    found = rows("race.daily")
    assert len(found) == 1 + 50 * len(days)  # nothing lost, nothing duplicated
    for day in days:
        ids = sorted(r["id"] for r in found if r["d"] == date.fromisoformat(day))
        assert ids == [int(day[-2:]) * 100 + n for n in range(50)]
    assert list_branches(lh.catalog) == []
