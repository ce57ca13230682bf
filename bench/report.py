"""Benchmark figures: statistics over repetitions, ratios and limits checked against their
targets, the table printed, and the JSON results file (with the machine and the versions).

Imported by the driver only: a worker, whose peak RSS is measured, never needs it.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.harness import BUSY_THRESHOLD, CONTENTION, REPO_ROOT

RESULTS_DIR = REPO_ROOT / "bench" / "results"

# ------------------------------------------------------------------------------------------
# Statistics
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stat:
    values: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def min(self) -> float:
        return min(self.values)

    @property
    def max(self) -> float:
        return max(self.values)

    def as_dict(self) -> dict[str, Any]:
        return {
            "median": self.median,
            "min": self.min,
            "max": self.max,
            "n": len(self.values),
            "values": list(self.values),
        }


# ------------------------------------------------------------------------------------------
# Reports
# ------------------------------------------------------------------------------------------


@dataclass
class Ratio:
    label: str
    numerator: tuple[str, str]
    denominator: tuple[str, str]
    target: float | None = None
    op: str = "<="


@dataclass
class Limit:
    label: str
    measure: tuple[str, str]
    limit: float
    op: str = "<"


def _holds(value: float, op: str, limit: float) -> bool:
    return {"<": value < limit, "<=": value <= limit, ">": value > limit, ">=": value >= limit}[op]


class Report:
    """The figures of one benchmark: measures per side, ratios, absolute limits, notes."""

    def __init__(self, name: str, title: str) -> None:
        self.name = name
        self.title = title
        self.params: dict[str, Any] = {}
        self.measures: dict[tuple[str, str], list[float]] = {}
        self.ratios: list[Ratio] = []
        self.limits: list[Limit] = []
        self.notes: list[str] = []
        self.skipped: str | None = None
        self.started_at = datetime.now(UTC)
        self.load_before = os.getloadavg()
        self._contention_mark = len(CONTENTION)

    def add(self, side: str, metric: str, value: float) -> None:
        self.measures.setdefault((side, metric), []).append(float(value))

    def add_run(
        self,
        side: str,
        seconds: float,
        *,
        cpu_s: float | None = None,
        rss_bytes: float | None = None,
    ) -> None:
        """One repetition of a side: wall time, CPU time (all threads), peak RSS."""
        self.add(side, "time_s", seconds)
        if cpu_s is not None:
            self.add(side, "cpu_s", cpu_s)
        if rss_bytes is not None:
            self.add(side, "peak_rss_mb", mb(rss_bytes))

    def stat(self, side: str, metric: str) -> Stat:
        return Stat(tuple(self.measures[(side, metric)]))

    def ratio(
        self,
        label: str,
        numerator: tuple[str, str],
        denominator: tuple[str, str],
        *,
        target: float | None = None,
        op: str = "<=",
    ) -> None:
        self.ratios.append(Ratio(label, numerator, denominator, target, op))

    def limit(self, label: str, measure: tuple[str, str], limit: float, op: str = "<") -> None:
        self.limits.append(Limit(label, measure, limit, op))

    def note(self, text: str) -> None:
        self.notes.append(text)

    def _ratio_values(self, r: Ratio) -> tuple[float, list[float]]:
        num, den = self.measures[r.numerator], self.measures[r.denominator]
        median = statistics.median(num) / statistics.median(den)
        paired = [a / b for a, b in zip(num, den, strict=False) if b]
        return median, paired

    def contention(self) -> dict[str, Any]:
        seen = CONTENTION[self._contention_mark :]
        shares = [share for _, share in seen]
        return {
            "processes": len(seen),
            "contended": sum(1 for share in shares if share > BUSY_THRESHOLD),
            "threshold": BUSY_THRESHOLD,
            "max_foreign_share": max(shares) if shares else 0.0,
            "median_foreign_share": statistics.median(shares) if shares else 0.0,
        }

    def as_dict(self) -> dict[str, Any]:
        ratios = []
        for r in self.ratios:
            if r.numerator not in self.measures or r.denominator not in self.measures:
                continue
            median, paired = self._ratio_values(r)
            ratios.append(
                {
                    "label": r.label,
                    "numerator": list(r.numerator),
                    "denominator": list(r.denominator),
                    "ratio_of_medians": median,
                    "paired_min": min(paired) if paired else None,
                    "paired_max": max(paired) if paired else None,
                    "target": None if r.target is None else f"{r.op} {r.target}",
                    "met": None if r.target is None else _holds(median, r.op, r.target),
                }
            )
        limits = []
        for lim in self.limits:
            if lim.measure not in self.measures:
                continue
            value = self.stat(*lim.measure).median
            limits.append(
                {
                    "label": lim.label,
                    "measure": list(lim.measure),
                    "median": value,
                    "target": f"{lim.op} {lim.limit}",
                    "met": _holds(value, lim.op, lim.limit),
                }
            )
        return {
            "name": self.name,
            "title": self.title,
            "started_at": self.started_at.isoformat(),
            "finished_at": datetime.now(UTC).isoformat(),
            "skipped": self.skipped,
            "params": self.params,
            "environment": environment(),
            "load_average_before": list(self.load_before),
            "load_average_after": list(os.getloadavg()),
            "contention": self.contention(),
            "measures": {
                f"{side}/{metric}": Stat(tuple(values)).as_dict()
                for (side, metric), values in self.measures.items()
            },
            "ratios": ratios,
            "limits": limits,
            "notes": self.notes,
        }

    def save(self) -> Path:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / f"{self.name}.json"
        path.write_text(json.dumps(self.as_dict(), indent=2, default=str) + "\n")
        return path

    def print(self, console: Any) -> None:
        from rich.table import Table

        data = self.as_dict()
        if self.skipped:
            console.print(f"[bold]{self.name}[/]: SKIPPED: {self.skipped}")
            return
        table = Table(title=f"{self.name}: {self.title}", title_justify="left")
        for column in ("side", "metric", "median", "min", "max", "n"):
            numeric = column in ("median", "min", "max", "n")
            table.add_column(column, justify="right" if numeric else "left")
        for (side, metric), values in self.measures.items():
            s = Stat(tuple(values))
            table.add_row(
                side,
                metric,
                fmt(metric, s.median),
                fmt(metric, s.min),
                fmt(metric, s.max),
                str(len(values)),
            )
        console.print(table)
        if data["ratios"] or data["limits"]:
            verdicts = Table(show_header=True, title_justify="left")
            for column in ("check", "value", "paired min-max", "target", "met"):
                verdicts.add_column(column)
            for r in data["ratios"]:
                paired = (
                    f"{r['paired_min']:.3f}-{r['paired_max']:.3f}"
                    if r["paired_min"] is not None
                    else ""
                )
                verdicts.add_row(
                    r["label"],
                    f"{r['ratio_of_medians']:.3f}x",
                    paired,
                    r["target"] or "(info)",
                    _verdict(r["met"]),
                )
            for lim in data["limits"]:
                verdicts.add_row(
                    lim["label"],
                    fmt(lim["measure"][1], lim["median"]),
                    "",
                    lim["target"],
                    _verdict(lim["met"]),
                )
            console.print(verdicts)
        for text in self.notes:
            console.print(f"  note: {text}")
        c = data["contention"]
        console.print(
            f"  machine: {c['processes']} measured processes, {c['contended']} with other "
            f"processes using > {c['threshold']:.0%} of the CPUs (max "
            f"{c['max_foreign_share']:.0%}, median {c['median_foreign_share']:.0%})"
        )


def _verdict(met: bool | None) -> str:
    if met is None:
        return ""
    return "[green]yes[/]" if met else "[red]NO[/]"


def fmt(metric: str, value: float) -> str:
    if metric.endswith("_per_s"):
        return f"{value:,.0f}/s"
    if metric.endswith("_s"):
        return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.3f} s"
    if metric.endswith("_mb"):
        return f"{value:,.0f} MB"
    return f"{value:,.3f}"


def mb(nbytes: float) -> float:
    return nbytes / 1_000_000


# ------------------------------------------------------------------------------------------
# Environment
# ------------------------------------------------------------------------------------------


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    if shutil.which("git") is None:
        return None
    done = subprocess.run(
        ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    return done.stdout.strip() if done.returncode == 0 else None


def environment() -> dict[str, Any]:
    dirty = _git("status", "--porcelain", "--", "lakehouse", "orchestrator")
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "engine_dirty": bool(dirty),
        "packages": {
            p: _version(p)
            for p in ("sluice-lakehouse", "pyiceberg", "duckdb", "pyarrow", "dagster", "pydantic")
        },
    }
