"""`sluice.toml`: optional project configuration, with every default under `./catalog`.

Relative paths are relative to the project root, wherever the command is run from.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lakehouse.config import CatalogConfig
from lakehouse.errors import ConfigError

CONFIG_FILE = "sluice.toml"
CATALOG_DIR = "catalog"


class ExecutorConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["threads", "processes"] = "threads"
    """Where steps run: threads of this process, or worker processes forked from it."""
    max_workers: int = Field(default=4, ge=1, le=256)
    max_concurrent_runs: int = Field(default=1, ge=1, le=64)
    """How many runs `sluice scheduler` lets run at once (ticks of different schedules)."""


class AlertsConfig(BaseModel):
    """Where final failures, audit failures and (if `on_recovery`) recoveries are sent."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    webhook: str | None = None
    slack_webhook: str | None = None
    pagerduty_routing_key: str | None = None
    pagerduty_url: str = "https://events.pagerduty.com/v2/enqueue"
    on_recovery: bool = False
    timeout_s: float = Field(default=5.0, gt=0, le=120)
    attempts: int = Field(default=3, ge=1, le=10)

    @field_validator("webhook", "slack_webhook", "pagerduty_url")
    @classmethod
    def _http_only(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
        return value


class RetryConfig(BaseModel):
    """The project's default `Retry` for assets that declare none."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    attempts: int = Field(default=1, ge=1, le=100)
    backoff_s: float = Field(default=1.0, ge=0)
    max_backoff_s: float = Field(default=60.0, ge=0)
    jitter: float = Field(default=0.1, ge=0, le=1)


class MaintenanceConfig(BaseModel):
    """`[maintenance]`: keeping Iceberg metadata small so that writes stay fast.

    Every commit copies a table's whole metadata, which grows with each snapshot kept; without
    expiry a table with a thousand publishes writes many times slower than a fresh one. Expiry
    never changes what `main` (or any branch) holds, never forgets the newest write of any
    partition (so staleness and `sluice status` answer as before), and deletes no file; orphan
    removal (`sluice maintain --orphans`) deletes unreferenced files.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    """Maintain each table automatically right after each successful publish to it. A failure
    there is logged and never fails the run. `sluice maintain` works either way."""
    keep_last: int = Field(default=20, ge=1, le=100_000)
    """Newest snapshots of `main`'s history always kept: the reach of `sluice rollback` (a
    publish is usually two snapshots: the rows it replaced, the rows it wrote). Older snapshots
    are kept only while they are the newest write of some partition or the base of a branch.
    It is also the margin for concurrent writers: keep it above twice the number of publishes
    other writers may make to one table while a write to it is in flight (the write's base
    snapshot must still exist when it commits)."""
    max_expire_per_publish: int = Field(default=10, ge=1, le=1_000)
    """At most this many snapshots expired per automatic commit; the commit is made only once
    half as many are due, so a table does not pay an extra commit on every publish. Expiry
    holds the table lock, and one large expiry is slow: small batches keep writers moving."""
    orphan_min_age_hours: float = Field(default=24.0, ge=1.0)
    """Unreferenced files younger than this are never deleted by orphan removal: they may
    belong to a write still in flight. Keep it longer than any materialization takes."""


class StateConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str | None = None


class _ConfigFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    catalog: dict[str, Any] = Field(default_factory=dict)
    state: StateConfig = StateConfig()
    executor: ExecutorConfig = ExecutorConfig()
    alerts: AlertsConfig = AlertsConfig()
    retry: RetryConfig = RetryConfig()
    maintenance: MaintenanceConfig = MaintenanceConfig()


class ProjectConfig(BaseModel):
    """Resolved configuration: absolute paths, a catalog ready for `load_catalog`."""

    model_config = ConfigDict(frozen=True)

    root: Path
    catalog: CatalogConfig
    state_url: str
    lock_dir: Path
    executor: ExecutorConfig
    alerts: AlertsConfig
    retry: RetryConfig = RetryConfig()
    maintenance: MaintenanceConfig = MaintenanceConfig()


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
    """Read `root/sluice.toml` if present; errors name the file and line."""
    root = root.resolve()
    path = root / CONFIG_FILE
    raw: dict[str, Any] = {}
    if path.exists():
        try:
            raw = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            line = getattr(exc, "lineno", None)  # Python 3.14+; before, only in the message
            if line is None and (found := re.search(r"at line (\d+)", str(exc))):
                line = int(found.group(1))
            raise ConfigError(f"invalid TOML: {exc}", file=str(path), line=line) from exc
    try:
        parsed = _ConfigFile.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"[{where}] {first['msg']}", file=str(path)) from exc
    catalog_dir = root / CATALOG_DIR
    properties = {k: str(v) for k, v in parsed.catalog.items() if k != "name"}
    properties.setdefault("type", "sql")
    if properties["type"] == "sql":
        properties.setdefault("uri", f"sqlite:///{catalog_dir / 'catalog.db'}")
        properties.setdefault("warehouse", f"file://{catalog_dir / 'warehouse'}")
    for key in ("uri", "warehouse"):
        if key in properties and (
            properties[key].startswith(("sqlite:///", "file://")) or "://" not in properties[key]
        ):
            properties[key] = _absolute_url(properties[key], root)
    state_url = _absolute_url(parsed.state.url or f"sqlite:///{catalog_dir / 'sluice.db'}", root)
    return ProjectConfig(
        root=root,
        catalog=CatalogConfig(
            name=str(parsed.catalog.get("name", "sluice")), properties=properties
        ),
        state_url=state_url,
        lock_dir=catalog_dir / "locks",
        executor=parsed.executor,
        alerts=parsed.alerts,
        retry=parsed.retry,
        maintenance=parsed.maintenance,
    )
