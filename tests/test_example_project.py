"""The example project in `assets/` builds end to end, every check passing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lakehouse.branches import list_branches
from lakehouse.catalog import open_catalog
from orchestrator.cli import main
from orchestrator.config import load_config
from orchestrator.loader import load_project
from orchestrator.state import StateStore

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def example(tmp_path: Path) -> Path:
    root = tmp_path / "example"
    shutil.copytree(REPO / "assets", root / "assets", ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_example_project_builds_with_every_check_passing(
    example: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--project", str(example), "materialize"]) == 0, capsys.readouterr().out
    config = load_config(example)
    catalog = open_catalog(config.catalog)
    graph = load_project(example).graph
    layers = {key.layer for key in graph.assets}
    assert layers == {"bronze", "silver", "gold"}
    kinds = {asset.kind for asset in graph.assets.values()}
    assert kinds == {"python", "sql"}
    for key, asset in graph.assets.items():
        assert asset.checks, f"{key} has no checks"
        table = catalog.load_table(str(key))
        assert table.scan().to_arrow().num_rows > 0, key
    assert list_branches(catalog) == []

    store = StateStore(config.state_url)
    run, steps = store.run(store.runs(limit=1)[0].run_id)  # type: ignore[misc]
    assert run.status == "succeeded"
    failed = [
        (s.asset, c.name) for s in steps for c in s.checks if not c.passed and c.severity == "error"
    ]
    assert failed == []
    assert {s.asset for s in steps} == {str(k) for k in graph.assets}

    capsys.readouterr()
    assert main(["--project", str(example), "plan"]) == 0
    assert "nothing to do" in capsys.readouterr().out
