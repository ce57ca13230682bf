"""Printing a plan: the one report `sluice plan` needs, kept apart from the run reports so
that planning never imports the execution machinery (pyiceberg, SQLAlchemy, DuckDB)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

    from orchestrator.planner import Plan


def print_plan(console: Console, plan: Plan) -> None:
    """Stale assets in run order with their explanations, or `nothing to do`."""
    if not plan.steps:
        console.print(f"nothing to do: {len(plan.fresh)} selected assets are fresh")
        return
    console.print(f"{len(plan.steps)} asset(s) to materialize, in run order:")
    for number, step in enumerate(plan.steps, 1):
        console.print(f"  {number:>3}. {step.explanation}")
        if step.blocked:
            console.print(f"       [yellow]cannot run: {step.blocked}[/]")
    if plan.fresh:
        console.print(f"{len(plan.fresh)} selected asset(s) are fresh and will not run")
