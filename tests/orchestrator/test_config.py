"""Tests for `orchestrator.config`: `sluice.toml`, defaults and path resolution."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy.engine import make_url

from lakehouse.errors import ConfigError
from orchestrator.assets import Retry
from orchestrator.config import CONFIG_CACHE, SECTIONS, ExecutorConfig, load_config


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


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[catalgo]\ntype = 'sql'\n", "[catalgo] Extra inputs are not permitted"),
        (
            "[executor]\nmax_workers = 0\n",
            "[executor.max_workers] Input should be greater than or equal to 1",
        ),
        (
            "[executor]\nkind = 'fork'\n",
            "[executor.kind] Input should be 'threads' or 'processes'",
        ),
        (
            "[executor]\nmax_workers = 3.5\n",
            "[executor.max_workers] Input should be a valid integer, got a number with a "
            "fractional part",
        ),
        ("[alerts]\ntimeout_s = 0\n", "[alerts.timeout_s] Input should be greater than 0"),
        (
            "[alerts]\nwebhook = 'file:///etc/passwd'\n",
            "[alerts.webhook] Value error, expected an http:// or https:// URL, "
            "got 'file:///etc/passwd'",
        ),
        ("[retry]\njitter = 1.5\n", "[retry.jitter] Input should be less than or equal to 1"),
        (
            "executor = 3\n",
            "[executor] Input should be a valid dictionary or instance of ExecutorConfig",
        ),
        ("[state]\nurl = 5\n", "[state.url] Input should be a valid string"),
    ],
)
def test_invalid_settings_fail_with_pydantic_messages(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write_config(tmp_path.resolve(), text)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert str(info.value) == f"{path}: {message}"


def test_settings_are_coerced_and_typed(tmp_path: Path) -> None:
    write_config(
        tmp_path,
        """
        [catalog]
        name = 7
        type = "rest"
        uri = "https://catalog.example.com/api"
        flag = true
        [executor]
        kind = "processes"
        max_concurrent_runs = 2
        [alerts]
        slack_webhook = "http://hooks.example.com/s"
        on_recovery = true
        timeout_s = 3
        [retry]
        attempts = 5
        backoff_s = 2
        [maintenance]
        orphan_min_age_hours = 72
        """,
    )
    for _ in range(2):  # validated, then remembered
        config = load_config(tmp_path)
        assert config.catalog.name == "7"
        assert config.catalog.properties["flag"] == "True"
        assert config.executor == ExecutorConfig(kind="processes", max_concurrent_runs=2)
        assert config.alerts.slack_webhook == "http://hooks.example.com/s"
        assert config.alerts.on_recovery is True
        assert type(config.alerts.timeout_s) is float and config.alerts.timeout_s == 3.0
        assert type(config.retry.backoff_s) is float
        assert config.retry.model_dump() == {
            "attempts": 5,
            "backoff_s": 2.0,
            "max_backoff_s": 60.0,
            "jitter": 0.1,
        }
        assert type(config.maintenance.orphan_min_age_hours) is float
        assert Retry(**config.retry.model_dump()) == Retry(attempts=5, backoff_s=2.0)


def test_the_defaults_are_what_validating_nothing_yields() -> None:
    """A project without settings is not validated: its defaults must be valid ones."""
    from orchestrator.config_schema import validate

    assert validate({}, "sluice.toml") == {
        "catalog": {},
        **{name: dataclasses.asdict(section()) for name, section in SECTIONS.items()},
    }


def test_config_objects_are_frozen(tmp_path: Path) -> None:
    config = load_config(tmp_path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.executor.max_workers = 8  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.state_url = "sqlite://"  # type: ignore[misc]


# ---- loading without pydantic ---------------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]
VALID = "[executor]\nmax_workers = 9\n[maintenance]\norphan_min_age_hours = 72\n"


def _load_in_fresh_process(root: Path) -> tuple[str, bool]:
    """`repr(load_config(root))` in a new interpreter, and whether it imported pydantic."""
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from orchestrator.config import load_config\n"
        "imported = 'pydantic' in sys.modules\n"
        f"print(repr(load_config(Path({str(root)!r}))))\n"
        "print(imported or 'pydantic' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    shown, pydantic = result.stdout.strip().splitlines()
    return shown, pydantic == "True"


@pytest.mark.parametrize("text", [None, "", "# settings come later\n\n"])
def test_a_project_without_settings_loads_without_pydantic(
    tmp_path: Path, text: str | None
) -> None:
    if text is not None:
        write_config(tmp_path, text)
    shown, pydantic = _load_in_fresh_process(tmp_path)
    assert not pydantic
    assert shown == repr(load_config(tmp_path))


def test_a_file_validated_before_loads_without_pydantic(tmp_path: Path) -> None:
    write_config(tmp_path, VALID)
    first, pydantic = _load_in_fresh_process(tmp_path)
    assert pydantic  # validated the first time
    again, pydantic = _load_in_fresh_process(tmp_path)
    assert not pydantic
    assert again == first
    config = load_config(tmp_path)
    assert repr(config) == first
    assert config.executor.max_workers == 9
    assert config.maintenance.orphan_min_age_hours == 72.0


def test_an_edited_file_is_validated_again(tmp_path: Path) -> None:
    write_config(tmp_path, VALID)
    assert load_config(tmp_path).executor.max_workers == 9
    write_config(tmp_path, VALID.replace("9", "12"))
    shown, pydantic = _load_in_fresh_process(tmp_path)
    assert pydantic
    assert "max_workers=12" in shown
    assert load_config(tmp_path).executor.max_workers == 12


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("[executor]\nmax_workers = 0\n", "[executor.max_workers]"),
        ("[executor]\nmax_workers = 9\nmax_worker = 3\n", "[executor.max_worker]"),
        ("[executor]\nmax_workers = 9\n[maintenance]\nkeep_last = 0\n", "[maintenance.keep_last]"),
    ],
)
def test_an_invalid_file_fails_even_after_a_valid_one_was_remembered(
    tmp_path: Path, text: str, where: str
) -> None:
    fresh = tmp_path / "fresh"
    write_config(fresh, text)
    with pytest.raises(ConfigError) as expected:
        load_config(fresh)
    root = tmp_path / "cached"
    write_config(root, VALID)
    load_config(root)
    assert (root / CONFIG_CACHE).is_file()
    path = write_config(root, text)
    for _ in range(2):
        with pytest.raises(ConfigError) as info:
            load_config(root)
        assert info.value.file == str(path.resolve())
        assert where in str(info.value)
        assert str(info.value) == str(expected.value).replace(str(fresh), str(root))


def test_broken_toml_fails_even_after_a_valid_file_was_remembered(tmp_path: Path) -> None:
    write_config(tmp_path, VALID)
    load_config(tmp_path)
    path = write_config(tmp_path.resolve(), '[executor]\nmax_workers = "9\n')
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert info.value.file == str(path)
    assert info.value.line == 2


@pytest.mark.parametrize(
    "cache",
    [
        "not json",
        "[]",
        '{"version": "0/old", "sha256": "x", "settings": {}}',
        None,  # the right key and version, with settings this schema does not know
    ],
)
def test_a_stale_or_broken_cache_is_ignored(tmp_path: Path, cache: str | None) -> None:
    write_config(tmp_path, VALID)
    expected = repr(load_config(tmp_path))
    stored = tmp_path / CONFIG_CACHE
    if cache is None:
        data = json.loads(stored.read_text())
        data["settings"]["executor"]["max_workerz"] = 1
        cache = json.dumps(data)
    stored.write_text(cache)
    assert repr(load_config(tmp_path)) == expected
    assert json.loads(stored.read_text())["settings"]["executor"] == {  # written again
        "kind": "threads",
        "max_workers": 9,
        "max_concurrent_runs": 1,
    }
