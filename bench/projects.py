"""Temporary Sluice projects for the benchmarks, and the public engine calls they make.

Only the public engine is used: a project is a folder of asset files plus `sluice.toml`; it is
loaded with `load_project` and run with `materialize_selection`, or through the `sluice` CLI.
Engine imports stay inside functions so that importing this module is cheap.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

from bench.harness import BenchFailure

SLUICE_TOML = """\
[executor]
kind = "{kind}"
max_workers = {max_workers}
"""

# Synthetic raw orders, as a source delivers them: every value a string, one record in 25 a
# later redelivery of the previous order (same order_id, later ingested_at).
RAW_ORDERS_SQL = """
SELECT
    'ORD-' || lpad(CAST(o AS VARCHAR), 10, '0') AS order_id,
    'customer' || CAST((o * 7919) % 1000003 AS VARCHAR) || '@example.com' AS customer_email,
    CAST(((o * 37) % 100000) / 100.0 AS VARCHAR) AS amount,
    CAST(o % 9 + 1 AS VARCHAR) AS quantity,
    (['placed', 'PAID', 'shipped', 'Delivered', 'cancelled'])[o % 5 + 1] AS status,
    strftime(TIMESTAMP '2024-01-01' + to_seconds(o % 31536000), '%Y-%m-%d %H:%M:%S')
        AS order_ts,
    TIMESTAMP '2024-01-01' + to_seconds(o % 31536000 + 60 + (i - o) * 3600) AS ingested_at
FROM (SELECT i, CASE WHEN i % 25 = 24 THEN i - 1 ELSE i END AS o FROM range({rows}) t(i))
"""

# The same orders, typed and deduplicated: what a silver table holds.
TYPED_ORDERS_SQL = """
SELECT
    'ORD-' || lpad(CAST(i AS VARCHAR), 10, '0') AS order_id,
    md5('customer' || CAST((i * 7919) % 1000003 AS VARCHAR)) AS customer_key,
    CAST(((i * 37) % 100000) / 100.0 AS DECIMAL(12, 2)) AS amount,
    CAST(i % 9 + 1 AS INTEGER) AS quantity,
    (['placed', 'paid', 'shipped', 'delivered', 'cancelled'])[i % 5 + 1] AS status,
    TIMESTAMP '2024-01-01' + to_seconds(i % 31536000) AS order_ts
FROM range({rows}) t(i)
"""

# The silver transform of the data path: dedupe, cast, mask. `raw_orders` is the upstream.
SILVER_SQL = """
SELECT
    order_id,
    md5(customer_email) AS customer_key,
    CAST(amount AS DECIMAL(12, 2)) AS amount,
    CAST(quantity AS INTEGER) AS quantity,
    lower(status) AS status,
    CAST(order_ts AS TIMESTAMP) AS order_ts,
    ingested_at
FROM raw_orders
QUALIFY row_number() OVER (PARTITION BY order_id ORDER BY ingested_at DESC) = 1
"""

# The gold aggregation of the read path. `orders` is the upstream.
GOLD_SQL = """
SELECT
    CAST(order_ts AS DATE) AS order_date,
    status,
    count(*) AS orders,
    sum(quantity) AS items,
    sum(amount) AS revenue
FROM orders
GROUP BY ALL
"""


def write_project(
    root: Path, files: dict[str, str], *, max_workers: int = 2, kind: str = "threads"
) -> Path:
    """Write a project: `sluice.toml` (executor kind and size) and the given files, dedented."""
    root.mkdir(parents=True, exist_ok=True)
    write_executor(root, kind, max_workers)
    (root / "assets").mkdir(exist_ok=True)
    (root / "assets" / "__init__.py").touch()
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".py" and path.parent != root / "assets":
            (path.parent / "__init__.py").touch()
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    return root


def write_executor(root: Path, kind: str, max_workers: int = 2) -> None:
    """(Re)write the project's `sluice.toml`: which executor, how many workers."""
    (root / "sluice.toml").write_text(SLUICE_TOML.format(kind=kind, max_workers=max_workers))


def materialize(root: str | Path, selection: list[str], *, force: bool = False) -> dict[str, Any]:
    """`load_project` + `materialize_selection` in this process; raises unless all published.

    Returns the seconds spent in each part (wall; `cpu_s`: CPU of all threads, and of worker
    processes with the `processes` executor) and the rows each asset published.
    """
    import os
    import time

    from orchestrator.loader import load_project
    from orchestrator.materialize import materialize_selection

    def cpu_now() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    t0, cpu = time.perf_counter(), cpu_now()
    project = load_project(Path(root))
    t1 = time.perf_counter()
    summary = materialize_selection(project, selection, command="materialize", force=force)
    t2, cpu = time.perf_counter(), cpu_now() - cpu
    problems = [
        f"{key}: {getattr(r, 'status', 'blocked')}: {getattr(r, 'error', None) or r}"
        for key, r in summary.results.items()
        if getattr(r, "status", None) != "published"
    ]
    if problems:
        raise BenchFailure("materialization failed:\n" + "\n".join(problems))
    return {
        "load_s": t1 - t0,
        "run_s": t2 - t1,
        "total_s": t2 - t0,
        "cpu_s": cpu,
        "steps": len(summary.results),
        "rows": {key: getattr(r, "rows", None) for key, r in summary.results.items()},
    }


def sluice_argv(*args: str) -> list[str]:
    """The `sluice` console script of this interpreter's environment (or `-m` as a fallback)."""
    script = Path(sys.executable).parent / "sluice"
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-m", "orchestrator.cli", *args]


def open_catalog(root: Path) -> Any:
    from lakehouse.catalog import open_catalog as _open
    from orchestrator.config import load_config

    return _open(load_config(root).catalog)


def main_files(root: Path, identifier: str) -> list[str]:
    """Local paths of the data files of `identifier`'s `main` snapshot."""
    from lakehouse.branches import main_snapshot_id
    from lakehouse.reads import snapshot_files

    table = open_catalog(root).load_table(identifier)
    snapshot_id = main_snapshot_id(table)
    files = snapshot_files(table, snapshot_id) if snapshot_id is not None else []
    if files is None:
        raise BenchFailure(f"{identifier} has delete files; expected plain data files")
    return [f.removeprefix("file://") for f in files]


def main_count(root: Path, identifier: str, expression: str = "count(*)") -> Any:
    """One aggregate over what `main` of `identifier` holds, read with DuckDB."""
    import duckdb

    files = main_files(root, identifier)
    if not files:
        return 0
    query = f"SELECT {expression} FROM read_parquet($files)"  # expression: the bench's own
    return duckdb.execute(query, {"files": files}).fetchall()[0][0]
