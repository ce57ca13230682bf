"""Tests for `orchestrator.config`: `sluice.toml`, defaults and path resolution."""

from __future__ import annotations

import textwrap
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy.engine import make_url

from lakehouse.errors import ConfigError
from orchestrator.config import load_config


def write_config(root: Path, text: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "sluice.toml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def sqlite_path(url: str) -> Path:
    """The file a SQLAlchemy SQLite URL opens, as SQLAlchemy itself reads it."""
    parsed = make_url(url)
    assert parsed.drivername == "sqlite"
    assert parsed.database is not None
    return Path(parsed.database)


def file_path(url: str) -> Path:
    parts = urlsplit(url)
    assert parts.scheme == "file" and parts.netloc == "", url
    return Path(parts.path)


def test_defaults_live_under_the_project_catalog_folder(tmp_path: Path) -> None:
    root = tmp_path / "project"
    root.mkdir()
    config = load_config(root)
    catalog = root.resolve() / "catalog"
    assert config.root == root.resolve()
    assert config.catalog.name == "sluice"
    props = config.catalog.properties
    assert props["type"] == "sql"
    assert sqlite_path(props["uri"]) == catalog / "catalog.db"
    assert sqlite_path(props["uri"]).is_absolute()
    assert file_path(props["warehouse"]) == catalog / "warehouse"
    assert sqlite_path(config.state_url) == catalog / "sluice.db"
    assert config.lock_dir == catalog / "locks"
    assert config.executor.kind == "threads"
    assert config.executor.max_workers == 4
    assert config.alerts.webhook is None


def test_relative_paths_resolve_against_the_root_not_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "project"
    write_config(
        root,
        """
        [catalog]
        name = "lake"
        type = "sql"
        uri = "sqlite:///data/catalog.db"
        warehouse = "file://data/warehouse"
        [state]
        url = "sqlite:///data/state.db"
        """,
    )
    root = root.resolve()
    elsewhere = tmp_path / "elsewhere" / "deeper"
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    config = load_config(root)
    assert config.catalog.name == "lake"
    assert "name" not in config.catalog.properties
    assert sqlite_path(config.catalog.properties["uri"]) == root / "data" / "catalog.db"
    assert file_path(config.catalog.properties["warehouse"]) == root / "data" / "warehouse"
    assert sqlite_path(config.state_url) == root / "data" / "state.db"


def test_a_relative_root_is_taken_from_the_cwd_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(tmp_path / "project", '[catalog]\nwarehouse = "./wh"\n')
    monkeypatch.chdir(tmp_path)
    tmp_path = tmp_path.resolve()
    config = load_config(Path("project"))
    assert config.root == tmp_path / "project"
    assert file_path(config.catalog.properties["warehouse"]) == tmp_path / "project" / "wh"
    assert sqlite_path(config.catalog.properties["uri"]) == tmp_path / "project/catalog/catalog.db"


def test_absolute_and_remote_locations_are_kept(tmp_path: Path) -> None:
    write_config(
        tmp_path,
        """
        [catalog]
        type = "sql"
        uri = "sqlite:////srv/lake/catalog.db"
        warehouse = "s3://bucket/warehouse"
        [state]
        url = "postgresql://sluice@db.internal/sluice"
        """,
    )
    config = load_config(tmp_path)
    assert config.catalog.properties["uri"] == "sqlite:////srv/lake/catalog.db"
    assert config.catalog.properties["warehouse"] == "s3://bucket/warehouse"
    assert config.state_url == "postgresql://sluice@db.internal/sluice"


def test_other_catalog_types_get_no_sqlite_defaults(tmp_path: Path) -> None:
    write_config(
        tmp_path,
        """
        [catalog]
        type = "rest"
        uri = "https://catalog.example.com/api"
        credential = "x:y"
        """,
    )
    props = load_config(tmp_path).catalog.properties
    assert props == {
        "type": "rest",
        "uri": "https://catalog.example.com/api",
        "credential": "x:y",
    }


def test_executor_and_alerts(tmp_path: Path) -> None:
    write_config(
        tmp_path,
        """
        [executor]
        kind = "threads"
        max_workers = 9
        [alerts]
        webhook = "https://hooks.example.com/x"
        """,
    )
    config = load_config(tmp_path)
    assert config.executor.max_workers == 9
    assert config.alerts.webhook == "https://hooks.example.com/x"


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("[catalgo]\ntype = 'sql'\n", "catalgo"),
        ("[executor]\nmax_worker = 3\n", "executor.max_worker"),
        ("[state]\nuri = 'sqlite:///x.db'\n", "state.uri"),
        ("[executor]\nmax_workers = 0\n", "executor.max_workers"),
    ],
)
def test_unknown_or_invalid_keys_name_the_file(tmp_path: Path, text: str, where: str) -> None:
    path = write_config(tmp_path.resolve(), text)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert info.value.file == str(path)
    assert str(path) in str(info.value)
    assert where in str(info.value)


def test_broken_toml_names_file_and_line(tmp_path: Path) -> None:
    path = write_config(
        tmp_path.resolve(),
        """
        [catalog]
        type = "sql"
        uri = "sqlite:///oops
        """,
    )
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert info.value.file == str(path)
    assert info.value.line == 3
    assert f"{path}:3" in str(info.value)
