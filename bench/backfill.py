"""backfill: N daily partitions of a three-layer pipeline, Sluice backfill vs a raw script.

The pipeline (a generated project, every layer partitioned by day, every layer audited):

- `bronze.raw_events` (Python asset): per day, `partition_rows` synthetic events generated
  deterministically from the partition window, every value a string as a source sends it,
  one record in 25 a later redelivery of the previous one. Checks: `not_null` (id, time),
  `row_count(min=1)`.
- `silver.events` (SQL asset): dedupe (latest `ingested_at` per `event_id`), cast, mask.
  Checks: `not_null`, `unique(event_id)`, `accepted_values(kind)`, `amount >= 0`.
- `gold.daily_kpis` (Python asset): per day and kind, events, users and revenue.
  Checks: `not_null`, `unique(event_date, kind)`, `events > 0`.

Sluice side, the whole CLI process users run, on a fresh catalog each time:
`sluice backfill '*' --from D1 --to DN` with `--parallel 1`, `--parallel 2`, or `--ranged`
(one WAP cycle per asset for the whole range). Per partition that is 3 WAP cycles (branch,
write, audit on the partition, publish), so 3N cycles in all.

Raw side (`bench/backfill_raw.py`), a whole Python process on a fresh SQLite catalog too, the
same queries, the same tables (same schema, same `day` partition spec), no audits, no
branches, no state store:

- `raw per-partition`: per day and table, DuckDB writes the result as one Parquet file in the
  table's location (`relation.write_parquet`) and pyiceberg registers it (`add_files`), one
  commit per table and day (3N commits), as a daily job run over the range would.
- `raw batched`: per table, one DuckDB query over the whole range written with
  `partition_by` day (one file per day) and one `add_files` commit: the fastest honest way.

Targets from the issue: per-partition mode within 3x of the raw script, ranged mode within
1.5x. Each mode is compared with the raw variant of the same shape (per-partition with
per-partition, ranged with batched); the cross ratios are shown for information. Peak memory
must not grow with the number of partitions: the same Sluice modes also run over the first
quarter of the range, and peak RSS of the full run over that of the quarter run is reported.
The raw batched script runs over the quarter too, for comparison: every layer streams on both
sides, but silver's dedupe is a window over the whole range, which DuckDB holds in memory, so
part of the growth is the pipeline's own, whoever runs it.

After every run the three tables (Sluice's and the raw script's) are read back from `main`:
row counts, distinct keys and partitions must match the generated data exactly, no row may be
duplicated, and Sluice's figures must equal the raw script's.

Options: `-o days=365` (partitions; 30 with `--quick`), `-o partition_rows=10000` (bronze rows
per day; 2,000 with `--quick`), `-o modes=p1,p2,ranged,raw,raw_batched` (sides to run),
`-o memory=false` (skip the quarter-range runs). One repetition unless `--repeat N`.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

from bench.harness import BenchFailure, Settings, alternate, run_process, worker_argv
from bench.projects import sluice_argv, write_project
from bench.report import Report, mb

TITLE = "backfill of a 3-layer daily pipeline: sluice backfill modes vs raw pyiceberg + DuckDB"
START = date(2024, 1, 1)
KINDS = ("view", "click", "cart", "purchase", "refund")
TIMEOUT_S = 4 * 3600.0

# One row per (day in [$start, $end), i < $rows); record i % 25 == 24 redelivers record i - 1.
BRONZE_SQL = """
SELECT
    strftime(d, '%Y%m%d') || '-' || lpad(CAST(o AS VARCHAR), 7, '0') AS event_id,
    'user-' || CAST((o * 7919 + dayofyear(d) * 104729) % 5000 AS VARCHAR) AS user_id,
    (['View', 'CLICK', 'cart', 'Purchase', 'refund'])[o % 5 + 1] AS kind,
    CAST(((o * 37) % 100000) / 100.0 AS VARCHAR) AS amount,
    d + to_seconds((o * 7) % 86400) AS event_ts,
    d + INTERVAL 1 DAY + to_seconds(i) AS ingested_at
FROM generate_series(
    CAST($start AS TIMESTAMP), CAST($end AS TIMESTAMP) - INTERVAL 1 DAY, INTERVAL 1 DAY
) AS days(d)
CROSS JOIN (
    SELECT i, CASE WHEN i % 25 = 24 THEN i - 1 ELSE i END AS o
    FROM range(CAST($rows AS BIGINT)) AS t(i)
) AS r
"""

SILVER_SQL = """
SELECT
    event_id,
    md5(user_id) AS user_key,
    lower(kind) AS kind,
    CAST(amount AS DECIMAL(12, 2)) AS amount,
    event_ts,
    ingested_at
FROM raw_events
QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY ingested_at DESC) = 1
"""

GOLD_SQL = """
SELECT
    CAST(event_ts AS DATE) AS event_date,
    kind,
    count(*) AS events,
    count(DISTINCT user_key) AS users,
    sum(amount) AS revenue
FROM events
GROUP BY ALL
"""

BRONZE = '''
from orchestrator import DailyPartitions, asset, checks

SQL = """{sql}"""
ROWS = {rows}


@asset(
    layer="bronze",
    partitions=DailyPartitions(start="{start}", column="event_ts"),
    checks=[checks.not_null("event_id", "event_ts"), checks.row_count(min=1)],
)
def raw_events(ctx):
    """Synthetic events of the partition's day(s), as the source delivers them."""
    params = {{
        "start": ctx.partition.start.replace(tzinfo=None),
        "end": ctx.partition.end.replace(tzinfo=None),
        "rows": ROWS,
    }}
    return ctx.sql(SQL, params=params)
'''

SILVER = """\
-- description: Events, deduplicated (latest redelivery wins), typed, user masked.
-- partitions: daily(start={start}, column=event_ts)
-- checks: not_null(event_id); not_null(user_key); not_null(event_ts); unique(event_id); \
accepted_values(kind, [{kinds}]); expression(amount >= 0)
{sql}"""

GOLD = '''
from orchestrator import DailyPartitions, asset, checks

SQL = """{sql}"""


@asset(
    layer="gold",
    partitions=DailyPartitions(start="{start}", column="event_date"),
    checks=[
        checks.not_null("event_date", "kind"),
        checks.unique("event_date", "kind"),
        checks.expression("events > 0"),
    ],
)
def daily_kpis(ctx, events):
    """Per day and kind: events, distinct users, revenue."""
    return ctx.sql(SQL)
'''

# (identifier, partition column, upstream view name its query reads, query)
LAYERS = (
    ("bronze.raw_events", "event_ts", None, BRONZE_SQL),
    ("silver.events", "event_ts", "raw_events", SILVER_SQL),
    ("gold.daily_kpis", "event_date", "events", GOLD_SQL),
)

# What is read back from each table's `main` to check it: (rows, distinct keys, partitions,
# content sums). Only constant text; the file list is a bound parameter.
FIGURES_SQL = {
    "bronze.raw_events": "SELECT count(*), count(DISTINCT event_id), "
    "count(DISTINCT CAST(event_ts AS DATE)), sum(hash(event_id, kind, amount)) "
    "FROM read_parquet($files)",
    "silver.events": "SELECT count(*), count(DISTINCT event_id), "
    "count(DISTINCT CAST(event_ts AS DATE)), CAST(sum(amount) AS VARCHAR) "
    "FROM read_parquet($files)",
    "gold.daily_kpis": "SELECT count(*), count(DISTINCT (event_date, kind)), "
    "count(DISTINCT event_date), CAST(sum(events) AS VARCHAR) || '/' || "
    "CAST(sum(users) AS VARCHAR) || '/' || CAST(sum(revenue) AS VARCHAR) "
    "FROM read_parquet($files)",
}


def project(root: Path, rows: int) -> Path:
    start = START.isoformat()
    return write_project(
        root,
        {
            "assets/bronze/raw_events.py": BRONZE.format(sql=BRONZE_SQL, rows=rows, start=start),
            "assets/silver/events.sql": SILVER.format(
                start=start, kinds=", ".join(f"'{k}'" for k in KINDS), sql=SILVER_SQL.strip()
            ),
            "assets/gold/daily_kpis.py": GOLD.format(sql=GOLD_SQL, start=start),
        },
    )


# ---- checks ------------------------------------------------------------------------------


def figures(catalog: Any, identifier: str) -> tuple[Any, ...]:
    """What `main` of `identifier` holds (see `FIGURES_SQL`), read with DuckDB."""
    import duckdb

    table = catalog.load_table(identifier)
    tasks = list(table.scan().plan_files())
    if any(task.delete_files for task in tasks):
        raise BenchFailure(f"{identifier} has delete files; expected plain data files")
    files = [task.file.file_path.removeprefix("file://") for task in tasks]
    if not files:
        return (0, 0, 0, None)
    return tuple(duckdb.execute(FIGURES_SQL[identifier], {"files": files}).fetchall()[0])


def raw_catalog(root: Path) -> tuple[str, str]:
    (root / "warehouse").mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'catalog.db'}", f"file://{root / 'warehouse'}"


def verify(catalog: Any, days: int, rows: int, what: str) -> dict[str, tuple[Any, ...]]:
    """Every table holds exactly the generated data: no lost and no duplicated row."""
    redelivered = (rows + 1) // 25  # i % 25 == 24 for i < rows
    found = {identifier: figures(catalog, identifier) for identifier, *_ in LAYERS}
    bronze, silver, gold = (found[identifier] for identifier, *_ in LAYERS)
    distinct = days * (rows - redelivered)
    expected = {
        "bronze rows, distinct ids, days": (bronze[:3], (days * rows, distinct, days)),
        "silver rows, distinct ids, days": (silver[:3], (distinct, distinct, days)),
        "gold rows, distinct keys, days": (gold[:3], (days * len(KINDS), days * len(KINDS), days)),
        "gold events = silver rows": (int(str(gold[3]).split("/")[0]), distinct),
    }
    wrong = {name: got for name, (got, want) in expected.items() if got != want}
    if wrong:
        raise BenchFailure(
            f"{what}: tables differ from {days} partitions x {rows} rows: "
            + "; ".join(
                f"{name}: got {got}, expected {expected[name][1]}" for name, got in wrong.items()
            )
        )
    return found


# ---- driver ------------------------------------------------------------------------------

MODES = {
    "p1": ("sluice per-partition p1", ("--parallel", "1")),
    "p2": ("sluice per-partition p2", ("--parallel", "2")),
    "ranged": ("sluice ranged", ("--ranged",)),
}
RAW = {"raw": ("raw per-partition", False), "raw_batched": ("raw batched", True)}
QUARTER = "(1/4 range)"


def run(settings: Settings, report: Report, console: Any) -> None:
    days = settings.option("days", 30 if settings.quick else 365)
    rows = settings.option("partition_rows", 2_000 if settings.quick else 10_000)
    repeat = settings.repeats(1)
    chosen = [
        m.strip() for m in settings.option("modes", "p1,p2,ranged,raw,raw_batched").split(",")
    ]
    unknown = sorted(set(chosen) - set(MODES) - set(RAW))
    if unknown:
        raise BenchFailure(f"unknown modes {unknown}; choose from {[*MODES, *RAW]}")
    memory = settings.option("memory", True)
    quarter = max(1, days // 4)
    report.params.update(
        {
            "partitions": days,
            "rows_per_partition": rows,
            "first": START.isoformat(),
            "last": (START + timedelta(days=days - 1)).isoformat(),
            "quarter_partitions": quarter,
            "modes": chosen,
            "repeat": repeat,
        }
    )
    reference: dict[str, tuple[Any, ...]] = {}

    def agree(found: dict[str, tuple[Any, ...]], what: str, span: int) -> None:
        if span != days:
            return
        if not reference:
            reference.update(found)
        elif found != reference:
            raise BenchFailure(f"{what} published other content: {found}, before: {reference}")

    def sluice_side(mode: str, span: int) -> Any:
        label, flags = MODES[mode]
        side = label if span == days else f"{label} {QUARTER}"

        def measure(i: int) -> None:
            from bench.projects import open_catalog

            root = project(settings.workdir / f"{mode}_{span}_{i}", rows)
            last = START + timedelta(days=span - 1)
            argv = sluice_argv(
                "--project", str(root), "backfill", "*",
                "--from", START.isoformat(), "--to", last.isoformat(), *flags,
            )  # fmt: skip
            r = run_process(argv, cwd=root, timeout=TIMEOUT_S).check(f"sluice backfill ({side})")
            agree(verify(open_catalog(root), span, rows, side), side, span)
            report.add_run(side, r.wall_s, cpu_s=r.cpu_s, rss_bytes=r.maxrss_bytes)
            report.add(side, "per_partition_s", r.wall_s / span)
            console.print(
                f"  {side:<36} {r.wall_s:8.2f} s  {mb(r.maxrss_bytes):6,.0f} MB  "
                f"({r.wall_s / span * 1000:.0f} ms/partition)"
            )

        return measure

    def raw_side(mode: str, span: int) -> Any:
        label, batched = RAW[mode]
        side = label if span == days else f"{label} {QUARTER}"

        def measure(i: int) -> None:
            from pyiceberg.catalog import load_catalog

            uri, warehouse = raw_catalog(settings.workdir / f"{mode}_{span}_{i}")
            params = {
                "uri": uri,
                "warehouse": warehouse,
                "first": START.isoformat(),
                "days": span,
                "rows": rows,
                "batched": batched,
            }
            r = run_process(worker_argv("backfill_raw:raw_backfill", params), timeout=TIMEOUT_S)
            r.check(side)
            catalog = load_catalog("raw", type="sql", uri=uri, warehouse=warehouse)
            agree(verify(catalog, span, rows, side), side, span)
            report.add_run(side, r.wall_s, cpu_s=r.cpu_s, rss_bytes=r.maxrss_bytes)
            report.add(side, "per_partition_s", r.wall_s / span)
            if r.payload:
                report.add(side, "in_process_s", r.payload["seconds"])
                if span == days:
                    report.params[f"{mode}_commits"] = r.payload["commits"]
            console.print(
                f"  {side:<36} {r.wall_s:8.2f} s  {mb(r.maxrss_bytes):6,.0f} MB  "
                f"({r.wall_s / span * 1000:.0f} ms/partition)"
            )

        return measure

    sides: dict[str, Any] = {}
    for mode in chosen:
        sides[mode] = sluice_side(mode, days) if mode in MODES else raw_side(mode, days)
    if memory and quarter < days:
        for mode in ("p1", "ranged"):
            if mode in chosen:
                sides[f"{mode}/4"] = sluice_side(mode, quarter)
        if "raw_batched" in chosen:
            sides["raw_batched/4"] = raw_side("raw_batched", quarter)
    failures: list[str] = []

    def guarded(name: str, measure: Any) -> Any:
        """A failed side is recorded and the others still run; the benchmark fails at the end."""

        def call(i: int) -> None:
            try:
                measure(i)
            except BenchFailure as exc:
                failures.append(f"{name}: {exc}")
                console.print(f"  [red]{name} failed[/]: {exc}")

        return call

    console.print(
        f"{days} partitions x {rows:,} rows, 3 layers; sides: {', '.join(sides)}; "
        f"{repeat} repetition(s)"
    )
    alternate(repeat, {name: guarded(name, measure) for name, measure in sides.items()})

    targets = {"p1": ("raw", 3.0), "p2": ("raw", 3.0), "ranged": ("raw_batched", 1.5)}
    for mode, (raw, target) in targets.items():
        report.ratio(
            f"time {MODES[mode][0]} / {RAW[raw][0]}",
            (MODES[mode][0], "time_s"),
            (RAW[raw][0], "time_s"),
            target=target,
        )
    for mode, (raw, _) in targets.items():
        other = next(r for r in RAW if r != raw)
        report.ratio(
            f"time {MODES[mode][0]} / {RAW[other][0]}",
            (MODES[mode][0], "time_s"),
            (RAW[other][0], "time_s"),
        )
    for mode in ("p1", "ranged"):
        label = MODES[mode][0]
        report.ratio(
            f"peak RSS {label}: {days} / {quarter} partitions",
            (label, "peak_rss_mb"),
            (f"{label} {QUARTER}", "peak_rss_mb"),
            target=1.25,
        )
    raw_label = RAW["raw_batched"][0]
    report.ratio(
        f"peak RSS {raw_label}: {days} / {quarter} partitions",
        (raw_label, "peak_rss_mb"),
        (f"{raw_label} {QUARTER}", "peak_rss_mb"),
    )
    for mode in ("p1", "ranged"):
        label = MODES[mode][0]
        report.ratio(
            f"time per partition {label}: {days} / {quarter} partitions",
            (label, "per_partition_s"),
            (f"{label} {QUARTER}", "per_partition_s"),
        )
    report.note(
        "all sides are whole processes on a fresh catalog (interpreter start and imports "
        "included); Sluice runs the `sluice backfill` CLI"
    )
    report.note(
        "after every run each table's main was read back: exact row counts, no duplicated key, "
        "every partition present, and Sluice's content equal to the raw script's"
    )
    report.note(
        "both sides stream every layer's result (bronze's query and the raw script's writes "
        "alike); the silver dedupe (a window over the whole range) holds the range in DuckDB "
        "on both sides, so the raw script's own peak RSS grows with the range too (shown for "
        "comparison with the memory target)"
    )
    ranged_label = MODES["ranged"][0]
    above: dict[int, float] = {}
    for span, suffix in ((days, ""), (quarter, f" {QUARTER}")):
        pair = ((f"{ranged_label}{suffix}", "peak_rss_mb"), (f"{raw_label}{suffix}", "peak_rss_mb"))
        if all(measure in report.measures for measure in pair):
            above[span] = report.stat(*pair[0]).median - report.stat(*pair[1]).median
    if len(above) == 2:
        report.note(
            f"peak RSS of {ranged_label} above the {raw_label} script's: {above[days]:,.0f} MB "
            f"over {days} partitions, {above[quarter]:,.0f} MB over {quarter}"
        )
    if failures:
        raise BenchFailure(f"{len(failures)} side(s) failed: " + " | ".join(failures))
