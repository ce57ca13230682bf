"""Time partitions: which partitions exist, their windows, and how partitions map upstream.

A partition is named by its key (`2024-01-31`, `2024-01-31T05`, `2024-01`) and covers the
half-open window `[start, end)` of its column, in the partition set's timezone. Windows are
computed with `zoneinfo`, so hourly partitions across a DST change have the right lengths.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from orchestrator.errors import DefinitionError, SelectionError
from orchestrator.names import validate_name

Granularity = Literal["hour", "day", "month"]
KEY_FORMATS: dict[Granularity, str] = {"hour": "%Y-%m-%dT%H", "day": "%Y-%m-%d", "month": "%Y-%m"}
FINENESS: dict[Granularity, int] = {"hour": 2, "day": 1, "month": 0}


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

    @cached_property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def fingerprint(self) -> str:
        """Changes whenever the partitioning changes meaning (part of the code version)."""
        text = f"{self.granularity}|{self.column}|{self.timezone}|{self.lookback}"
        return hashlib.sha256(text.encode()).hexdigest()[:8]

    def _example_key(self) -> str:
        return datetime(2024, 1, 1).strftime(KEY_FORMATS[self.granularity])

    def _parse(self, text: str) -> tuple[datetime, Granularity]:
        """`text` as a moment, and the granularity its format names."""
        for granularity in ("hour", "day", "month"):
            try:
                return datetime.strptime(text, KEY_FORMATS[granularity]), granularity
            except ValueError:
                continue
        raise self._invalid(text)

    def _invalid(self, text: str) -> SelectionError:
        return SelectionError(
            f"invalid {self.granularity} partition {text!r}: expected like {self._example_key()}"
        )

    def _bound(self, text: str, *, last: bool = False) -> str:
        """A range bound as a key: a longer date is truncated (`2024-01-31` is month
        `2024-01`); a shorter one stands for its first (with `last`, its last) partition
        (`--to 2024-01-31` of an hourly set is `2024-01-31T23`)."""
        moment, given = self._parse(text)
        fmt = KEY_FORMATS[self.granularity]
        if FINENESS[given] >= FINENESS[self.granularity] or not last:
            return moment.strftime(fmt)
        return _step(_step(moment, given, 1), self.granularity, -1).strftime(fmt)

    def parse_key(self, text: str) -> str:
        """Validate one partition key (a longer date is truncated to this granularity:
        `2024-01-31` is month `2024-01`). A local hour skipped by a DST change is refused."""
        moment, given = self._parse(text)
        if FINENESS[given] < FINENESS[self.granularity]:
            raise self._invalid(text)
        key = moment.strftime(KEY_FORMATS[self.granularity])
        if not self._exists(key):
            raise SelectionError(
                f"{self.granularity} partition {key!r} does not exist in {self.timezone} "
                "(skipped by a clock change)"
            )
        return key

    def _utc_start(self, key: str) -> datetime:
        """The first instant whose local time falls in `key` (for a local time repeated by a
        DST change, its first occurrence), in UTC."""
        return self._resolve(datetime.strptime(key, KEY_FORMATS[self.granularity]))

    def _resolve(self, wall: datetime) -> datetime:
        """The UTC instant of local wall time `wall` (its first occurrence; a skipped wall
        time resolves to the instant of the clock change)."""
        return wall.replace(tzinfo=self.tz).astimezone(UTC)

    def _truncate(self, wall: datetime) -> datetime:
        wall = wall.replace(minute=0, second=0, microsecond=0, tzinfo=None)
        if self.granularity == "hour":
            return wall
        wall = wall.replace(hour=0)
        return wall if self.granularity == "day" else wall.replace(day=1)

    def _exists_wall(self, wall: datetime) -> bool:
        """Whether some instant's local time falls in partition `wall` (an hour skipped by a
        DST change has none)."""
        return self._truncate(self._resolve(wall).astimezone(self.tz)) == wall

    def _exists(self, key: str) -> bool:
        return self._exists_wall(datetime.strptime(key, KEY_FORMATS[self.granularity]))

    def _step_wall(self, wall: datetime, direction: int) -> datetime:
        """The next (1) or previous (-1) existing partition, stepping the local calendar."""
        while True:
            wall = _step(wall, self.granularity, direction)
            if self._exists_wall(wall):
                return wall

    def _step_key(self, key: str, direction: int) -> str:
        fmt = KEY_FORMATS[self.granularity]
        return self._step_wall(datetime.strptime(key, fmt), direction).strftime(fmt)

    def key_of(self, moment: datetime) -> str:
        """The key of the partition holding `moment`. A naive moment is local wall time; one in
        a partition that a clock change skipped belongs to the first partition after the gap,
        so a later wall time never gets an earlier key (Samoa skipped all of 2011-12-30: its
        hours are not 2011-12-31's)."""
        fmt = KEY_FORMATS[self.granularity]
        if moment.tzinfo is None:
            wall = self._truncate(moment)
            if not self._exists_wall(wall):
                return self._step_wall(wall, 1).strftime(fmt)
        aware = moment if moment.tzinfo else moment.replace(tzinfo=self.tz)
        # Through UTC: `astimezone` to the same zone would keep a non-existent wall time.
        return aware.astimezone(UTC).astimezone(self.tz).strftime(fmt)

    def window(self, key: str) -> tuple[datetime, datetime]:
        """`[start, end)` of partition `key`, as timezone-aware datetimes. Windows tile time:
        the end of one is the start of the next (a local hour repeated by a DST change is one
        two-hour partition; a skipped one has no partition)."""
        key = self.parse_key(key)
        start, end = self._utc_start(key), self._utc_start(self._step_key(key, 1))
        return start.astimezone(self.tz), end.astimezone(self.tz)

    def keys(self, first: str, last: str) -> list[str]:
        """Every key from `first` to `last` inclusive, clipped to the set's start."""
        first_key = self._bound(first)
        last_key = self._bound(last, last=True)
        if last_key < first_key:
            raise SelectionError(f"--to {last} is before --from {first}")
        fmt = KEY_FORMATS[self.granularity]
        wall = datetime.strptime(max(first_key, self.first_key()), fmt)
        if not self._exists_wall(wall):
            wall = self._step_wall(wall, 1)
        end = datetime.strptime(last_key, fmt)
        found = []
        while wall <= end:
            found.append(wall.strftime(fmt))
            wall = self._step_wall(wall, 1)
        return found

    def first_key(self) -> str:
        return self.key_of(datetime.fromisoformat(self.start))

    def latest(self, now: datetime) -> str | None:
        """The newest partition complete at `now` (plus `end_offset` in-progress ones)."""
        key = self.key_of(now)
        for _ in range(self.end_offset):
            key = self._step_key(key, 1)
        key = self._step_key(key, -1)
        return key if key >= self.first_key() else None

    def upstream_keys(self, key: str, upstream: TimePartitions) -> list[str]:
        """Partitions of `upstream` that partition `key` reads: those overlapping its window
        widened by `lookback` (identity for equal partitioning without lookback)."""
        key = self.parse_key(key)
        first = key
        for _ in range(self.lookback):
            first = self._step_key(first, -1)
        start = self._utc_start(first)
        end = self._utc_start(self._step_key(key, 1))
        found = []
        candidate = upstream.key_of(start)
        # Compare instants in UTC: aware datetimes of one zone compare by wall time.
        while upstream._utc_start(candidate) < end:
            if candidate >= upstream.first_key():
                found.append(candidate)
            candidate = upstream._step_key(candidate, 1)
        return found

    def label(self, first: str, last: str) -> str:
        return first if first == last else f"{first}..{last}"


def _step(moment: datetime, granularity: Granularity, direction: int) -> datetime:
    """`moment` moved by one local hour, day or month (wall-clock arithmetic, no zone)."""
    if granularity == "hour":
        return moment + timedelta(hours=direction)
    if granularity == "day":
        return moment + timedelta(days=direction)
    months = moment.year * 12 + moment.month - 1 + direction
    return moment.replace(year=months // 12, month=months % 12 + 1, day=1)


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
