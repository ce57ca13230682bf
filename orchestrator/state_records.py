"""The plain records of the run history and the status values they may hold.

These are what `StateStore` returns and accepts, and what reports and the CLI read. They hold
no database code and import no SQLAlchemy, so they can be built and rendered without opening
a store. A status outside `RunStatus` / `StepStatus` is rejected before it is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from lakehouse.errors import SluiceError

RunStatus = Literal["running", "succeeded", "failed", "abandoned", "interrupted"]
StepStatus = Literal[
    "pending",
    "running",
    "published",
    "skipped_fresh",
    "failed",
    "audit_failed",
    "blocked",
    "conflict",
]

RUN_STATUSES: frozenset[str] = frozenset(get_args(RunStatus))
STEP_STATUSES: frozenset[str] = frozenset(get_args(StepStatus))
ABANDONED_ERROR = "run abandoned (process died)"
"""The error of a step, or a backfill partition, whose run's process died."""


class AmbiguousRunError(SluiceError):
    """A run id prefix matches several runs."""


@dataclass(frozen=True, kw_only=True)
class CheckRecord:
    """The outcome of one check (audit) of a step."""

    name: str
    kind: str
    severity: str
    passed: bool
    failing_rows: int = 0
    samples: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


@dataclass(frozen=True, kw_only=True)
class StepRecord:
    """One asset (partition) materialization within a run, as last recorded."""

    run_id: str
    asset: str
    partition: str | None = None
    status: StepStatus
    attempts: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_s: float | None = None
    snapshot_id: int | None = None
    branch: str | None = None
    rows: int | None = None
    error: str | None = None
    reasons: list[str] = field(default_factory=list)
    checks: list[CheckRecord] = field(default_factory=list)


BackfillState = Literal["missing", "running", "failed", "audit_failed", "published"]


@dataclass(frozen=True, kw_only=True)
class BackfillRecord:
    """One backfill: a selection over a partition range, resumable by id."""

    backfill_id: str
    selection: str
    first: str
    last: str
    ranged: bool
    status: str
    created_at: datetime
    finished_at: datetime | None = None
    counts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class BackfillPartition:
    asset: str
    partition: str
    state: BackfillState
    run_id: str | None = None
    error: str | None = None


@dataclass(frozen=True, kw_only=True)
class RunRecord:
    """One invocation of a command; `counts` maps a step status to its number of steps."""

    run_id: str
    command: str
    selection: str
    status: RunStatus
    started_at: datetime
    finished_at: datetime | None = None
    pid: int
    host: str
    counts: dict[str, int] = field(default_factory=dict)


def check_status(status: str, allowed: frozenset[str], what: str) -> None:
    if status not in allowed:
        raise ValueError(f"invalid {what} status {status!r}: expected one of {sorted(allowed)}")


def utc_now() -> datetime:
    """Every timestamp the store writes: timezone-aware UTC."""
    return datetime.now(UTC)
