"""What a check is: `Check` (a kind plus JSON-able parameters) and `CheckResult`.

Plain frozen dataclasses and the accessors that read a check's parameters, with no SQL, DuckDB
or sqlglot: the bottom layer, which every other audit module builds on and which imports none
of them. `CheckResult` stays JSON-safe (`dataclasses.asdict`) so results can be logged and
stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from lakehouse.errors import SluiceError

Severity = Literal["error", "warn"]


@dataclass(frozen=True)
class Check:
    """One audit. `kind` selects the SQL; `params` holds its arguments (plain JSON-able data)."""

    kind: str
    name: str
    params: tuple[tuple[str, Any], ...] = ()
    severity: Severity = "error"
    references: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check on one relation; JSON-safe so it can be logged and stored
    (`dataclasses.asdict`). A plain dataclass: defining checks must not import pydantic."""

    name: str
    kind: str
    severity: Severity
    passed: bool
    failing_rows: int
    samples: list[dict[str, Any]]
    error: str | None = None

    @property
    def blocking(self) -> bool:
        """True when this result must prevent the publish (a failed check of severity error)."""
        return not self.passed and self.severity == "error"


def param(check: Check, key: str) -> Any:
    for k, v in check.params:
        if k == key:
            return v
    raise SluiceError(f"check {check.name}: missing parameter {key!r} for kind {check.kind!r}")


def seq_param(check: Check, key: str) -> tuple[Any, ...]:
    value = param(check, key)
    if not isinstance(value, list | tuple):
        raise SluiceError(f"check {check.name}: parameter {key!r} must be a list, got {value!r}")
    return tuple(value)
