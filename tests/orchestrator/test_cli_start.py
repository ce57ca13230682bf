"""`sluice` starts without the heavy libraries: checked on the modules a fresh process imports
(behaviour, not timings)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.mark.parametrize(
    "imports, light",
    [
        ("asset", ("pyiceberg", "duckdb")),
        # The context's types bring DuckDB and Arrow (the context holds a connection), never
        # pyiceberg.
        ("AssetContext, DailyPartitions, asset", ("pyiceberg",)),
    ],
)
def test_planning_a_cached_python_project_needs_no_pyiceberg(
    tmp_path: Path, imports: str, light: tuple[str, ...]
) -> None:
    root = tmp_path / "project"
    (root / "assets").mkdir(parents=True)
    (root / "assets" / "a.py").write_text(
        f"from orchestrator import {imports}\n\n@asset(layer='bronze')\n"
        "def a(ctx):\n    return None\n"
    )
    code = (
        "from pathlib import Path\n"
        "from orchestrator.loader import load_project\n"
        "from orchestrator.materialize import make_plan\n"
        f"plan = make_plan(load_project(Path({str(root)!r})), None, [])\n"
        "assert [s.asset for s in plan.steps] == ['bronze.a']\n"
    )
    loaded = _loaded_after(code)
    assert not set(light) & set(loaded)


CHECKED_PROJECT = {
    "assets/bronze/src.py": (
        "import pyarrow as pa\n"
        "from orchestrator import asset, checks\n\n"
        "@asset(layer='bronze', checks=[checks.expression('id > 0'),\n"
        "                               checks.sql('SELECT * FROM this WHERE id IS NULL')])\n"
        "def src(ctx):\n"
        "    return pa.table({'id': [1, 2, 3]})\n"
    ),
    "assets/gold/top.sql": (
        "-- checks: expression(id >= 0); sql(SELECT * FROM this WHERE id > 99)\n"
        "SELECT id FROM bronze.src\n"
    ),
}
PLAN_PROBE = (
    "import contextlib, io, sys\n"
    "from orchestrator.cli import main\n"
    "out = io.StringIO()\n"
    "with contextlib.redirect_stdout(out):\n"
    "    assert main(['--project', sys.argv[1], 'plan']) == 0\n"
    "print(repr(out.getvalue()))\n"
)


@pytest.fixture(scope="module")
def materialized(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with SQL checks in Python and in SQL, materialized and planned once."""
    root = tmp_path_factory.mktemp("checked") / "project"
    for rel, text in CHECKED_PROJECT.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for command in ("materialize", "plan"):
        subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", "--project", str(root), command],
            cwd=REPO,
            env=env,
            capture_output=True,
            check=True,
        )
    return root


def _plan_output_and_loaded(root: Path) -> tuple[str, list[str]]:
    probe = f"import sys\nsys.argv[1:] = [{str(root)!r}]\n{PLAN_PROBE}"
    report = f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = (
        subprocess.run(
            [sys.executable, "-c", f"{probe}\nimport json\n{report}"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .splitlines()
    )
    return ast.literal_eval(out[-2]), json.loads(out[-1])


def test_planning_an_unchanged_project_with_nothing_stale_needs_no_rich(
    materialized: Path,
) -> None:
    printed, loaded = _plan_output_and_loaded(materialized)
    assert printed == "nothing to do: 2 selected assets are fresh\n"
    assert "rich" not in loaded
    assert "pyiceberg" not in loaded and "sqlalchemy" not in loaded


def test_planning_an_unchanged_project_parses_no_sql(materialized: Path) -> None:
    """SQL assets and SQL checks were parsed by the first plan: sqlglot is not even imported."""
    printed, loaded = _plan_output_and_loaded(materialized)
    assert printed.startswith("nothing to do")
    assert "sqlglot" not in loaded


@pytest.mark.parametrize(
    "text",
    [
        "nothing to do: 12 selected assets are fresh",
        "    3. gold.top: upstream bronze.src is stale",
        "       [yellow]cannot run: upstream never published[/]",
        "emoji :thumbs_up: codes",
        "tab\tseparated",
        "non-ascii caf\u00e9",
        "wide " + "x" * 300,
        "",
    ],
)
def test_a_plain_line_prints_exactly_as_the_console_prints_it(
    text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from orchestrator.output import Output

    Output().line(text)
    plain = capsys.readouterr().out
    Output().console.print(text)
    assert plain == capsys.readouterr().out
