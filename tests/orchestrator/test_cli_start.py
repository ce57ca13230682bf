"""`sluice` starts without the heavy libraries: checked on the modules a fresh process imports
(behaviour, not timings)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HEAVY = ("duckdb", "pyiceberg", "pyarrow", "sqlglot", "sqlalchemy", "pydantic", "rich", "croniter")
REPO = Path(__file__).resolve().parents[2]


def _loaded_after(code: str, cwd: Path = REPO) -> list[str]:
    """Which of `HEAVY` a fresh interpreter has imported after running `code`."""
    report = f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    probe = f"{code}\nimport json, sys\n{report}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=cwd, env=env, capture_output=True, text=True, check=True
    ).stdout
    loaded: list[str] = json.loads(out.strip().splitlines()[-1])
    return loaded


def test_importing_the_cli_imports_no_heavy_library() -> None:
    assert _loaded_after("import orchestrator.cli") == []


def test_help_imports_no_heavy_library() -> None:
    code = (
        "import contextlib, io\n"
        "from orchestrator.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main(['--help'])\n"
    )
    assert _loaded_after(code) == []


def test_the_public_api_is_lazy_but_complete() -> None:
    assert _loaded_after("import orchestrator") == []
    code = (
        "import orchestrator\n"
        "from orchestrator import *\n"
        "assert set(orchestrator.__all__) <= set(dir(orchestrator))\n"
        "from orchestrator.assets import asset as real\n"
        "assert orchestrator.asset is real\n"
        "import orchestrator.checks\n"
        "assert orchestrator.checks is sys.modules['orchestrator.checks']\n"
    )
    assert "duckdb" in _loaded_after("import sys\n" + code)  # checks need DuckDB: imported now


def test_an_unknown_name_is_an_attribute_error() -> None:
    import orchestrator

    try:
        orchestrator.no_such_name  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_planning_a_cached_python_project_needs_no_pyiceberg(tmp_path: Path) -> None:
    root = tmp_path / "project"
    (root / "assets").mkdir(parents=True)
    (root / "assets" / "a.py").write_text(
        "from orchestrator import asset\n\n@asset(layer='bronze')\ndef a(ctx):\n    return None\n"
    )
    code = (
        "from pathlib import Path\n"
        "from orchestrator.loader import load_project\n"
        "from orchestrator.materialize import make_plan\n"
        f"plan = make_plan(load_project(Path({str(root)!r})), None, [])\n"
        "assert [s.asset for s in plan.steps] == ['bronze.a']\n"
    )
    loaded = _loaded_after(code)
    assert "pyiceberg" not in loaded
    assert "duckdb" not in loaded
