"""Checks (audits) as DuckDB SQL that returns the offending rows.

INTERFACE STUB - to be completed: builders and `run_checks`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["error", "warn"]


@dataclass(frozen=True)
class Check:
    """One audit. `kind` selects the SQL; `params` holds its arguments (plain JSON-able data)."""

    kind: str
    name: str
    params: tuple[tuple[str, Any], ...] = ()
    severity: Severity = "error"
    references: tuple[str, ...] = field(default=())
