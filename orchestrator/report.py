"""Terminal output: plans, live progress, run summaries, status, history, query results.

On a terminal a live progress display; otherwise plain lines, one per event, fit for logs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.tree import Tree

from lakehouse.audits import CheckResult
from lakehouse.branches import BranchInfo
from orchestrator.assets import AssetKey
from orchestrator.executor import Blocked
from orchestrator.graph import AssetGraph
from orchestrator.materialize import RunSummary
from orchestrator.planner import Plan, PlannedStep
from orchestrator.query import QueryResult
from orchestrator.runner import StepOutcome
from orchestrator.state import CheckRecord, RunRecord, StepRecord
from orchestrator.status import AssetStatus

STYLES = {
    "published": "green",
    "fresh": "green",
    "succeeded": "green",
    "stale": "yellow",
    "running": "cyan",
    "blocked": "yellow",
}


def _style(status: str) -> str:
    return STYLES.get(status, "red")


def _check_lines(checks: Sequence[CheckResult | CheckRecord]) -> list[str]:
    lines = []
    for check in checks:
        if check.passed:
            continue
        label = "FAIL" if check.severity == "error" else "WARN"
        detail = check.error or f"{check.failing_rows} failing row(s)"
        lines.append(f"    {label} {check.name}: {detail}")
        for sample in check.samples[:5]:
            lines.append(f"         {json.dumps(sample, default=str)}")
    return lines


def outcome_line(step: PlannedStep, result: StepOutcome | Blocked) -> str:
    if isinstance(result, Blocked):
        return f"[yellow]blocked[/]   {step.node}: {result.reason}"
    took = (result.finished_at - result.started_at).total_seconds()
    if result.status == "published":
        warns = sum(1 for c in result.checks if not c.passed)
        extra = f", {warns} warning(s)" if warns else ""
        tries = f", {result.attempts} attempts" if result.attempts > 1 else ""
        return (
            f"[green]published[/] {step.node}: {result.rows} rows, "
            f"{len(result.checks)} checks in {took:.2f}s{extra}{tries}"
        )
    if result.status == "audit_failed":
        return (
            f"[red]audit failed[/] {step.node}: main untouched; branch {result.branch} kept "
            f'(sluice query "SELECT * FROM {step.asset}" --ref {result.branch})'
        )
    return f"[red]{result.status}[/] {step.node}: {result.error}"


class RunReporter:
    """Live progress on a terminal; a plain line per finished step otherwise."""

    def __init__(self, console: Console, plan: Plan) -> None:
        self.console = console
        self.total = len(plan.steps)
        self.progress: Progress | None = None
        self.task: Any = None
        self.started = time.monotonic()
        self.done = 0
        self.failed = 0

    def __enter__(self) -> RunReporter:
        if self.console.is_terminal:
            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
            )
            self.progress.start()
            self.task = self.progress.add_task("materializing", total=self.total)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.progress is not None:
            self.progress.stop()

    def event(self, kind: str, step: PlannedStep, result: StepOutcome | Blocked | None) -> None:
        if kind == "start":
            if self.progress is not None:
                self.progress.update(self.task, description=f"running {step.node}")
            return
        assert result is not None
        self.done += 1
        if not (isinstance(result, StepOutcome) and result.status == "published"):
            self.failed += 1
        self.console.print(f"[{self.done}/{self.total}{self._eta()}] " + outcome_line(step, result))
        if isinstance(result, StepOutcome):
            for line in _check_lines(result.checks):
                self.console.print(line, markup=False)
        if self.progress is not None:
            self.progress.advance(self.task)
            self.progress.update(self.task, description=f"{self.failed} failed")

    def _eta(self) -> str:
        """Remaining time at the average pace so far (plain-line mode has no live display)."""
        if self.progress is not None or self.done >= self.total or self.total < 10:
            return ""
        remaining = (time.monotonic() - self.started) / self.done * (self.total - self.done)
        return f", ETA {remaining:.0f}s"


def print_summary(console: Console, summary: RunSummary) -> None:
    counts: dict[str, int] = {}
    for result in summary.results.values():
        status = "blocked" if isinstance(result, Blocked) else result.status
        counts[status] = counts.get(status, 0) + 1
    parts = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    verdict = "[green]ok[/]" if summary.ok else "[red]FAILED[/]"
    console.print(
        f"run {summary.run_id}: {verdict} ({parts}); details: sluice run {summary.run_id}"
    )


def print_status(console: Console, statuses: Sequence[AssetStatus]) -> None:
    table = Table(box=None)
    for column in ("asset", "state", "snapshot", "last run", "checks", "why"):
        table.add_column(column)
    for s in statuses:
        last = s.last_step
        last_text = f"{last.run_id} {last.status}" if last else "-"
        failed = sum(1 for c in s.checks if not c.passed)
        checks = f"{len(s.checks) - failed}/{len(s.checks)} passed" if s.checks else "-"
        table.add_row(
            s.asset,
            f"[{_style(s.state)}]{s.state}[/]",
            str(s.snapshot_id or "-"),
            last_text,
            checks,
            s.explanation.split(" because ", 1)[-1] if s.explanation else "",
        )
    console.print(table)


def print_runs(console: Console, runs: Sequence[RunRecord]) -> None:
    table = Table(box=None)
    for column in ("run", "command", "selection", "status", "started", "took", "steps"):
        table.add_column(column)
    for run in runs:
        took = (
            f"{(run.finished_at - run.started_at).total_seconds():.1f}s" if run.finished_at else "-"
        )
        steps = ", ".join(f"{n} {k}" for k, n in sorted(run.counts.items()))
        table.add_row(
            run.run_id,
            run.command,
            run.selection,
            f"[{_style(run.status)}]{run.status}[/]",
            run.started_at.strftime("%Y-%m-%d %H:%M:%S"),
            took,
            steps,
        )
    console.print(table)


def print_run(console: Console, run: RunRecord, steps: Sequence[StepRecord]) -> None:
    console.print(
        f"run {run.run_id} ({run.command} {run.selection}): [{_style(run.status)}]{run.status}[/]"
    )
    for step in steps:
        took = f"{step.duration_s:.2f}s" if step.duration_s is not None else "-"
        rows = f", {step.rows} rows" if step.rows is not None else ""
        attempts = f", {step.attempts} attempts" if step.attempts > 1 else ""
        node = f"{step.asset}@{step.partition}" if step.partition else step.asset
        console.print(
            f"  [{_style(step.status)}]{step.status:<12}[/] {node} {took}{rows}{attempts}"
        )
        if step.reasons:
            console.print(f"      why: {'; '.join(step.reasons)}", markup=False)
        if step.branch and step.status != "published":
            console.print(f"      branch kept: {step.branch}", markup=False)
        if step.error:
            console.print(f"      error: {step.error}", markup=False)
        for check in step.checks:
            mark = "ok  " if check.passed else ("FAIL" if check.severity == "error" else "WARN")
            console.print(f"      {mark} {check.name} ({check.failing_rows} failing)", markup=False)
        for line in _check_lines(step.checks):
            if line.strip().startswith("{"):
                console.print(line, markup=False)


def print_query(console: Console, result: QueryResult) -> None:
    table = Table(box=None)
    for column in result.columns:
        table.add_column(column)
    for row in result.rows:
        table.add_row(*("NULL" if v is None else str(v) for v in row))
    console.print(table)
    sources = ", ".join(f"{t}@{ref}" for t, ref in result.sources.items())
    console.print(f"({len(result.rows)} row(s); read {sources or 'no table'})")


def print_branches(console: Console, branches: Sequence[BranchInfo]) -> None:
    if not branches:
        console.print("no audit branches")
        return
    table = Table(box=None)
    for column in ("table", "branch", "snapshot", "run"):
        table.add_column(column)
    for info in branches:
        run_id = info.provenance.run_id if info.provenance else "-"
        table.add_row(info.identifier, info.branch, str(info.snapshot_id), run_id)
    console.print(table)
    console.print('inspect: sluice query "SELECT * FROM <table>" --ref <branch>')
    console.print("remove:  sluice branches --prune")


def print_lineage(
    console: Console,
    graph: AssetGraph,
    key: AssetKey,
    columns: Mapping[str, Sequence[str]] | None,
) -> None:
    up = Tree(f"[bold]{key}[/] upstream")

    def grow(node: Tree, current: AssetKey, edges: Any) -> None:
        for other in edges(current):
            grow(node.add(str(other)), other, edges)

    grow(up, key, graph.upstream)
    down = Tree(f"[bold]{key}[/] downstream")
    grow(down, key, graph.downstream)
    console.print(up)
    console.print(down)
    if columns is not None:
        table = Table(box=None)
        table.add_column("column")
        table.add_column("derived from")
        for column, sources in columns.items():
            table.add_row(column, ", ".join(sources) or "(computed)")
        console.print(table)
