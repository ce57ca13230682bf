"""The `sluice` process ends without interpreter teardown, but with everything else of an exit:
its exit code, its whole output, its threads and its exit handlers."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

from orchestrator.cli import main

REPO = Path(__file__).resolve().parents[2]


def _sluice(
    *args: str, code: str | None = None, cwd: Path = REPO
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-m", "orchestrator.cli", *args]
    if code is not None:
        argv = [sys.executable, "-c", code, *args]
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_exit_codes_are_those_of_the_command(tmp_path: Path) -> None:
    assert _sluice("--help").returncode == 0
    bad = _sluice("no-such-command")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
    missing = _sluice("--project", str(tmp_path), "plan")
    assert missing.returncode == 2 and "no assets/ folder" in missing.stdout
    assert "Traceback" not in missing.stdout + missing.stderr


def test_the_whole_output_is_written_when_piped() -> None:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.suppress(SystemExit):
        main(["--help"])
    done = _sluice("--help")
    assert done.stdout == printed.getvalue() and done.stdout.startswith("usage: sluice")


def test_threads_and_exit_handlers_of_the_command_still_finish(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    code = (
        "import atexit, threading, time\n"
        "from pathlib import Path\n"
        "import orchestrator.cli as cli\n"
        f"marks = Path({str(marks)!r})\n"
        "def mark(text):\n"
        "    with marks.open('a') as f:\n"
        "        f.write(text + '\\n')\n"
        "def late():\n"
        "    time.sleep(0.5)\n"
        "    mark('thread')\n"
        "command = cli.main\n"
        "def main(argv=None):\n"
        "    atexit.register(mark, 'handler')\n"
        "    threading.Thread(target=late).start()\n"
        "    return command(argv)\n"
        "cli.main = main\n"
        "cli.run()\n"
    )
    done = _sluice("--help", code=code)
    assert done.returncode == 0, done.stderr
    assert marks.read_text().splitlines() == ["thread", "handler"]


def test_an_uncaught_error_exits_with_one_and_its_traceback() -> None:
    code = (
        "import orchestrator.cli as cli\n"
        "def broken(argv=None):\n"
        "    raise RuntimeError('a bug')\n"
        "cli.main = broken\n"
        "cli.run()\n"
    )
    done = _sluice("plan", code=code)
    assert done.returncode == 1
    assert "RuntimeError: a bug" in done.stderr
