"""Command line of the benchmark suite: `python -m bench [NAME...] [--repeat N] [--quick]`.

Also runnable as `python bench/run.py`. Each benchmark prints its table and writes
`bench/results/<name>.json`. Exit code 1 when a benchmark failed (an error, a broken
correctness assertion), not when a target is missed: targets are reported, not enforced.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import sys
import tempfile
import traceback
from pathlib import Path

if __package__ in (None, ""):  # `python bench/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import BENCHMARKS
from bench.harness import BenchFailure, Settings, SkipBenchmark
from bench.report import Report


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Sluice benchmarks, each against its baseline."
    )
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"benchmarks to run (default: all): {BENCHMARKS}"
    )
    parser.add_argument("--repeat", type=int, help="measured runs per side (default: per bench)")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a fast check")
    parser.add_argument(
        "-o",
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a benchmark parameter, e.g. -o rows=2000000 or -o prior=100",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary projects")
    parser.add_argument("--workdir", type=Path, help="where temporary projects go")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from rich.console import Console

    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=140)
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        console.print(f"unknown benchmark(s) {unknown}; choose from {', '.join(BENCHMARKS)}")
        return 2
    if args.repeat is not None and args.repeat < 1:
        console.print("--repeat must be at least 1")
        return 2
    options = dict(item.partition("=")[::2] for item in args.option)
    failed = False
    for name in args.names or BENCHMARKS:
        module = importlib.import_module(f"bench.{name}")
        workdir = Path(tempfile.mkdtemp(prefix=f"sluice-bench-{name}-", dir=args.workdir))
        settings = Settings(repeat=args.repeat, quick=args.quick, workdir=workdir, options=options)
        report = Report(name, module.TITLE)
        console.rule(f"{name}{' (quick)' if args.quick else ''}")
        try:
            module.run(settings, report, console)
        except SkipBenchmark as exc:
            report.skipped = str(exc)
        except (BenchFailure, Exception) as exc:
            failed = True
            report.note(f"FAILED: {type(exc).__name__}: {exc}")
            console.print(f"[red]{name} failed[/]: {exc}")
            if not isinstance(exc, BenchFailure):
                console.print(traceback.format_exc())
        finally:
            if not args.keep:
                shutil.rmtree(workdir, ignore_errors=True)
            else:
                console.print(f"kept {workdir}")
        report.params.setdefault("quick", args.quick)
        report.print(console)
        path = report.save()
        shown = path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path
        console.print(f"figures written to {shown}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
