"""A process reuses a project it loaded while the files under `assets/` are unchanged, and
sees every change to them."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from conftest import ProjectDir

from orchestrator.loader import load_project

COUNTED = """
from pathlib import Path

from orchestrator import asset, checks

with open(Path(__file__).parents[2] / "imports.log", "a") as log:  # one line per import
    log.write("imported\\n")


@asset(layer="silver", checks=[checks.not_null("{column}")])
def orders(ctx):
    return ctx.sql("SELECT 1 AS id")
"""


OLD = time.time() - 3600


def _age(root: Path) -> None:
    """Make every file under `assets/` look modified an hour ago (at one and the same time)."""
    for path in (root / "assets").rglob("*"):
        os.utime(path, (OLD, OLD))


def _imports(root: Path) -> int:
    log = root / "imports.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def _checks(root: Path) -> list[str]:
    [orders] = load_project(root).graph.assets.values()
    return [c.name for c in orders.checks]


def _project(project: ProjectDir, column: str = "id") -> Path:
    project.write({"assets/silver/orders.py": COUNTED.replace("{column}", column)})
    _age(project.root)
    return project.root


def test_an_unchanged_project_is_not_imported_again(project: ProjectDir) -> None:
    root = _project(project)
    first = load_project(root)

    second = load_project(root)

    assert _imports(root) == 1
    assert second.graph is first.graph


def test_sluice_toml_is_read_at_every_load(project: ProjectDir) -> None:
    root = _project(project)
    load_project(root)
    (root / "sluice.toml").write_text("[executor]\nmax_workers = 3\n")

    assert load_project(root).config.executor.max_workers == 3
    assert _imports(root) == 1


def test_an_edited_added_or_removed_file_is_seen(project: ProjectDir) -> None:
    root = _project(project)
    assert _checks(root) == ["not_null(id)"]
    _project(project, column="ref")  # edited: another size, another time

    assert _checks(root) == ["not_null(ref)"]
    project.write({"assets/silver/notes.txt": "read by nothing"})
    _age(root)

    assert _checks(root) == ["not_null(ref)"]
    assert _imports(root) == 3
    project.remove("assets/silver/notes.txt")

    assert _checks(root) == ["not_null(ref)"]
    assert _imports(root) == 4


def test_an_edit_that_keeps_size_and_time_is_seen_when_made_just_after_a_load(
    project: ProjectDir,
) -> None:
    project.write({"assets/silver/orders.py": COUNTED.replace("{column}", "id")})
    path = project.root / "assets" / "silver" / "orders.py"
    load_project(project.root)
    before = path.stat()
    # A coarse clock stamps the edit with the time the file had when it was imported.
    project.write({"assets/silver/orders.py": COUNTED.replace("{column}", "ix")})
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size

    assert _checks(project.root) == ["not_null(ix)"]


def test_loading_another_project_meanwhile_makes_the_next_load_import_again(
    make_project: Callable[[str], ProjectDir],
) -> None:
    first, other = make_project("first"), make_project("other")
    root = _project(first)
    _project(other, column="other_id")
    load_project(root)

    assert _checks(other.root) == ["not_null(other_id)"]
    assert _checks(root) == ["not_null(id)"]
    assert _imports(root) == 2
