"""Printing a plan: the one report `sluice plan` needs, kept apart from the run reports so
that planning never imports the execution machinery (pyiceberg, SQLAlchemy, DuckDB)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orchestrator.planner import Plan


def print_plan(line: Callable[[str], None], plan: Plan) -> None:
    """Stale assets in run order with their explanations, or `nothing to do`.

    Each line goes to `line` as rich console markup (`Console.print` takes it as it is).
    """
    if not plan.steps:
        line(f"nothing to do: {len(plan.fresh)} selected assets are fresh")
        return
    line(f"{len(plan.steps)} asset(s) to materialize, in run order:")
    for number, step in enumerate(plan.steps, 1):
        line(f"  {number:>3}. {step.explanation}")
        if step.blocked:
            line(f"       [yellow]cannot run: {step.blocked}[/]")
    if plan.fresh:
        line(f"{len(plan.fresh)} selected asset(s) are fresh and will not run")
