"""Shared benchmark machinery: settings, errors, and the measured sides' processes.

Every measured side runs in a fresh Python process, started by a small helper process
(`bench/spawner.py`, so the child's peak RSS is not inflated by the driver's). Either the
process itself is the thing measured (`run_process`: wall time and peak RSS from `os.wait4`,
so the numbers belong to that one child) or it runs a function of a benchmark module
(`run_worker`) that times its own measured section after its imports and setup, and reports
its own peak RSS (`ru_maxrss` of `RUSAGE_SELF`). Sides are interleaved (A B, B A, ...) so
that drift of the machine hits both alike, and each ratio is reported as the ratio of the
medians together with the min-max of the per-repetition ratios (`bench.report`).

This module stays cheap to import: workers import it, and a worker's peak RSS is measured.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
MARKER = "@@SLUICE-BENCH-RESULT@@ "


class SkipBenchmark(Exception):
    """Raised by a benchmark whose prerequisites are missing; the message says which."""


class BenchFailure(Exception):
    """A measured side failed or a correctness assertion did not hold."""


@dataclass(frozen=True)
class Settings:
    """What the command line chose for one benchmark run."""

    repeat: int | None
    quick: bool
    workdir: Path
    options: dict[str, str] = field(default_factory=dict)

    def repeats(self, default: int) -> int:
        return self.repeat if self.repeat is not None else default

    def option(self, key: str, default: Any) -> Any:
        """`-o KEY=VALUE` from the command line, converted to the type of `default`."""
        if key not in self.options:
            return default
        raw = self.options[key]
        if isinstance(default, bool):
            return raw.lower() in ("1", "true", "yes", "on")
        return type(default)(raw) if default is not None else raw


# ------------------------------------------------------------------------------------------
# Processes
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessResult:
    argv: tuple[str, ...]
    returncode: int
    wall_s: float
    maxrss_bytes: int
    stdout: str
    stderr: str
    payload: dict[str, Any] | None = None
    cpu_s: float = 0.0
    """User + system CPU seconds of the child (and its reaped children)."""
    foreign_share: float = 0.0
    """Share of the machine's CPU used by other processes while the child ran (0..1)."""

    def check(self, what: str) -> ProcessResult:
        if self.returncode != 0:
            tail = "\n".join((self.stdout + "\n" + self.stderr).strip().splitlines()[-30:])
            raise BenchFailure(f"{what} exited with {self.returncode}:\n{tail}")
        return self


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a measured child: the repository importable, no terminal tricks.

    Bytecode caches are allowed even if this shell disables them: users run with `.pyc` files,
    and without them every process would recompile the engine (and generated asset modules).
    """
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env.setdefault("PYTHONHASHSEED", "0")
    env["TERM"] = "dumb"
    env.pop("COLUMNS", None)
    env.pop("FORCE_COLOR", None)
    env["NO_COLOR"] = "1"
    if extra:
        env.update(extra)
    return env


_TICK = os.sysconf("SC_CLK_TCK")
CPUS = os.cpu_count() or 1
BUSY_THRESHOLD = 0.15
"""A measurement during which other processes used more than this share of the CPUs is
counted as contended (reported, not discarded)."""
CONTENTION: list[tuple[float, float]] = []
"""(wall seconds, foreign share) of every measured child, in order."""


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    try:
        with open("/proc/stat") as handle:
            fields = [int(v) for v in handle.readline().split()[1:]]
    except OSError:
        return 0.0, 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])
    return (total - idle) / _TICK, total / _TICK


def wait_quiet(limit_s: float = 300.0, sample_s: float = 1.0) -> float:
    """Wait (up to `limit_s`) until other processes leave the CPUs mostly idle.

    Called between measurements, when this driver itself is idle; returns the busy share seen
    last. On a shared machine this keeps other people's test runs out of most measurements.
    """
    waited = 0.0
    while True:
        busy0, total0 = machine_cpu()
        time.sleep(sample_s)
        busy1, total1 = machine_cpu()
        share = (busy1 - busy0) / (total1 - total0) if total1 > total0 else 0.0
        if share < BUSY_THRESHOLD or waited >= limit_s:
            return share
        waited += sample_s


class _Spawner:
    """The small process that forks every measured child (see `bench/spawner.py`)."""

    _instance: _Spawner | None = None

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-S", "-u", str(Path(__file__).with_name("spawner.py"))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    @classmethod
    def get(cls) -> _Spawner:
        if cls._instance is None or cls._instance.proc.poll() is not None:
            cls._instance = cls()
            atexit.register(cls._instance.close)
        return cls._instance

    def call(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise BenchFailure("the spawner process died")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait()


class _Child:
    """A started child; its output goes to temporary files (no pipe can fill up)."""

    def __init__(self, argv: Sequence[str], cwd: Path | None, env: dict[str, str]) -> None:
        self.argv = tuple(argv)
        self._dir = Path(tempfile.mkdtemp(prefix="sluice-bench-out-"))
        self.machine_start = machine_cpu()
        reply = _Spawner.get().call(
            {
                "op": "spawn",
                "argv": list(self.argv),
                "cwd": str(cwd or Path.cwd()),
                "env": env,
                "stdout": str(self._dir / "stdout"),
                "stderr": str(self._dir / "stderr"),
            }
        )
        self.pid: int = reply["pid"]

    def _kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)

    def wait(self, timeout: float | None) -> ProcessResult:
        timer = None
        if timeout is not None:
            timer = threading.Timer(timeout, self._kill)
            timer.start()
        try:
            reply = _Spawner.get().call({"op": "wait", "pid": self.pid})
        finally:
            if timer is not None:
                timer.cancel()
        busy1, total1 = machine_cpu()
        busy = busy1 - self.machine_start[0]
        total = total1 - self.machine_start[1]
        out = (self._dir / "stdout").read_text(errors="replace")
        err = (self._dir / "stderr").read_text(errors="replace")
        shutil.rmtree(self._dir, ignore_errors=True)
        cpu = reply["cpu_s"]
        foreign = max(0.0, busy - cpu) / total if total > 0 else 0.0
        CONTENTION.append((reply["wall_s"], foreign))
        return ProcessResult(
            argv=self.argv,
            returncode=reply["returncode"],
            wall_s=reply["wall_s"],
            maxrss_bytes=reply["maxrss_kib"] * 1024,  # Linux reports KiB
            stdout=out,
            stderr=err,
            payload=_payload(out),
            cpu_s=cpu,
            foreign_share=foreign,
        )


def _payload(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith(MARKER):
            result: dict[str, Any] = json.loads(line[len(MARKER) :])
            return result
    return None


def run_process(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float | None = 1800,
) -> ProcessResult:
    """Run one child to completion: its wall time and its own peak RSS."""
    return _Child(argv, cwd, env or child_env()).wait(timeout)


def run_together(
    argvs: Sequence[Sequence[str]],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float | None = 1800,
) -> tuple[float, list[ProcessResult]]:
    """Start several children at once; the wall time until the last one ended, and each.

    The children count as one measurement for contention: CPU used by a sibling is not
    foreign.
    """
    mark = len(CONTENTION)
    busy0, total0 = machine_cpu()
    started = time.perf_counter()
    children = [_Child(argv, cwd, env or child_env()) for argv in argvs]
    results = [child.wait(timeout) for child in children]
    wall = time.perf_counter() - started
    busy1, total1 = machine_cpu()
    del CONTENTION[mark:]
    own = sum(r.cpu_s for r in results)
    total = total1 - total0
    CONTENTION.append((wall, max(0.0, busy1 - busy0 - own) / total if total > 0 else 0.0))
    return wall, results


def worker_argv(target: str, params: dict[str, Any]) -> list[str]:
    return [sys.executable, "-m", "bench.worker", target, json.dumps(params)]


def run_worker(
    target: str,
    params: dict[str, Any],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float | None = 1800,
) -> dict[str, Any]:
    """Run `module:function` of `bench` in a fresh process; returns what it reported.

    The result carries the worker's own `maxrss_bytes` and the parent-side `process_wall_s`.
    """
    result = run_process(worker_argv(target, params), cwd=cwd, env=env, timeout=timeout)
    result.check(f"worker {target}")
    if result.payload is None:
        raise BenchFailure(f"worker {target} reported nothing:\n{result.stdout[-2000:]}")
    payload = dict(result.payload)
    payload["process_wall_s"] = result.wall_s
    payload.setdefault("maxrss_bytes", result.maxrss_bytes)
    return payload


@dataclass
class Clock:
    """Wall and CPU seconds (all threads of this process) of a measured block."""

    wall: float = 0.0
    cpu: float = 0.0


@contextmanager
def clock() -> Iterator[Clock]:
    result = Clock()
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        yield result
    finally:
        result.wall = time.perf_counter() - wall
        result.cpu = time.process_time() - cpu


def alternate(repeat: int, sides: dict[str, Callable[[int], None]], quiet: bool = True) -> None:
    """Run every side `repeat` times, alternating the order (A B, B A, ...).

    Before each run, waits a while for other processes to leave the CPUs idle (`wait_quiet`).
    """
    names = list(sides)
    for i in range(repeat):
        for name in names if i % 2 == 0 else names[::-1]:
            if quiet:
                wait_quiet()
            sides[name](i)
