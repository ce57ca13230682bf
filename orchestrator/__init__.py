"""Sluice: an asset-centric orchestrator for an Apache Iceberg lakehouse.

The public API for asset code is exactly what this module exports.
"""

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

__all__ = [
    "Asset",
    "AssetContext",
    "AssetKey",
    "DailyPartitions",
    "DefinitionError",
    "HourlyPartitions",
    "MonthlyPartitions",
    "Partition",
    "Retry",
    "Schedule",
    "SluiceError",
    "TimePartitions",
    "asset",
    "checks",
    "schedule",
]
