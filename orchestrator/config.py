"""`sluice.toml`: optional project configuration, with every default under `./catalog`.

Relative paths are relative to the project root, wherever the command is run from.

The settings are plain frozen dataclasses, not pydantic models: every `sluice` command loads
them, and `sluice plan` on an unchanged project must not pay for importing pydantic (like
`lakehouse.config.CatalogConfig`). Validation still is pydantic's, exactly as strict as
before: `orchestrator.config_schema` builds pydantic models from these dataclasses (field
names, types, defaults, and the constraints in each field's `metadata`) and is imported only
when a file has to be validated:

- no `sluice.toml`, or one without any setting: the defaults, which are valid, and no pydantic;
- a file whose exact text was validated before: what validating it yielded, remembered in
  `catalog/cache/config.json` (like `orchestrator.sql_assets` remembers parsed SQL by text);
- anything else: pydantic, and a valid result is remembered for the next load.

The cache key is the file's sha256, and the cache is valid for one version of the schema (the
sha256 of this module's and `orchestrator.config_schema`'s source): any edit of the file or of
the schema validates again. Only valid files are remembered, so an invalid one always fails
with pydantic's message, naming the file and the key (`[executor.max_workers] ...`). Deleting
the cache is always safe.

Why generated models rather than `pydantic.TypeAdapter` over the dataclasses themselves: over
a stdlib dataclass pydantic reports an unknown key as "Unexpected keyword argument", not
"Extra inputs are not permitted", and `Annotated[int, Ge(1)]` constraints would need
`annotated_types` imported with this module. Validating a new file costs about as much as
importing this module used to (pydantic and its models); an unchanged one costs a file read.

Constructing a dataclass directly (in code or tests) does not validate: `load_config` does.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lakehouse.config import CatalogConfig
from lakehouse.errors import ConfigError

CONFIG_FILE = "sluice.toml"
CATALOG_DIR = "catalog"
CONFIG_CACHE = Path(CATALOG_DIR, "cache", "config.json")
"""Where the result of validating `sluice.toml` is remembered, relative to the project root."""
CACHE_FORMAT = 1
"""Bump when what the cache holds changes: older cache files are then ignored."""


def _http_only(value: str | None) -> str | None:
    if value is not None and not value.startswith(("http://", "https://")):
        raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
    return value


def _limits(**constraints: float) -> dict[str, Any]:
    """Field metadata: pydantic `Field` constraints (`ge`, `gt`, `le`) checked by validation."""
    return constraints


_HTTP_URL: dict[str, Any] = {"validator": _http_only}
"""Field metadata: a function run on the value after its type is checked (may raise
`ValueError`), as a pydantic `AfterValidator`."""


@dataclass(frozen=True)
class _Section:
    """A `[section]` of `sluice.toml`: unknown keys are rejected."""

    def model_dump(self) -> dict[str, Any]:
        """The settings as a dictionary, e.g. `Retry(**config.retry.model_dump())`."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ExecutorConfig(_Section):
    kind: Literal["threads", "processes"] = "threads"
    """Where steps run: threads of this process, or worker processes forked from it."""
    max_workers: int = field(default=4, metadata=_limits(ge=1, le=256))
    max_concurrent_runs: int = field(default=1, metadata=_limits(ge=1, le=64))
    """How many runs `sluice scheduler` lets run at once (ticks of different schedules)."""


@dataclass(frozen=True)
class AlertsConfig(_Section):
    """Where final failures, audit failures and (if `on_recovery`) recoveries are sent."""

    webhook: str | None = field(default=None, metadata=_HTTP_URL)
    slack_webhook: str | None = field(default=None, metadata=_HTTP_URL)
    pagerduty_routing_key: str | None = None
    pagerduty_url: str = field(
        default="https://events.pagerduty.com/v2/enqueue", metadata=_HTTP_URL
    )
    on_recovery: bool = False
    timeout_s: float = field(default=5.0, metadata=_limits(gt=0, le=120))
    attempts: int = field(default=3, metadata=_limits(ge=1, le=10))


@dataclass(frozen=True)
class RetryConfig(_Section):
    """The project's default `Retry` for assets that declare none."""

    attempts: int = field(default=1, metadata=_limits(ge=1, le=100))
    backoff_s: float = field(default=1.0, metadata=_limits(ge=0))
    max_backoff_s: float = field(default=60.0, metadata=_limits(ge=0))
    jitter: float = field(default=0.1, metadata=_limits(ge=0, le=1))


@dataclass(frozen=True)
class MaintenanceConfig(_Section):
    """`[maintenance]`: keeping Iceberg metadata small so that writes stay fast.

    Every commit copies a table's whole metadata, which grows with each snapshot kept; without
    expiry a table with a thousand publishes writes many times slower than a fresh one. Expiry
    never changes what `main` (or any branch) holds, never forgets the newest write of any
    partition (so staleness and `sluice status` answer as before), and deletes no file; orphan
    removal (`sluice maintain --orphans`) deletes unreferenced files.
    """

    enabled: bool = True
    """Maintain each table automatically right after each successful publish to it. A failure
    there is logged and never fails the run. `sluice maintain` works either way."""
    keep_last: int = field(default=20, metadata=_limits(ge=1, le=100_000))
    """Newest snapshots of `main`'s history always kept: the reach of `sluice rollback` (a
    whole-table publish is one snapshot; a partition publish two: the rows it replaced, the
    rows it wrote). Older snapshots are kept only while they are the newest write of some
    partition or the base of a branch.
    It is also the margin for concurrent writers: keep it above twice the number of publishes
    other writers may make to one table while a write to it is in flight (the write's base
    snapshot must still exist when it commits)."""
    max_expire_per_publish: int = field(default=10, metadata=_limits(ge=1, le=1_000))
    """At most this many snapshots expired per automatic commit; the commit is made only once
    half as many are due, so a table does not pay an extra commit on every publish. Expiry
    holds the table lock, and one large expiry is slow: small batches keep writers moving."""
    orphan_min_age_hours: float = field(default=24.0, metadata=_limits(ge=1.0))
    """Unreferenced files younger than this are never deleted by orphan removal: they may
    belong to a write still in flight. Keep it longer than any materialization takes."""


@dataclass(frozen=True)
class StateConfig(_Section):
    url: str | None = None


@dataclass(frozen=True)
class BackfillConfig(_Section):
    """`[backfill]`: how `--ranged` splits a range."""

    max_partitions_per_call: int = field(default=31, metadata=_limits(ge=1, le=100_000))
    """`--ranged` calls an asset on at most this many partitions at once and streams each
    call's rows into the range's one write: memory follows this, not the range's length."""


SECTIONS: dict[str, type[_Section]] = {
    "state": StateConfig,
    "executor": ExecutorConfig,
    "alerts": AlertsConfig,
    "retry": RetryConfig,
    "maintenance": MaintenanceConfig,
    "backfill": BackfillConfig,
}
"""Every table of `sluice.toml` but `[catalog]`, whose keys are the catalog's properties (any
value, used as a string)."""

_DEFAULTS: dict[str, Any] = {"catalog": {}, **{name: cls() for name, cls in SECTIONS.items()}}
"""The settings of a `sluice.toml` that sets nothing, or of none: valid (a test checks it)."""


@dataclass(frozen=True)
class ProjectConfig:
    """Resolved configuration: absolute paths, a catalog ready for `load_catalog`."""

    root: Path
    catalog: CatalogConfig
    state_url: str
    lock_dir: Path
    executor: ExecutorConfig
    alerts: AlertsConfig
    retry: RetryConfig = field(default_factory=RetryConfig)
    maintenance: MaintenanceConfig = field(default_factory=MaintenanceConfig)
    backfill: BackfillConfig = field(default_factory=BackfillConfig)


def _absolute_url(value: str, root: Path) -> str:
    """Make `sqlite:///rel`, `file://rel` and bare relative paths absolute against `root`."""
    match = re.match(r"^(sqlite:///|file://)(.*)$", value)
    if match:
        scheme, path = match.groups()
        if path.startswith("/") or path == ":memory:" or path == "":
            return value
        absolute = (root / path).resolve()
        return f"{scheme}{absolute}" if scheme == "sqlite:///" else f"file://{absolute}"
    if "://" not in value:
        return f"file://{(root / value).resolve()}"
    return value


def load_config(root: Path) -> ProjectConfig:
    """Read `root/sluice.toml` if present; errors name the file and line, or the key."""
    root = root.resolve()
    path = root / CONFIG_FILE
    settings = _settings(path, root / CONFIG_CACHE) if path.exists() else _DEFAULTS
    catalog_dir = root / CATALOG_DIR
    catalog: dict[str, str] = settings["catalog"]
    properties = {k: v for k, v in catalog.items() if k != "name"}
    properties.setdefault("type", "sql")
    if properties["type"] == "sql":
        properties.setdefault("uri", f"sqlite:///{catalog_dir / 'catalog.db'}")
        properties.setdefault("warehouse", f"file://{catalog_dir / 'warehouse'}")
    for key in ("uri", "warehouse"):
        if key in properties and (
            properties[key].startswith(("sqlite:///", "file://")) or "://" not in properties[key]
        ):
            properties[key] = _absolute_url(properties[key], root)
    state: StateConfig = settings["state"]
    state_url = _absolute_url(state.url or f"sqlite:///{catalog_dir / 'sluice.db'}", root)
    return ProjectConfig(
        root=root,
        catalog=CatalogConfig(name=catalog.get("name", "sluice"), properties=properties),
        state_url=state_url,
        lock_dir=catalog_dir / "locks",
        executor=settings["executor"],
        alerts=settings["alerts"],
        retry=settings["retry"],
        maintenance=settings["maintenance"],
        backfill=settings["backfill"],
    )


def _settings(path: Path, cache: Path) -> dict[str, Any]:
    """The validated settings of the file `path`: `[catalog]` as strings, and each section."""
    text = path.read_text()
    key = hashlib.sha256(text.encode()).hexdigest()
    version = _schema_version()
    if version is not None:
        remembered = _remembered(cache, version, key)
        if remembered is not None:
            return remembered
    plain = _validated(text, str(path))
    if plain is None:
        return _DEFAULTS
    settings = _from_plain(plain)
    if version is not None:
        from orchestrator.cache_files import write_json_atomically

        write_json_atomically(cache, {"version": version, "sha256": key, "settings": plain})
    return settings


def _validated(text: str, file: str) -> dict[str, Any] | None:
    """`text` parsed and validated, as plain JSON data; None if it sets nothing."""
    import tomllib

    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None)  # Python 3.14+; before, only in the message
        if line is None and (found := re.search(r"at line (\d+)", str(exc))):
            line = int(found.group(1))
        raise ConfigError(f"invalid TOML: {exc}", file=file, line=line) from exc
    if not raw:
        return None
    from orchestrator.config_schema import validate

    valid = validate(raw, file)
    catalog = {str(k): str(v) for k, v in valid.pop("catalog").items()}
    return {"catalog": catalog, **valid}


def _from_plain(plain: dict[str, Any]) -> dict[str, Any]:
    """The settings `_validated` returned, as dataclasses (`TypeError` if they are not)."""
    catalog = plain["catalog"]
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in catalog.items()):
        raise TypeError(f"catalog properties must be strings: {catalog!r}")
    return {
        "catalog": dict(catalog),
        **{name: cls(**plain[name]) for name, cls in SECTIONS.items()},
    }


def _remembered(cache: Path, version: str, key: str) -> dict[str, Any] | None:
    """The settings validated for the text of sha256 `key` with this schema, if remembered."""
    from orchestrator.cache_files import read_json_object

    data = read_json_object(cache, version=version, sha256=key)
    if data is None:
        return None
    try:
        return _from_plain(data["settings"])
    except (ValueError, LookupError, TypeError, AttributeError):
        return None  # not a cache this module wrote: validate


@functools.cache
def _schema_version() -> str | None:
    """What the cache is valid for: its format and the source of the schema; None if unknown."""
    digest = hashlib.sha256()
    here = Path(__file__)
    try:
        for source in (here, here.with_name("config_schema.py")):
            digest.update(source.read_bytes())
    except OSError:
        return None
    return f"{CACHE_FORMAT}/{digest.hexdigest()}"
