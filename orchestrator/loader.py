"""Project discovery: import every Python module under `assets/`, read every SQL asset.

The project root goes first on `sys.path`, so asset modules import each other as
`assets.<...>`. Loading another project in the same process first forgets the previous
project's `assets` modules. An exception raised while importing user code becomes a
`DefinitionError` naming the file and line, never a bare traceback.

Loading stays cheap for large projects and for every `sluice plan`: Python code versions are
remembered per source file content in `catalog/cache/` (see `orchestrator.code_versions`), and
what parsing SQL yields (SQL assets, SQL checks) per SQL text (see `orchestrator.sql_assets`),
so sqlglot is needed only for SQL not seen before; modules a project does not use (schedules)
are not imported. A process that loads a project again reuses its earlier load while the files
under `assets/` are unchanged (`orchestrator.loaded_projects`).
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lakehouse.errors import SluiceError
from orchestrator import loaded_projects
from orchestrator.assets import Asset
from orchestrator.code_versions import remembered_versions
from orchestrator.config import CATALOG_DIR, ProjectConfig, load_config
from orchestrator.errors import DefinitionError
from orchestrator.graph import AssetGraph, build_graph
from orchestrator.sql_assets import discover_sql_assets, remembered_sql

if TYPE_CHECKING:
    from orchestrator.schedules import Schedule

ASSETS_DIR = "assets"
PACKAGE = "assets"
CACHE_DIR = "cache"
"""Folder of `catalog/` holding caches that only save time: deleting it is always safe."""
SCHEDULES_MODULE = "orchestrator.schedules"
SQL_CACHE = "sql-assets.json"


def cache_dir(root: Path) -> Path:
    """Where a project's caches live: `catalog/cache/`, next to the embedded catalog."""
    return root / CATALOG_DIR / CACHE_DIR


@dataclass(frozen=True)
class Project:
    """A loaded, validated project: configuration, assets and their graph."""

    root: Path
    config: ProjectConfig
    graph: AssetGraph
    schedules: tuple[Schedule, ...] = ()
    """Every `Schedule` bound to a name in an asset module, by name."""


def _install_package(assets_dir: Path) -> None:
    """Make `assets` this project's package, freshly imported, whatever else is on `sys.path`.

    Bound to `assets_dir` explicitly, so another `assets` package earlier on the path (or a
    previously loaded project) can never shadow it; every load that is not a reuse of an earlier
    one (`orchestrator.loaded_projects`) re-imports, so a long-lived process (tests, the
    scheduler) always sees the code as it is on disk now.
    """
    for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
        del sys.modules[name]
    importlib.invalidate_caches()
    init = assets_dir / "__init__.py"
    if init.exists():
        spec = importlib.util.spec_from_file_location(
            PACKAGE, init, submodule_search_locations=[str(assets_dir)]
        )
    else:
        spec = importlib.machinery.ModuleSpec(PACKAGE, None, is_package=True)
        spec.submodule_search_locations = [str(assets_dir)]
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE] = module
    if spec.loader is not None:
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[PACKAGE]
            raise _import_error(exc, init) from exc


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _import_error(exc: BaseException, path: Path) -> DefinitionError:
    if isinstance(exc, SyntaxError):
        return DefinitionError(
            f"syntax error: {exc.msg}", file=exc.filename or str(path), line=exc.lineno
        )
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if f.filename.startswith(str(path.parent))
    ]
    frame = frames[-1] if frames else None
    return DefinitionError(
        f"importing {path.name} failed: {type(exc).__name__}: {exc}",
        file=frame.filename if frame else str(path),
        line=frame.lineno if frame else None,
    )


def discover_python_assets(root: Path, schedules: list[Schedule] | None = None) -> list[Asset]:
    """Import every module under `root/assets` and collect the `Asset` objects they define.

    The `Schedule` objects they define are appended to `schedules` when it is given.
    """
    assets_dir = root / ASSETS_DIR
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    _install_package(assets_dir)
    found: dict[int, Asset] = {}
    for path in sorted(assets_dir.rglob("*.py")):
        if path == assets_dir / "__init__.py":
            continue
        if "__pycache__" in path.parts or any(
            p.startswith(".") for p in path.relative_to(root).parts
        ):
            continue
        name = _module_name(path, root)
        try:
            module = importlib.import_module(name)
        except Exception as exc:
            if isinstance(exc, SluiceError):
                if exc.file is None:
                    exc.file = str(path)
                raise
            raise _import_error(exc, path) from exc
        # No module imported `orchestrator.schedules`: then none of them defines a Schedule.
        schedule_type = getattr(sys.modules.get(SCHEDULES_MODULE), "Schedule", None)
        for value in vars(module).values():
            if isinstance(value, Asset):
                found.setdefault(id(value), value)
            elif (
                schedule_type is not None
                and isinstance(value, schedule_type)
                and schedules is not None
            ):
                schedules.append(value)
    return list(found.values())


def load_project(root: Path) -> Project:
    """Load and validate the project at `root`; raises `SluiceError` on any definition problem.

    A process that loaded the project already reuses what it found while the files under
    `assets/` are unchanged (`orchestrator.loaded_projects`); `sluice.toml` is read anew."""
    root = root.resolve()
    config = load_config(root)
    if not (root / ASSETS_DIR).is_dir():
        raise DefinitionError(
            f"no {ASSETS_DIR}/ folder in {root}: run `sluice init` or pass --project DIR"
        )
    started, files = time.time_ns(), loaded_projects.stamp(root / ASSETS_DIR)
    kept = loaded_projects.reusable(root, files, PACKAGE)
    if kept is not None:
        return Project(root=root, config=config, graph=kept.graph, schedules=kept.schedules)
    schedules: list[Schedule] = []
    cache = cache_dir(root)
    with remembered_sql(cache / SQL_CACHE):
        with remembered_versions(cache / "code-versions.json"):
            assets = discover_python_assets(root, schedules)
        assets += _sql_assets(root)
    graph = build_graph(assets)
    if schedules:
        from orchestrator.schedules import validate_schedules

        found = validate_schedules(schedules, graph)
    else:
        found = ()
    if files is not None:
        package = sys.modules.get(PACKAGE)
        loaded = loaded_projects.Loaded(files, started, package, graph, found)
        loaded_projects.remember(root, loaded)
    return Project(root=root, config=config, graph=graph, schedules=found)


def _sql_assets(root: Path) -> list[Asset]:
    """Every SQL asset, with what parsing their SQL yields remembered by `remembered_sql`."""
    assets_dir = root / ASSETS_DIR
    if not any(True for _ in assets_dir.rglob("*.sql")):
        return []
    return discover_sql_assets(assets_dir)
