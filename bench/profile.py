"""Profile one Sluice run in process, to see where a benchmark's time goes.

    python -m bench.profile PROJECT [SELECT...] [--force] [--plan-only] [--warm] [--cprofile]

Loads the project and materializes the selection (or, with `--plan-only`, only loads and
plans it). Steps run inline on the main thread (the thread pool is swapped for an inline
executor, in this process only) so that the profiler sees them. `--warm` runs the same thing
once, unprofiled, first. Prints pyinstrument's report (`pip install -e '.[bench]'`), or with
`--cprofile` the top of cProfile's cumulative listing.
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import Future
from pathlib import Path
from typing import Any


class InlineExecutor:
    """Runs each step as soon as it is submitted, on the calling thread."""

    def __init__(self, max_workers: int, step: Any = None) -> None:
        from orchestrator.runner import run_step

        self._step = step or run_step
        self.capacity = max_workers

    def submit(self, spec: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(self._step(spec))
        except BaseException as exc:
            future.set_exception(exc)
        return future

    def shutdown(self) -> None:
        pass


def _work(root: Path, selection: list[str], force: bool, plan_only: bool) -> Any:
    from orchestrator.loader import load_project
    from orchestrator.materialize import make_plan, materialize_selection, open_lakehouse

    project = load_project(root)
    if plan_only:
        return make_plan(project, open_lakehouse(project), selection, force=force)
    return materialize_selection(project, selection, command="materialize", force=force)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("project", type=Path)
    parser.add_argument("select", nargs="*")
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--plan-only", action="store_true")
    parser.add_argument("--warm", action="store_true", help="run once unprofiled first")
    parser.add_argument("--cprofile", action="store_true")
    parser.add_argument("--limit", type=int, default=40, help="cProfile rows")
    args = parser.parse_args(argv)

    import orchestrator.executor

    orchestrator.executor.make_executor = lambda kind, n: InlineExecutor(n)  # type: ignore[assignment]
    root = args.project.resolve()
    if args.warm:
        _work(root, args.select, args.force, args.plan_only)
    if args.cprofile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.enable()
        _work(root, args.select, args.force, args.plan_only)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(args.limit)
        return 0
    from pyinstrument import Profiler

    sampler = Profiler(interval=0.0005)
    sampler.start()
    _work(root, args.select, args.force, args.plan_only)
    sampler.stop()
    sys.stdout.write(sampler.output_text(unicode=False, color=False, show_all=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
