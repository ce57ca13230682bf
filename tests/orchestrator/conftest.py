"""Fixtures for whole projects: write asset files into a temp project, run the CLI on it."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.cli import main


@dataclass
class CliResult:
    code: int
    out: str


class ProjectDir:
    """A temporary Sluice project; `write` adds or replaces files, `sluice` runs the CLI."""

    def __init__(self, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.root = root
        self._capsys = capsys
        (root / "assets").mkdir(parents=True, exist_ok=True)

    def write(self, files: dict[str, str]) -> ProjectDir:
        for rel, text in files.items():
            path = self.root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text).lstrip("\n"))
        return self

    def remove(self, rel: str) -> None:
        (self.root / rel).unlink()

    def sluice(self, *args: str) -> CliResult:
        self._capsys.readouterr()
        code = main(["--project", str(self.root), *args])
        captured = self._capsys.readouterr()
        return CliResult(code, captured.out + captured.err)


@pytest.fixture
def project(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> ProjectDir:
    return ProjectDir(tmp_path / "project", capsys)


@pytest.fixture
def make_project(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Callable[[str], ProjectDir]:
    def make(name: str) -> ProjectDir:
        return ProjectDir(tmp_path / name, capsys)

    return make


def snapshots(root: Path) -> dict[str, int | None]:
    """Main snapshot id of every table in the project's catalog."""
    from lakehouse.branches import iter_tables, main_snapshot_id
    from lakehouse.catalog import open_catalog
    from orchestrator.config import load_config

    catalog = open_catalog(load_config(root).catalog)
    return {
        ident: main_snapshot_id(catalog.load_table(ident)) for ident in sorted(iter_tables(catalog))
    }
