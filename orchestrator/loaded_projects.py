"""Reusing a project this process loaded already, while the files under its `assets/` are
unchanged.

Loading imports every asset module anew (and parses SQL assets), 1-2 ms for a small project and
seconds for a large one; a long-lived process (the scheduler, a notebook) loads its project
before every run. A load is reused when every file under `assets/` (but caches and hidden
files) has the path, size and modification time it had, and the `assets` package of
`sys.modules` is still the one that load imported (no other project was loaded since). A file
modified less than `RACY_S` before that load started is never trusted: file systems stamp
modification times coarsely (a few milliseconds, up to seconds), so an edit made just after an
import may keep the stamp of the file the import read. `sluice.toml` is read at every load all
the same.

Python files outside `assets/` that asset modules import, and other files they read while being
imported, are not watched: as before, they are read again only with the modules that import
them (Python itself imports a module once per process).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orchestrator.graph import AssetGraph
    from orchestrator.schedules import Schedule

RACY_S = 2.0
"""How recent a file modification must be, relative to a load, for that load not to be reused."""

Stamp = tuple[tuple[str, int, int], ...]


@dataclass(frozen=True)
class Loaded:
    """What one load of a project's assets yielded, and the files it read them from."""

    stamp: Stamp
    started_ns: int
    """When the load started, on the wall clock that file modification times use."""
    package: ModuleType | None
    graph: AssetGraph
    schedules: tuple[Schedule, ...]


_loaded: dict[Path, Loaded] = {}


def stamp(assets_dir: Path) -> Stamp | None:
    """Path, size and modification time (ns) of every file under `assets_dir`, but `__pycache__`
    and hidden ones; None if that cannot be read completely."""
    found = []
    try:
        for folder, dirs, files in os.walk(assets_dir):
            dirs[:] = [d for d in dirs if d != "__pycache__" and not d.startswith(".")]
            for name in files:
                if name.startswith("."):
                    continue
                path = os.path.join(folder, name)
                st = os.stat(path)
                found.append((path, st.st_size, st.st_mtime_ns))
    except OSError:
        return None
    return tuple(sorted(found))


def reusable(root: Path, current: Stamp | None, package_name: str) -> Loaded | None:
    """The earlier load of `root` when its files are as it read them, else None."""
    kept = _loaded.get(root)
    if kept is None or current is None or current != kept.stamp:
        return None
    if sys.modules.get(package_name) is not kept.package:
        return None
    trusted_before = kept.started_ns - int(RACY_S * 1e9)
    if any(mtime >= trusted_before for _, _, mtime in current):
        return None
    return kept


def remember(root: Path, loaded: Loaded) -> None:
    _loaded[root] = loaded
