"""Sluice: an asset-centric orchestrator for an Apache Iceberg lakehouse.

The public API for asset code is exactly what this module exports. Exports are resolved on
first use (PEP 562 module `__getattr__`), so `import orchestrator` - and with it the `sluice`
command's start-up - costs no pyiceberg, DuckDB, pyarrow or sqlglot import until a name that
needs one is used. Type checkers see ordinary re-exports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lakehouse.errors import SluiceError as SluiceError
    from orchestrator import checks as checks
    from orchestrator.assets import Asset as Asset
    from orchestrator.assets import AssetKey as AssetKey
    from orchestrator.assets import Retry as Retry
    from orchestrator.assets import asset as asset
    from orchestrator.context import AssetContext as AssetContext
    from orchestrator.context import Partition as Partition
    from orchestrator.errors import DefinitionError as DefinitionError
    from orchestrator.partitions import DailyPartitions as DailyPartitions
    from orchestrator.partitions import HourlyPartitions as HourlyPartitions
    from orchestrator.partitions import MonthlyPartitions as MonthlyPartitions
    from orchestrator.partitions import TimePartitions as TimePartitions
    from orchestrator.schedules import Schedule as Schedule
    from orchestrator.schedules import schedule as schedule

_EXPORTS: dict[str, str] = {
    "Asset": "orchestrator.assets",
    "AssetContext": "orchestrator.context",
    "AssetKey": "orchestrator.assets",
    "DailyPartitions": "orchestrator.partitions",
    "DefinitionError": "orchestrator.errors",
    "HourlyPartitions": "orchestrator.partitions",
    "MonthlyPartitions": "orchestrator.partitions",
    "Partition": "orchestrator.context",
    "Retry": "orchestrator.assets",
    "Schedule": "orchestrator.schedules",
    "SluiceError": "lakehouse.errors",
    "TimePartitions": "orchestrator.partitions",
    "asset": "orchestrator.assets",
    "checks": "orchestrator.checks",
    "schedule": "orchestrator.schedules",
}
"""Public name -> the module defining it (for `checks`, the module itself)."""

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import the module behind a public name on first use, and remember the value."""
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'orchestrator' has no attribute {name!r}")
    module = importlib.import_module(module_name)
    value = module if module_name == f"{__name__}.{name}" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
