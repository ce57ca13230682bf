"""Sluice benchmarks: each one measures Sluice and a baseline side by side, in the same run.

Run `python -m bench [NAME...] [--repeat N] [--quick]`; see `bench/run.py` and the README.
Every measured side runs in a fresh subprocess (`bench/worker.py`), so timings do not share
warm caches and each side's peak RSS is its own.
"""

BENCHMARKS = (
    "overhead",
    "wap_floor",
    "history",
    "data_path",
    "read_path",
    "plan_10k",
    "concurrent",
    "backfill",
    "cli_start",
)
