"""Running one step: call the asset on its pinned inputs, then write-audit-publish the result.

A step is plain data (`StepSpec`), so another process can pick it up, load the project by its
root and run it. Errors in user code are labelled with the asset and keep the user's traceback
text; they never escape as exceptions: the outcome says what happened.
"""

from __future__ import annotations

import functools
import inspect
import os
import random
import re
import threading
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import duckdb
import pyarrow as pa
from pyiceberg.table import Table

from lakehouse import duck
from lakehouse.audits import CheckResult
from lakehouse.branches import Lakehouse, branch_snapshot_id, remove_branch
from lakehouse.catalog import open_catalog
from lakehouse.errors import (
    PublishConflictError,
    SchemaChangeError,
    SluiceError,
    UnsupportedTypeError,
)
from lakehouse.locks import TableLocks
from lakehouse.provenance import Provenance
from lakehouse.reads import create_views, snapshot_select, table_with_snapshots
from lakehouse.tables import load_table, split_identifier
from lakehouse.wap import write_audit_publish
from lakehouse.windows import RowWindow
from orchestrator.assets import Asset, AssetKey, Retry
from orchestrator.context import AssetContext, Partition, to_reader, to_result
from orchestrator.errors import AssetExecutionError, DefinitionError, UnsupportedReturnTypeError
from orchestrator.loader import Project, load_project
from orchestrator.maintain import after_publish
from orchestrator.partitions import TimePartitions
from orchestrator.plan_cache import remember_published
from orchestrator.published import node_key
from orchestrator.timeouts import run_with_timeout
from orchestrator.unread_inputs import DeferredInput, unread_parameters

DEFINITION_ERRORS = (
    DefinitionError,
    UnsupportedReturnTypeError,
    SchemaChangeError,
    UnsupportedTypeError,
)
OutcomeStatus = Literal["published", "audit_failed", "failed", "conflict"]


@dataclass(frozen=True)
class StepSpec:
    """Everything needed to run one materialization, as plain picklable data."""

    project_root: str
    run_id: str
    asset: str
    inputs: dict[str, int]
    branch: str
    partition: str | None = None
    partitions: tuple[str, ...] = ()


@dataclass(frozen=True)
class StepOutcome:
    asset: str
    status: OutcomeStatus
    started_at: datetime
    finished_at: datetime
    attempts: int
    branch: str
    snapshot_id: int | None = None
    rows: int | None = None
    error: str | None = None
    checks: tuple[CheckResult, ...] = field(default_factory=tuple)
    definition_error: bool = False
    """True when the failure is the asset's definition (return type, schema), not the run."""
    sequence_number: int = 0
    """Of `snapshot_id` in its table: which of several publishes of one table is the newest."""


_cache_lock = threading.Lock()
_projects: dict[str, Project] = {}
_lakehouses: dict[str, Lakehouse] = {}


def remember(project: Project, lh: Lakehouse) -> None:
    """Let steps of this process reuse an already loaded project and catalog."""
    with _cache_lock:
        _projects[str(project.root)] = project
        _lakehouses[str(project.root)] = lh


_inherited: list[dict[str, Lakehouse]] = []


def _after_fork() -> None:
    """A forked worker keeps the loaded projects but opens its own catalog connections: it
    must not use (nor close) the parent's, which stay referenced, unused."""
    global _cache_lock, _lakehouses
    _cache_lock = threading.Lock()
    _inherited.append(_lakehouses)
    _lakehouses = {}


os.register_at_fork(after_in_child=_after_fork)


def _resolve(root: str) -> tuple[Project, Lakehouse]:
    with _cache_lock:
        if root not in _projects:
            _projects[root] = load_project(Path(root))
        project = _projects[root]
        if root not in _lakehouses:
            _lakehouses[root] = Lakehouse(
                open_catalog(project.config.catalog), TableLocks(project.config.lock_dir)
            )
        return project, _lakehouses[root]


def branch_name(run_id: str, key: AssetKey, partition: str | None = None) -> str:
    """Audit branch of one run and asset (and partition): unique within the catalog."""
    suffix = f"-{partition}" if partition else ""
    return f"sluice-{run_id}-{key.name}{suffix}"


def window_of(partitions: TimePartitions, keys: Sequence[str], label: str) -> RowWindow:
    """The rows of partitions `keys` (contiguous), as a lakehouse row window."""
    start, end = partitions.window(keys[0])[0], partitions.window(keys[-1])[1]
    return RowWindow(partitions.column, start, end, label, partitions.granularity)


@dataclass(frozen=True)
class _Inputs:
    """The pinned upstreams of one step: a select per upstream, and the view names (full, and
    short when unambiguous) they get when the step asks for views."""

    selects: dict[str, str]
    views: list[tuple[tuple[str, ...], str]]
    aliases: list[tuple[tuple[str, ...], tuple[str, ...]]]

    def create_views(self, con: duckdb.DuckDBPyConnection) -> None:
        create_views(con, self.views, self.aliases)


def _open_inputs(
    project: Project, lh: Lakehouse, con: duckdb.DuckDBPyConnection, spec: StepSpec
) -> _Inputs:
    """Each upstream at its pinned snapshot, or just the partitions this partition reads."""
    key = AssetKey.parse(spec.asset)
    asset = project.graph.assets[key]
    upstreams = project.graph.upstream(key)
    short_names = [u.name for u in upstreams]
    inputs = _Inputs({}, [], [])
    for upstream in upstreams:
        ident = str(upstream)
        theirs = project.graph.assets[upstream].partitions
        window = None
        if theirs is not None and asset.partitions is not None and spec.partitions:
            needed = sorted(
                {p for own in spec.partitions for p in asset.partitions.upstream_keys(own, theirs)}
            )
            snapshots = [spec.inputs[node_key(ident, p)] for p in needed]
            table = _pinned_table(lh, ident, snapshots)
            snapshot_id = max(snapshots, key=lambda s: _sequence_number(table, s))
            window = window_of(theirs, needed, f"{needed[0]}..{needed[-1]}")
        else:
            snapshot_id = spec.inputs[ident]
            table = _pinned_table(lh, ident, [snapshot_id])
        name = split_identifier(ident)
        select = snapshot_select(con, table, snapshot_id, window)
        inputs.selects[ident] = select
        inputs.views.append((name, select))
        if short_names.count(upstream.name) == 1:
            inputs.aliases.append(((upstream.name,), name))
    return inputs


def _pinned_table(lh: Lakehouse, identifier: str, snapshot_ids: list[int]) -> Table:
    """The upstream table, holding the pinned snapshots (loaded once per process per version)."""
    table = table_with_snapshots(lh.catalog, identifier, snapshot_ids)
    if table is None:
        raise SluiceError(f"upstream table {identifier} does not exist", asset=identifier)
    return table


def _sequence_number(table: Table, snapshot_id: int) -> int:
    """Position of a snapshot in the table's history: the newest input snapshot holds every
    older input partition unchanged (a partition's version is its newest write)."""
    snapshot = table.snapshot_by_id(snapshot_id)
    return int(snapshot.sequence_number or 0) if snapshot is not None else -1


def _sql_params(sql: str, partition: Partition | None) -> dict[str, Any]:
    """`$partition_start` / `$partition_end` as bound parameters (wall-clock time of the
    partition's timezone), for the names the query uses."""
    if partition is None:
        return {}
    values = {
        "partition_start": partition.start.replace(tzinfo=None),
        "partition_end": partition.end.replace(tzinfo=None),
        "partition_key": partition.key,
    }
    used = set(re.findall(r"\$([A-Za-z_][A-Za-z0-9_]*)", sql))
    return {name: value for name, value in values.items() if name in used}


def _compute(
    asset: Asset,
    graph_inputs: dict[str, AssetKey],
    ctx: AssetContext,
    con: duckdb.DuckDBPyConnection,
    inputs: _Inputs,
) -> Any:
    if asset.kind == "sql":
        assert asset.sql is not None
        params = _sql_params(asset.sql, ctx.partition)
        return ctx.con.sql(asset.sql, params=params) if params else ctx.con.sql(asset.sql)
    assert asset.fn is not None
    # Relations straight over the pinned files: the views wait until the asset asks for them.
    unread = unread_parameters(asset.fn)
    kwargs = {
        param: DeferredInput(functools.partial(con.sql, inputs.selects[str(key)]))
        if param in unread
        else con.sql(inputs.selects[str(key)])
        for param, key in graph_inputs.items()
    }
    args = [ctx] if _takes_context(asset) else []
    return asset.fn(*args, **kwargs)


def _result(
    project: Project,
    lh: Lakehouse,
    con: duckdb.DuckDBPyConnection,
    spec: StepSpec,
    label: str | None,
    keys: tuple[str, ...],
) -> pa.RecordBatchReader | duckdb.DuckDBPyRelation:
    """The asset's rows for partitions `keys` (labelled `label`) of the step (all of them
    unless the step is a ranged write split into calls), read from its pinned inputs for those
    partitions."""
    key = AssetKey.parse(spec.asset)
    asset = project.graph.assets[key]
    inputs = _open_inputs(project, lh, con, replace(spec, partitions=keys))
    partition = None
    if asset.partitions is not None and keys and label:
        window = window_of(asset.partitions, keys, label)
        partition = Partition(label, window.start, window.end)
    ctx = AssetContext(
        asset=key,
        run_id=spec.run_id,
        con=con,
        partition=partition,
        prepare=lambda: inputs.create_views(con),
    )
    try:
        return to_result(_compute(asset, project.graph.inputs(key), ctx, con, inputs), key)
    except SluiceError as exc:
        if exc.file is None:
            exc.file, exc.line = asset.file, asset.line
        raise
    except Exception as exc:
        raise _UserCodeError(_user_error(asset, exc)) from exc


def _chained(
    key: AssetKey,
    first: pa.RecordBatchReader,
    rest: Iterator[tuple[str | None, pa.RecordBatchReader]],
) -> pa.RecordBatchReader:
    """One stream of the calls' rows; a call starts when the one before it is read out (they
    share one DuckDB connection, and memory holds one call at a time)."""

    def columns(schema: pa.Schema) -> str:
        return ", ".join(f"{f.name} {f.type}" for f in schema)

    def batches() -> Iterator[pa.RecordBatch]:
        yield from first
        for label, reader in rest:
            if not reader.schema.equals(first.schema):
                raise SluiceError(
                    f"returned columns ({columns(reader.schema)}) for {label}, not those of "
                    f"the first call ({columns(first.schema)}): a --ranged write calls the "
                    "asset once per group of partitions, and every call must return the same "
                    "column names and types",
                    asset=str(key),
                )
            yield from reader

    return pa.RecordBatchReader.from_batches(first.schema, batches())


def _takes_context(asset: Asset) -> bool:
    assert asset.fn is not None
    params = list(inspect.signature(asset.fn).parameters)
    return bool(params) and params[0] in ("ctx", "context")


def _user_error(asset: Asset, exc: BaseException) -> str:
    """The user's traceback, labelled with the asset, without Sluice's own frames."""
    frames = traceback.extract_tb(exc.__traceback__)
    user = [f for f in frames if asset.file and f.filename == asset.file] or frames[-1:]
    where = f" at {user[-1].filename}:{user[-1].lineno}" if user else ""
    return f"asset {asset.key} raised {type(exc).__name__}{where}: {exc}"


def _attempt(project: Project, lh: Lakehouse, spec: StepSpec) -> tuple[StepOutcome, Table | None]:
    """The step's outcome, and the table as its publish left it (None unless published)."""
    key = AssetKey.parse(spec.asset)
    asset = project.graph.assets[key]
    started = datetime.now(UTC)
    # Explicit, whatever the host's: `$partition_start` / `$partition_end` are wall-clock
    # times of the partition's timezone, and compare right with a timestamptz column only in
    # that session TimeZone (UTC for unpartitioned assets).
    con = duck.connect(asset.partitions.timezone if asset.partitions else "UTC")
    try:
        window = None
        ranged: list[RowWindow] = []
        calls = [(spec.partition, spec.partitions)]
        if asset.partitions is not None and spec.partitions and spec.partition:
            window = window_of(asset.partitions, spec.partitions, spec.partition)
            if len(spec.partitions) > 1:  # a ranged write: its checks run per partition
                ranged = [window_of(asset.partitions, [p], p) for p in spec.partitions]
                size = project.config.backfill.max_partitions_per_call
                keys = spec.partitions
                calls = [
                    (asset.partitions.label(part[0], part[-1]), part)
                    for part in (keys[i : i + size] for i in range(0, len(keys), size))
                ]
        data = _result(project, lh, con, spec, *calls[0])
        if len(calls) > 1:
            rest = (
                (label, to_reader(_result(project, lh, con, spec, label, part), key))
                for label, part in calls[1:]
            )
            data = _chained(key, to_reader(data, key), rest)
        provenance = Provenance(
            run_id=spec.run_id,
            code_version=asset.code_version,
            partition=spec.partition,
            inputs=spec.inputs,
        )
        try:
            result = write_audit_publish(
                lh,
                spec.asset,
                data,
                branch=spec.branch,
                provenance=provenance,
                checks=asset.checks,
                window=window,
                partitions=ranged,
            )
        except duckdb.Error as exc:  # the asset's query runs as its rows are written
            raise AssetExecutionError(
                f"its query failed while its rows were computed: {exc}",
                asset=spec.asset,
                file=asset.file,
                line=asset.line,
            ) from exc
    finally:
        con.close()
    outcome = StepOutcome(
        asset=spec.asset,
        status=result.status,
        started_at=started,
        finished_at=datetime.now(UTC),
        attempts=1,
        branch=spec.branch,
        snapshot_id=result.snapshot_id,
        sequence_number=result.sequence_number,
        rows=result.rows,
        error=None
        if result.status == "published"
        else "audit failed: "
        + ", ".join(f"{c.name} ({c.failing_rows} rows)" for c in result.failed_checks),
        checks=result.checks,
    )
    return outcome, result.table


class _UserCodeError(Exception):
    """User code raised; the message already names the asset and location."""


def run_step(spec: StepSpec) -> StepOutcome:
    """Run one step with the asset's retry policy. Never raises for user or data problems."""
    started = datetime.now(UTC)
    project, lh = _resolve(spec.project_root)
    asset = project.graph.assets[AssetKey.parse(spec.asset)]
    retry = effective_retry(asset, project)
    error = ""
    status: OutcomeStatus = "failed"
    definition_error = False
    for attempt in range(1, retry.attempts + 1):
        try:
            if attempt > 1:
                _discard_branch(lh, spec)
            outcome, table = run_with_timeout(
                lambda fenced: _attempt(project, fenced, spec),
                lh,
                asset.timeout_s,
                what=f"asset {spec.asset}",
            )
            if outcome.status == "published":
                if table is not None:
                    remember_published(table)
                after_publish(lh, spec.asset, project.config.maintenance, table)
            return replace(outcome, attempts=attempt, started_at=started)
        except PublishConflictError as exc:
            error, status = str(exc), "conflict"
            break
        except DEFINITION_ERRORS as exc:
            error, definition_error = str(exc), True
            break
        except (SluiceError, _UserCodeError) as exc:
            error = str(exc)
        except Exception as exc:  # a bug or an environment problem: keep the traceback text
            error = f"asset {spec.asset}: {type(exc).__name__}: {exc}\n{traceback.format_exc()}"
        if attempt < retry.attempts:
            delay = retry.delay(attempt)
            time.sleep(delay * (1 + random.uniform(-retry.jitter, retry.jitter)))
    return StepOutcome(
        asset=spec.asset,
        status=status,
        started_at=started,
        finished_at=datetime.now(UTC),
        attempts=attempt,
        branch=spec.branch,
        error=error,
        definition_error=definition_error,
    )


def effective_retry(asset: Asset, project: Project) -> Retry:
    """The asset's own `Retry`, or the project's `[retry]` default when it declared none."""
    if not asset.inherits_retry:
        return asset.retry
    return Retry(**project.config.retry.model_dump())


def _discard_branch(lh: Lakehouse, spec: StepSpec) -> None:
    """A retry rewrites its branch from scratch: drop what an earlier attempt left (a first
    attempt has nothing to drop: branch names are unique per run, asset and partition)."""
    table = load_table(lh.catalog, spec.asset)
    if table is not None and branch_snapshot_id(table, spec.branch) is not None:
        remove_branch(lh, spec.asset, spec.branch)
