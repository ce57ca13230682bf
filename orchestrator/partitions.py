"""Time partitions: which partitions exist, their windows, and how partitions map upstream.

A partition is named by its key (`2024-01-31`, `2024-01-31T05`, `2024-01`) and covers the
half-open window `[start, end)` of its column, in the partition set's timezone. Windows are
computed with `zoneinfo`, so hourly partitions across a DST change have the right lengths.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from orchestrator.errors import DefinitionError, SelectionError
from orchestrator.names import validate_name

Granularity = Literal["hour", "day", "month"]
KEY_FORMATS: dict[Granularity, str] = {"hour": "%Y-%m-%dT%H", "day": "%Y-%m-%d", "month": "%Y-%m"}


@dataclass(frozen=True)
class TimePartitions:
    """A set of time partitions on `column`, starting at `start`.

    `end_offset=0` makes the last partition the last complete one; `1` adds the one in
    progress. `lookback=N` makes each partition read its upstreams' partitions from N
    partitions earlier up to its own (a 7-day rolling metric has `lookback=6`).
    """

    granularity: Granularity
    start: str
    column: str
    timezone: str = "UTC"
    end_offset: int = 0
    lookback: int = 0

    def __post_init__(self) -> None:
        validate_name(self.column, "partition column")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise DefinitionError(f"unknown timezone {self.timezone!r}") from exc
        if self.lookback < 0 or self.end_offset < 0:
            raise DefinitionError("lookback and end_offset must be >= 0")
        try:
            datetime.fromisoformat(self.start)
        except ValueError as exc:
            raise DefinitionError(
                f"invalid partition start {self.start!r}: use 2024-01-01"
            ) from exc

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def fingerprint(self) -> str:
        """Changes whenever the partitioning changes meaning (part of the code version)."""
        text = f"{self.granularity}|{self.column}|{self.timezone}|{self.lookback}"
        return hashlib.sha256(text.encode()).hexdigest()[:8]

    def _example_key(self) -> str:
        return datetime(2024, 1, 1).strftime(KEY_FORMATS[self.granularity])

    def parse_key(self, text: str) -> str:
        """Validate a key (a longer date is truncated to this granularity: `2024-01-31` is
        month `2024-01`)."""
        for fmt in ("%Y-%m-%dT%H", "%Y-%m-%d", "%Y-%m"):
            try:
                moment = datetime.strptime(text, fmt)
            except ValueError:
                continue
            if fmt == "%Y-%m" and self.granularity != "month":
                break
            if fmt == "%Y-%m-%d" and self.granularity == "hour":
                break
            return moment.strftime(KEY_FORMATS[self.granularity])
        raise SelectionError(
            f"invalid {self.granularity} partition {text!r}: expected like {self._example_key()}"
        )

    def _local_start(self, key: str) -> datetime:
        return datetime.strptime(key, KEY_FORMATS[self.granularity]).replace(tzinfo=self.tz)

    def _next(self, moment: datetime) -> datetime:
        if self.granularity == "month":
            year, month = (
                (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
            )
            return moment.replace(year=year, month=month, day=1)
        if self.granularity == "day":
            return (moment.replace(tzinfo=None) + timedelta(days=1)).replace(tzinfo=self.tz)
        # Hours step in UTC so that a DST change neither repeats nor skips an hour.
        return (moment.astimezone(UTC) + timedelta(hours=1)).astimezone(self.tz)

    def key_of(self, moment: datetime) -> str:
        local = moment.astimezone(self.tz) if moment.tzinfo else moment.replace(tzinfo=self.tz)
        return local.strftime(KEY_FORMATS[self.granularity])

    def window(self, key: str) -> tuple[datetime, datetime]:
        """`[start, end)` of partition `key`, as timezone-aware datetimes."""
        start = self._local_start(self.parse_key(key))
        return start, self._next(start)

    def keys(self, first: str, last: str) -> list[str]:
        """Every key from `first` to `last` inclusive, clipped to the set's start."""
        first_key, last_key = self.parse_key(first), self.parse_key(last)
        if last_key < first_key:
            raise SelectionError(f"--to {last} is before --from {first}")
        first_key = max(first_key, self.first_key())
        found = []
        moment = self._local_start(first_key)
        while (key := moment.strftime(KEY_FORMATS[self.granularity])) <= last_key:
            found.append(key)
            moment = self._next(moment)
        return found

    def first_key(self) -> str:
        return self.key_of(datetime.fromisoformat(self.start))

    def latest(self, now: datetime) -> str | None:
        """The newest partition complete at `now` (plus `end_offset` in-progress ones)."""
        current = self.key_of(now)
        moment = self._local_start(current)
        for _ in range(self.end_offset):
            moment = self._next(moment)
        key = self._previous_key(moment.strftime(KEY_FORMATS[self.granularity]))
        return key if key >= self.first_key() else None

    def _previous_key(self, key: str) -> str:
        start = self._local_start(key)
        if self.granularity == "hour":
            return (
                (start.astimezone(UTC) - timedelta(hours=1))
                .astimezone(self.tz)
                .strftime(KEY_FORMATS["hour"])
            )
        if self.granularity == "day":
            return (start.date() - timedelta(days=1)).strftime(KEY_FORMATS["day"])
        year, month = (start.year - 1, 12) if start.month == 1 else (start.year, start.month - 1)
        return date(year, month, 1).strftime(KEY_FORMATS["month"])

    def upstream_keys(self, key: str, upstream: TimePartitions) -> list[str]:
        """Partitions of `upstream` that partition `key` reads: those overlapping its window
        widened by `lookback` (identity for equal partitioning without lookback)."""
        start = self.window(key)[0]
        for _ in range(self.lookback):
            start = self.window(self._previous_key(start.strftime(KEY_FORMATS[self.granularity])))[
                0
            ]
        end = self.window(key)[1]
        first = upstream.key_of(start)
        found = []
        moment = upstream._local_start(first)
        while moment < end:
            candidate = moment.strftime(KEY_FORMATS[upstream.granularity])
            if candidate >= upstream.first_key():
                found.append(candidate)
            moment = upstream._next(moment)
        return found

    def label(self, first: str, last: str) -> str:
        return first if first == last else f"{first}..{last}"


def DailyPartitions(  # noqa: N802 - reads as a type in asset declarations
    start: str, column: str, timezone: str = "UTC", end_offset: int = 0, lookback: int = 0
) -> TimePartitions:
    """One partition per calendar day of `column` in `timezone`."""
    return TimePartitions("day", start, column, timezone, end_offset, lookback)


def HourlyPartitions(  # noqa: N802
    start: str, column: str, timezone: str = "UTC", end_offset: int = 0, lookback: int = 0
) -> TimePartitions:
    """One partition per hour of `column`."""
    return TimePartitions("hour", start, column, timezone, end_offset, lookback)


def MonthlyPartitions(  # noqa: N802
    start: str, column: str, timezone: str = "UTC", end_offset: int = 0, lookback: int = 0
) -> TimePartitions:
    """One partition per calendar month of `column`."""
    return TimePartitions("month", start, column, timezone, end_offset, lookback)
