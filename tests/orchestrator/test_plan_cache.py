"""The caches behind fast planning never make a stale asset look fresh.

Published state is cached by each table's metadata location: commits made behind Sluice's back
(a raw pyiceberg append, a rollback) must show up in the next plan. Code versions are cached by
source content: an edit with the same size and modification time must still count. SQL checks
are remembered by their text: a remembered check equals the one built, and an edited one fails
exactly as it would without the cache.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pyarrow as pa
import pytest
from conftest import ProjectDir

import lakehouse.tables
from lakehouse.audits import Check
from lakehouse.branches import main_snapshot_id
from lakehouse.catalog import open_catalog
from lakehouse.errors import SluiceError
from lakehouse.lru import LruCache
from orchestrator import code_versions, loader, plan_cache, sql_assets
from orchestrator.code_versions import CodeVersionCache, reference_code_version
from orchestrator.config import load_config
from orchestrator.loader import cache_dir, load_project
from orchestrator.materialize import (
    PUBLISHED_CACHE,
    make_plan,
    materialize_selection,
    open_lakehouse,
)
from orchestrator.plan_cache import catalog_pointers, sqlite_pointers

CHAIN = {
    "assets/bronze/src.py": """
        import pyarrow as pa
        from orchestrator import asset

        @asset(layer="bronze")
        def src(ctx):
            return pa.table({"id": [1, 2, 3]})
        """,
    "assets/silver/mid.py": """
        from orchestrator import asset

        @asset(layer="silver")
        def mid(ctx, src):
            return ctx.sql("SELECT id * 2 AS id FROM src")
        """,
    "assets/gold/top.sql": """
        -- checks: not_null(id)
        SELECT id FROM silver.mid
        """,
}

TRICKY = '''
import functools

def deco(*args, **kwargs):
    return lambda fn: fn

@deco(
    "multi-line decorator",
    option=1,
)
def decorated(ctx, a):
    """Docstring."""
    # a comment
    return a  # trailing


def docstring_only(ctx):
    """Only a docstring."""


async def coroutine(ctx):
    return 1


def outer(ctx):
    """Outer docstring."""

    @deco("inner")
    def inner(x):
        """Inner docstring: part of outer's code."""
        return x

    return inner


class Holder:
    @staticmethod
    def method(ctx, b):
        """Method docstring."""
        return b + 1
'''


def _import(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fresh(project: ProjectDir) -> list[str]:
    """Load the project and plan everything; the names of the stale assets."""
    loaded = load_project(project.root)
    plan = make_plan(loaded, None, [])
    return [step.asset for step in plan.steps]


def _as_another_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plan from now on as a process that did not publish (the CLI runs in this one): the
    tables this one published are not in memory, only in the cache file and the catalog."""
    monkeypatch.setattr(plan_cache, "_published", LruCache(64))


# ---- code versions -------------------------------------------------------------------------


def test_the_fast_code_version_equals_the_definition(tmp_path: Path) -> None:
    path = tmp_path / "tricky_module.py"
    path.write_text(TRICKY)
    module = _import(path, "tricky_module")
    inner = module.outer(None)
    functions = [
        module.decorated,
        module.docstring_only,
        module.coroutine,
        module.outer,
        inner,
        module.Holder.method,
    ]
    for fn in functions:
        cache = CodeVersionCache()
        fast = cache.version(fn)
        assert fast is not None, fn
        assert fast == reference_code_version(fn), fn.__qualname__
        assert code_versions.python_code_version(fn) == fast
    # The nested function's docstring and decorator are part of its enclosing function's code.
    edited = TRICKY.replace("Inner docstring: part of outer's code.", "Changed inner doc.")
    path.write_text(edited)
    assert CodeVersionCache().version(module.outer) != reference_code_version(inner)
    changed = CodeVersionCache().version(module.outer)
    path.write_text(TRICKY)
    assert changed != CodeVersionCache().version(module.outer)


def test_functions_the_fast_path_cannot_place_use_the_definition(tmp_path: Path) -> None:
    path = tmp_path / "wrapped_module.py"
    path.write_text(
        "import functools\n\n"
        "def inner(ctx):\n    return 1\n\n"
        "@functools.wraps(inner)\ndef wrapper(*a, **k):\n    return inner(*a, **k)\n\n"
        "anonymous = lambda ctx: 2\n"
    )
    module = _import(path, "wrapped_module")
    cache = CodeVersionCache()
    assert cache.version(module.wrapper) is None
    assert cache.version(module.anonymous) is None
    assert code_versions.python_code_version(module.wrapper) == reference_code_version(
        module.wrapper
    )
    namespace: dict[str, object] = {}
    exec("def from_string(ctx):\n    return 3\n", namespace)
    fn = namespace["from_string"]
    assert callable(fn)
    assert code_versions.python_code_version(fn) == reference_code_version(fn)


def test_an_edit_with_the_same_size_and_mtime_changes_the_code_version(
    project: ProjectDir,
) -> None:
    project.write({"assets/bronze/src.py": CHAIN["assets/bronze/src.py"]})
    path = project.root / "assets/bronze/src.py"
    before = load_project(project.root).graph.assets[
        load_project(project.root).graph.resolve("src")
    ]
    assert (cache_dir(project.root) / "code-versions.json").exists()
    stat = path.stat()
    text = path.read_text()
    path.write_text(text.replace("[1, 2, 3]", "[1, 2, 4]"))  # same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same modification time
    assert path.stat().st_size == stat.st_size
    sys.modules.pop("assets.bronze.src", None)
    graph = load_project(project.root).graph
    after = graph.assets[graph.resolve("src")]
    assert after.code_version != before.code_version
    assert after.code_version == reference_code_version(after.fn)  # type: ignore[arg-type]


def test_a_corrupt_cache_file_is_ignored(project: ProjectDir) -> None:
    project.write({"assets/bronze/src.py": CHAIN["assets/bronze/src.py"]})
    graph = load_project(project.root).graph
    expected = graph.assets[graph.resolve("src")].code_version
    (cache_dir(project.root) / "code-versions.json").write_text("{not json")
    graph = load_project(project.root).graph
    assert graph.assets[graph.resolve("src")].code_version == expected


# ---- published state --------------------------------------------------------------------


def test_pointers_read_from_sqlite_match_pyiceberg(project: ProjectDir) -> None:
    project.write(CHAIN)
    assert project.sluice("materialize").code == 0
    config = load_config(project.root)
    catalog = open_catalog(config.catalog)
    expected = {
        f"{ns[0]}.{name}": catalog.load_table((ns[0], name)).metadata_location
        for ns in catalog.list_namespaces()
        for _, name in catalog.list_tables(ns)
    }
    assert len(expected) == 3
    assert sqlite_pointers(config.catalog) == expected
    assert catalog_pointers(open_lakehouse(load_project(project.root))) == expected


def test_an_unchanged_catalog_is_planned_without_loading_a_table(
    project: ProjectDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.write(CHAIN)
    assert project.sluice("materialize").code == 0
    assert _fresh(project) == []  # fills the cache

    def refuse(*args: object) -> None:
        raise AssertionError("a table was loaded although nothing changed")

    monkeypatch.setattr(lakehouse.tables, "load_table", refuse)
    assert _fresh(project) == []


def test_tables_this_process_published_are_planned_without_loading_them(
    project: ProjectDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.write(CHAIN)
    assert materialize_selection(load_project(project.root), ["*"], command="materialize").ok

    def refuse(*args: object) -> None:
        raise AssertionError("a table this process just published was loaded")

    with monkeypatch.context() as patched:
        patched.setattr(lakehouse.tables, "load_table", refuse)
        assert _fresh(project) == []
    catalog = open_catalog(load_config(project.root).catalog)
    catalog.load_table("silver.mid").append(pa.table({"id": pa.array([99], pa.int64())}))
    assert _fresh(project) == ["silver.mid", "gold.top"]  # another writer's commit is seen


def test_a_raw_pyiceberg_append_makes_downstream_stale(project: ProjectDir) -> None:
    project.write(CHAIN)
    assert project.sluice("materialize").code == 0
    assert _fresh(project) == []
    catalog = open_catalog(load_config(project.root).catalog)
    table = catalog.load_table("silver.mid")
    table.append(pa.table({"id": pa.array([99], pa.int64())}))  # behind Sluice's back
    # Its head snapshot now carries no Sluice provenance: what it holds was never published by
    # Sluice, so it and everything downstream is stale (exactly as without any cache).
    assert _fresh(project) == ["silver.mid", "gold.top"]


def test_a_rollback_outside_sluice_is_seen(project: ProjectDir) -> None:
    project.write(CHAIN)
    assert project.sluice("materialize").code == 0
    assert project.sluice("materialize", "--force").code == 0
    assert _fresh(project) == []
    catalog = open_catalog(load_config(project.root).catalog)
    table = catalog.load_table("bronze.src")
    head = main_snapshot_id(table)
    assert head is not None
    parent = table.snapshot_by_id(head).parent_snapshot_id  # type: ignore[union-attr]
    while parent is not None:  # back to the first publish, before the forced one
        snapshot = table.snapshot_by_id(parent)
        assert snapshot is not None
        if (
            snapshot.summary is not None
            and "sluice.run-id" in snapshot.summary.additional_properties
        ):
            break
        parent = snapshot.parent_snapshot_id
    assert parent is not None
    table.manage_snapshots().set_current_snapshot(snapshot_id=parent).commit()
    assert _fresh(project) == ["silver.mid", "gold.top"]


def test_a_dropped_table_is_never_published(
    project: ProjectDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.write(CHAIN)
    assert project.sluice("materialize").code == 0
    _as_another_process(monkeypatch)
    assert _fresh(project) == []
    open_catalog(load_config(project.root).catalog).drop_table("silver.mid")
    assert _fresh(project) == ["silver.mid", "gold.top"]
    cached = json.loads((cache_dir(project.root) / PUBLISHED_CACHE).read_text())
    assert "silver.mid" not in cached["tables"]


def test_a_forged_cache_entry_for_an_old_location_is_not_used(
    project: ProjectDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.write(CHAIN)
    assert project.sluice("materialize").code == 0
    _as_another_process(monkeypatch)
    assert _fresh(project) == []
    path = cache_dir(project.root) / PUBLISHED_CACHE
    cached = json.loads(path.read_text())
    cached["tables"]["bronze.src"]["location"] = "file:///somewhere/else.metadata.json"
    cached["tables"]["bronze.src"]["code_version"] = "forged"
    path.write_text(json.dumps(cached))
    assert _fresh(project) == []  # the entry did not match the location: the table was read
    assert json.loads(path.read_text())["tables"]["bronze.src"]["code_version"] != "forged"


def test_sql_query_cache_is_keyed_by_the_query_text(project: ProjectDir) -> None:
    project.write(CHAIN)
    first = load_project(project.root).graph
    top = first.assets[first.resolve("top")]
    assert (cache_dir(project.root) / "sql-assets.json").exists()
    again = load_project(project.root).graph
    assert again.assets[again.resolve("top")] == top
    project.write(
        {"assets/gold/top.sql": "-- checks: not_null(id)\nSELECT id + 1 AS id FROM silver.mid\n"}
    )
    edited = load_project(project.root).graph
    assert edited.assets[edited.resolve("top")].code_version != top.code_version


# ---- SQL checks ----------------------------------------------------------------------------

CHECKED = {
    "assets/bronze/src.py": """
        import pyarrow as pa
        from orchestrator import asset, checks

        @asset(
            layer="bronze",
            checks=[
                checks.expression("id > 0"),
                checks.expression("id < 100", severity="warn"),
                checks.sql("SELECT * FROM this WHERE id IS NULL"),
            ],
        )
        def src(ctx):
            return pa.table({"id": [1, 2, 3]})
        """,
    "assets/gold/top.sql": """
        -- checks: expression(id >= 0); sql(SELECT * FROM this WHERE id > 99, severity='warn')
        SELECT id FROM bronze.src
        """,
}


def _checks(project: ProjectDir) -> dict[str, tuple[Check, ...]]:
    graph = load_project(project.root).graph
    return {str(key): asset.checks for key, asset in graph.assets.items()}


def _refuse_sql_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any parse of SQL text by sqlglot fail (Sluice imports sqlglot where it parses)."""
    import sqlglot

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("SQL was parsed although it did not change")

    for name in ("parse", "parse_one", "transpile"):
        monkeypatch.setattr(sqlglot, name, refuse)


def test_sql_checks_are_remembered_as_they_were_built(
    project: ProjectDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.write(CHECKED)
    built = _checks(project)
    assert [c.severity for c in built["bronze.src"]] == ["error", "warn", "error"]
    _refuse_sql_parsing(monkeypatch)
    assert _checks(project) == built  # equal checks, severities included, none parsed
    cached = json.loads((cache_dir(project.root) / loader.SQL_CACHE).read_text())
    assert len(cached["checks"]) == 5  # each text once; "warn" is not part of the key


def test_an_edited_sql_check_fails_as_it_would_without_the_cache(
    project: ProjectDir, make_project: Callable[[str], ProjectDir]
) -> None:
    project.write(CHECKED)
    _checks(project)  # remembered
    broken = {
        "assets/bronze/src.py": CHECKED["assets/bronze/src.py"].replace("id > 0", "id >> > 0")
    }
    project.write(broken)
    with pytest.raises(SluiceError) as cached_error:
        load_project(project.root)
    fresh = make_project("fresh").write({**CHECKED, **broken})
    with pytest.raises(SluiceError) as fresh_error:
        load_project(fresh.root)
    assert "cannot parse expression 'id >> > 0'" in str(cached_error.value)
    assert str(cached_error.value) == str(fresh_error.value).replace(
        str(fresh.root), str(project.root)
    )
    assert cached_error.value.file == str(project.root / "assets/bronze/src.py")


def test_sql_checks_remembered_by_another_sqlglot_version_are_built_again(
    project: ProjectDir,
) -> None:
    project.write(CHECKED)
    built = _checks(project)
    path = cache_dir(project.root) / loader.SQL_CACHE
    cached = json.loads(path.read_text())
    for entry in cached["checks"].values():
        entry[1] = "forged"  # the name a forged entry would give its check
    path.write_text(json.dumps(cached))
    assert {c.name for cs in _checks(project).values() for c in cs} == {"forged"}  # used
    cached["version"] = f"{sql_assets.QueryCache.FORMAT}/0.0.0"
    path.write_text(json.dumps(cached))
    assert _checks(project) == built


def test_the_sqlglot_version_is_read_without_importing_sqlglot() -> None:
    code = (
        "import sys\n"
        "from orchestrator.sql_assets import sqlglot_version\n"
        "version = sqlglot_version()\n"
        "assert 'sqlglot' not in sys.modules\n"
        "import sqlglot\n"
        "assert version == sqlglot.__version__ != '', version\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])
