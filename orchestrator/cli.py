"""The `sluice` command: parse arguments, call the engine, print. Nothing else lives here.

Exit codes: 0 everything published (or nothing to do), 1 something failed or was blocked,
2 usage, configuration or definition error. User mistakes never print a traceback.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.output import Output

if TYPE_CHECKING:
    from rich.console import Console

    from orchestrator.loader import Project

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sluice",
        description="Asset orchestration for an Iceberg lakehouse: every publish is audited.",
    )
    parser.add_argument(
        "--project", type=Path, default=Path("."), help="project folder (default: .)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("plan", help="what would run, and why")
    p.add_argument(
        "select", nargs="*", help="selection: name, layer.name, +name, name+, layer:X, tag:X, *"
    )
    p.add_argument("--force", action="store_true", help="plan fresh assets too")
    _partition_options(p)

    p = sub.add_parser("materialize", help="build the stale assets of the selection through WAP")
    p.add_argument("select", nargs="*")
    p.add_argument("--force", action="store_true", help="rebuild fresh assets too")
    _partition_options(p)

    p = sub.add_parser("backfill", help="build every stale partition of a date range, resumably")
    p.add_argument("select", nargs="*")
    p.add_argument("--from", dest="first", help="first partition (e.g. 2024-01-01)")
    p.add_argument("--to", dest="last", help="last partition, inclusive")
    p.add_argument("--parallel", type=int, default=1, help="partitions running at once")
    p.add_argument("--ranged", action="store_true", help="one WAP cycle per asset for the range")
    p.add_argument("--dry-run", action="store_true", help="list what would run")
    p.add_argument("--resume", metavar="ID", help="resume a recorded backfill")

    sub.add_parser("backfills", help="recorded backfills and their partition states")

    p = sub.add_parser("maintain", help="expire old snapshots, merge manifests, remove orphans")
    p.add_argument("select", nargs="*")
    p.add_argument(
        "--orphans",
        action="store_true",
        help="also delete unreferenced files older than [maintenance] orphan_min_age_hours",
    )
    p.add_argument("--dry-run", action="store_true", help="report what would go; change nothing")

    p = sub.add_parser("status", help="per asset: fresh, stale or failed; last run and checks")
    p.add_argument("select", nargs="*")

    p = sub.add_parser("runs", help="run history")
    p.add_argument("--limit", type=int, default=20)

    p = sub.add_parser("run", help="one run: assets, timings, checks, errors")
    p.add_argument("run_id")

    p = sub.add_parser("query", help="DuckDB SQL over main, or over an audit branch")
    p.add_argument("sql")
    p.add_argument("--ref", help="read tables that have this branch from it")
    p.add_argument("--limit", type=int, default=100)

    p = sub.add_parser("branches", help="audit branches kept after failures")
    p.add_argument("--prune", action="store_true", help="remove branches of finished or dead runs")

    p = sub.add_parser("lineage", help="upstream and downstream of an asset")
    p.add_argument("asset")
    p.add_argument("--columns", action="store_true", help="column lineage of a SQL asset")

    p = sub.add_parser("rollback", help="point main back at an earlier published snapshot")
    p.add_argument("asset")
    p.add_argument(
        "--to", type=int, dest="to_snapshot", help="snapshot id (default: the previous one)"
    )
    p.add_argument("--downstream", action="store_true", help="roll back downstream assets to match")

    p = sub.add_parser("init", help="write a small working project")
    p.add_argument("dir", type=Path)

    sub.add_parser("scheduler", help="run the schedules in the foreground (SIGTERM/Ctrl-C stops)")
    sub.add_parser("schedules", help="schedules with their next tick and last tick's outcome")
    return parser


def _partition_options(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("partitions (default: the latest complete partition)")
    group.add_argument("--partition", help="one partition, e.g. 2024-01-31")
    group.add_argument("--from", dest="first", help="first partition of a range")
    group.add_argument("--to", dest="last", help="last partition of a range, inclusive")


def _partitions(args: argparse.Namespace) -> Any:
    from orchestrator.errors import SelectionError
    from orchestrator.planner import PartitionSelection

    if args.partition and (args.first or args.last):
        raise SelectionError("use --partition, or --from/--to, not both")
    return PartitionSelection(partition=args.partition, first=args.first, last=args.last)


def run() -> None:
    """Entry point of the `sluice` console script: `main`, then an exit without teardown.

    With pyiceberg, pyarrow, pandas and SQLAlchemy loaded, Python's teardown (it walks and
    frees every object of every module, several garbage-collection passes) takes 0.3-0.4 s
    after each command, and frees nothing that outlives the process. Everything a normal exit
    does before it still happens: non-daemon threads are joined, idle thread pools stopped,
    every exit handler runs (queued alerts are delivered, logs flushed), the output is
    flushed; then the process ends with `main`'s exit code. The hook is registered first
    (the console script registers nothing before), so it runs after every other exit handler.
    """
    atexit.register(_end_process)
    try:
        code = main()
    except SystemExit as exc:  # argparse: --help (0), usage errors (2)
        code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
    _status[0] = code
    sys.exit(code)


_status = [1]
"""The exit code `_end_process` ends with: 1 (an uncaught exception) until `main` returned."""


def _end_process() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(_status[0])


def main(argv: Sequence[str] | None = None) -> int:
    """The `sluice` command line: parse `argv`, run the command, return its exit code."""
    args = _parser().parse_args(argv)
    from lakehouse.errors import SluiceError

    out = Output()
    try:
        return int(_dispatch(args, out))
    except SluiceError as exc:
        from rich.markup import escape

        out.console.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True)
        return _exit_code(exc)
    except KeyboardInterrupt:
        out.line("interrupted")
        return EXIT_FAILED


def _exit_code(exc: Exception) -> int:
    from lakehouse.errors import ConfigError
    from orchestrator.errors import DefinitionError, SelectionError
    from orchestrator.state import AmbiguousRunError

    usage = (ConfigError, DefinitionError, SelectionError, AmbiguousRunError)
    return EXIT_USAGE if isinstance(exc, usage) else EXIT_FAILED


def _dispatch(args: argparse.Namespace, out: Output) -> int:
    if args.command == "init":
        from orchestrator.scaffold import init_project

        written = init_project(args.dir)
        out.console.print(
            f"created {len(written)} files in {args.dir}; next: cd {args.dir} && sluice materialize"
        )
        return EXIT_OK
    from orchestrator.loader import load_project

    project = load_project(args.project)
    if args.command == "plan":
        return _cmd_plan(project, args, out)
    handler = globals()[f"_cmd_{args.command}"]
    return int(handler(project, args, out.console))


def _lakehouse(project: Project) -> Any:
    from orchestrator.materialize import open_lakehouse

    return open_lakehouse(project)


def _store(project: Project) -> Any:
    from orchestrator.state import StateStore

    return StateStore(project.config.state_url)


def _cmd_plan(project: Project, args: argparse.Namespace, out: Output) -> int:
    """Prints through `out.line`: a plan without styled lines needs no rich."""
    from orchestrator.materialize import make_plan
    from orchestrator.plan_report import print_plan

    # No lakehouse handed over: it is opened only if a table changed since the last plan.
    plan = make_plan(project, None, args.select, force=args.force, partitions=_partitions(args))
    print_plan(out.line, plan)
    return EXIT_OK


def _cmd_materialize(project: Project, args: argparse.Namespace, console: Console) -> int:
    from orchestrator.materialize import make_plan, run_plan
    from orchestrator.report import RunReporter, print_summary

    lh = _lakehouse(project)
    plan = make_plan(project, lh, args.select, force=args.force, partitions=_partitions(args))
    if not plan.steps:
        console.print(f"nothing to do: {len(plan.fresh)} selected assets are fresh")
        return EXIT_OK
    store = _store(project)
    with RunReporter(console, plan) as reporter:
        summary = run_plan(
            project,
            lh,
            store,
            plan,
            command="materialize",
            selection=" ".join(args.select) or "*",
            on_event=reporter.event,
        )
    print_summary(console, summary)
    if summary.definition_error:
        return EXIT_USAGE
    return EXIT_OK if summary.ok else EXIT_FAILED


def _cmd_backfill(project: Project, args: argparse.Namespace, console: Console) -> int:
    from orchestrator.backfill import (
        BackfillRequest,
        describe,
        plan_backfill,
        resume_request,
        run_backfill,
    )
    from orchestrator.errors import SelectionError
    from orchestrator.report import RunReporter

    if args.resume:
        if args.select or args.first or args.last:
            raise SelectionError(
                "--resume ID takes the selection and range recorded with the backfill; "
                "drop the selection, --from and --to (or start a new backfill without --resume)"
            )
        request = resume_request(_store(project), args.resume)
        request = BackfillRequest(
            request.selection,
            request.first,
            request.last,
            args.parallel,
            request.ranged or args.ranged,
        )
    else:
        if not args.select or not args.first or not args.last:
            raise SelectionError("backfill needs a selection, --from and --to (or --resume ID)")
        request = BackfillRequest(
            tuple(args.select), args.first, args.last, args.parallel, args.ranged
        )
    if args.dry_run:
        plan = plan_backfill(project, request)
        for line in describe(plan):
            console.print(line, markup=False)
        console.print(f"{len(plan.steps)} step(s) would run; {len(plan.fresh)} fresh")
        return EXIT_OK
    plan = plan_backfill(project, request)
    with RunReporter(console, plan) as reporter:
        outcome = run_backfill(project, request, backfill_id=args.resume, on_event=reporter.event)
    done = len(outcome.plan.steps) - len(outcome.failed) - len(outcome.blocked)
    blocked = f", {len(outcome.blocked)} blocked by failed upstreams" if outcome.blocked else ""
    console.print(
        f"backfill {outcome.backfill_id}: {done} published, {len(outcome.failed)} failed, "
        f"{len(outcome.plan.fresh)} already fresh{blocked}"
    )
    for node, error in outcome.failed:
        console.print(f"  failed {node}: {error}", markup=False)
    for node, upstream in outcome.blocked:
        console.print(f"  blocked {node}: upstream {upstream} did not publish", markup=False)
    if not outcome.ok:
        console.print(f"resume with: sluice backfill --resume {outcome.backfill_id}")
    if outcome.summary is not None and outcome.summary.definition_error:
        return EXIT_USAGE
    return EXIT_OK if outcome.ok else EXIT_FAILED


def _cmd_backfills(project: Project, args: argparse.Namespace, console: Console) -> int:
    store = _store(project)
    store.mark_abandoned()
    for record in store.backfills():
        counts = ", ".join(f"{n} {state}" for state, n in sorted(record.counts.items()))
        console.print(
            f"{record.backfill_id}  {record.status:<10} {record.selection} "
            f"{record.first}..{record.last}{' ranged' if record.ranged else ''}  {counts}",
            markup=False,
        )
    return EXIT_OK


def _cmd_maintain(project: Project, args: argparse.Namespace, console: Console) -> int:
    from orchestrator.maintain import maintain_project

    results = maintain_project(
        project,
        args.select or None,
        orphans=args.orphans,
        dry_run=args.dry_run,
        lh=_lakehouse(project),
    )
    expired, removed = ("would expire", "would remove") if args.dry_run else ("expired", "removed")
    for r in results:
        if r.error:
            console.print(f"failed {r.asset}: {r.error}", markup=False)
            continue
        if r.skipped:
            console.print(f"skipped {r.asset}: {r.skipped}", markup=False)
            continue
        line = (
            f"{r.asset}: {expired} {r.snapshots_expired} of {r.snapshots_before} snapshots "
            f"({r.snapshots_after} left)"
        )
        if args.orphans:
            line += (
                f"; {removed} {len(r.orphan_files)} orphan file(s), {r.orphan_bytes:,} bytes "
                f"({r.orphans_too_young} too young)"
            )
        console.print(line, markup=False)
    return EXIT_FAILED if any(r.error for r in results) else EXIT_OK


def _cmd_status(project: Project, args: argparse.Namespace, console: Console) -> int:
    from orchestrator.report import print_status
    from orchestrator.status import asset_statuses

    print_status(
        console, asset_statuses(project, _lakehouse(project), _store(project), args.select)
    )
    return EXIT_OK


def _cmd_runs(project: Project, args: argparse.Namespace, console: Console) -> int:
    from orchestrator.report import print_runs

    print_runs(console, _store(project).runs(limit=args.limit))
    return EXIT_OK


def _cmd_run(project: Project, args: argparse.Namespace, console: Console) -> int:
    from orchestrator.errors import SelectionError
    from orchestrator.report import print_run

    found = _store(project).run(args.run_id)
    if found is None:
        raise SelectionError(f"no run {args.run_id!r}; `sluice runs` lists them")
    print_run(console, *found)
    return EXIT_OK


def _cmd_query(project: Project, args: argparse.Namespace, console: Console) -> int:
    from orchestrator.query import run_query
    from orchestrator.report import print_query

    print_query(console, run_query(_lakehouse(project), args.sql, ref=args.ref, limit=args.limit))
    return EXIT_OK


def _cmd_branches(project: Project, args: argparse.Namespace, console: Console) -> int:
    from lakehouse.branches import list_branches, remove_branch
    from orchestrator.report import print_branches

    lh = _lakehouse(project)
    branches = list_branches(lh.catalog)
    if not args.prune:
        print_branches(console, branches)
        return EXIT_OK
    store = _store(project)
    store.mark_abandoned()
    running = {r.run_id for r in store.runs(limit=1000) if r.status == "running"}
    pruned = 0
    for info in branches:
        run_id = info.provenance.run_id if info.provenance else None
        if run_id in running:
            console.print(f"kept {info.identifier} {info.branch} (run {run_id} is still running)")
            continue
        if remove_branch(lh, info.identifier, info.branch):
            pruned += 1
            console.print(f"removed {info.identifier} {info.branch}")
    console.print(f"pruned {pruned} branch(es)")
    return EXIT_OK


def _cmd_lineage(project: Project, args: argparse.Namespace, console: Console) -> int:
    from orchestrator.report import print_lineage

    key = project.graph.resolve(args.asset)
    columns = None
    if args.columns:
        from orchestrator.lineage_columns import asset_column_lineage

        columns = asset_column_lineage(project, _lakehouse(project), key)
    print_lineage(console, project.graph, key, columns)
    return EXIT_OK


def _cmd_rollback(project: Project, args: argparse.Namespace, console: Console) -> int:
    from orchestrator.rollback import rollback_asset

    key = project.graph.resolve(args.asset)
    steps = rollback_asset(
        project, _lakehouse(project), key, to=args.to_snapshot, downstream=args.downstream
    )
    for step in steps:
        if step.to_snapshot is None:
            console.print(f"left {step.asset} at {step.from_snapshot}: {step.note}")
        else:
            console.print(f"rolled back {step.asset}: {step.from_snapshot} -> {step.to_snapshot}")
    return EXIT_OK if all(s.to_snapshot is not None for s in steps) else EXIT_FAILED


def _cmd_scheduler(project: Project, args: argparse.Namespace, console: Console) -> int:
    from orchestrator.scheduler import run_scheduler

    def log(line: str) -> None:
        console.print(line, markup=False, soft_wrap=True)
        console.file.flush()

    return run_scheduler(project, log=log)


def _cmd_schedules(project: Project, args: argparse.Namespace, console: Console) -> int:
    from rich.table import Table

    from orchestrator.scheduler import schedule_overview

    overview = schedule_overview(project)
    if not overview:
        console.print('no schedules: declare one in an asset module, e.g. schedule("nightly", ...)')
        return EXIT_OK
    table = Table(box=None)
    for column in ("schedule", "cron", "select", "next tick", "last tick", "outcome", "run"):
        table.add_column(column)
    for item in overview:
        sched, last = item.schedule, item.last
        table.add_row(
            sched.name + (" (catchup)" if sched.catchup else ""),
            f"{sched.cron} {sched.timezone}",
            " ".join(sched.select),
            sched.local(item.next_tick).isoformat() if item.next_tick else "-",
            sched.local(last.tick_time).isoformat() if last else "-",
            last.status if last else "-",
            (last.run_id or "-") if last else "-",
        )
    console.print(table)
    return EXIT_OK


if __name__ == "__main__":
    run()
