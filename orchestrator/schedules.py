"""Schedules: a cron expression, a time zone and a selection, declared next to the assets.

    nightly = schedule("nightly", cron="0 2 * * *", select="*", timezone="Europe/Amsterdam")

The loader collects every `Schedule` bound to a name in an asset module, as it collects assets.
This module is pure tick arithmetic: every function takes the current time as an argument, so
tests inject any clock. Ticks are timezone-aware UTC `datetime`s.

The cron expression is matched (with croniter) against the *wall clock* of `timezone`. Around
a daylight-saving change:

* a wall time that does not exist (the clock jumps from 02:00 to 03:00) fires as if the clock
  had not jumped: 02:30 fires at 03:30 local time; two wall times that land on the same instant
  fire once;
* a wall time that happens twice (the clock goes back from 03:00 to 02:00) fires once, at its
  first occurrence, unless the hour field is `*`: then it fires in both hours, so an hourly or
  minutely schedule keeps its pace.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

from orchestrator.assets import validate_name
from orchestrator.errors import DefinitionError, SelectionError
from orchestrator.graph import AssetGraph
from orchestrator.selection import select as select_assets

DST_MARGIN = timedelta(hours=3)
"""More than any daylight-saving shift: how far around a window wall times are examined."""
SEARCH_LIMIT = timedelta(days=366 * 10)
"""A cron expression that matches nothing in this long (e.g. `0 0 30 2 *`) never fires."""


@dataclass(frozen=True)
class Schedule:
    """A declared schedule. Plain data: compare, print and hash it freely."""

    name: str
    cron: str
    select: tuple[str, ...] = ("*",)
    timezone: str = "UTC"
    catchup: bool = False
    """Run every tick missed while the scheduler was down, in order (else only the latest)."""
    file: str | None = None
    line: int | None = None

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def local(self, tick: datetime) -> datetime:
        """A tick shown in the schedule's own time zone."""
        return tick.astimezone(self.zone)

    def next_tick(self, after: datetime) -> datetime | None:
        """The first tick strictly after `after`; None if the expression never fires."""
        _require_aware(after)
        span = timedelta(hours=1)
        low = after
        while low - after < SEARCH_LIMIT:
            found = ticks_between(self, low, low + span)
            if found:
                return found[0]
            low, span = low + span, min(span * 4, timedelta(days=366))
        return None

    def latest_tick(self, at: datetime) -> datetime | None:
        """The last tick at or before `at`; None if there is none within `SEARCH_LIMIT`."""
        _require_aware(at)
        span = timedelta(hours=1)
        high = at
        while at - high < SEARCH_LIMIT:
            found = ticks_between(self, high - span, high)
            if found:
                return found[-1]
            high, span = high - span, min(span * 4, timedelta(days=366))
        return None


def ticks_between(sched: Schedule, after: datetime, until: datetime) -> list[datetime]:
    """Every tick `t` of `sched` with `after < t <= until`, ascending, as UTC datetimes."""
    _require_aware(after)
    _require_aware(until)
    if until <= after:
        return []
    zone = sched.zone
    start = after.astimezone(zone).replace(tzinfo=None) - DST_MARGIN
    stop = until.astimezone(zone).replace(tzinfo=None) + DST_MARGIN
    every_hour = _hour_is_wildcard(sched.cron)
    found: set[datetime] = set()
    walls = croniter(sched.cron, start)
    while True:
        try:
            wall: datetime = walls.get_next(datetime)
        except CroniterBadDateError:  # matches no date at all (e.g. February 30th)
            break
        if wall > stop:
            break
        for instant in _instants(wall, zone, every_hour):
            if after < instant <= until:
                found.add(instant)
    return sorted(found)


def due_tick(sched: Schedule, since: datetime, now: datetime) -> datetime | None:
    """The tick to run now, given that every tick up to `since` was handled; or None.

    With `catchup` the oldest tick after `since` (each missed tick runs, in order); without,
    the latest tick at or before `now` (missed ticks collapse into one run).
    """
    if sched.catchup:
        tick = sched.next_tick(since)
        return tick if tick is not None and tick <= now else None
    tick = sched.latest_tick(now)
    return tick if tick is not None and tick > since else None


def schedule(
    name: str,
    *,
    cron: str,
    select: str | Sequence[str] = "*",
    timezone: str = "UTC",
    catchup: bool = False,
) -> Schedule:
    """Declare a schedule; bind it to a module-level name in an asset module.

    `select` uses the CLI's selection syntax (`*`, `layer:gold`, `+orders`, ...). Each tick
    materializes the stale assets of the selection as of the tick (partitioned assets: the
    partitions that the tick completes). Raises `DefinitionError` naming the file and line for
    an invalid name, cron expression or time zone.
    """
    file, line = _caller()
    validate_name(name, "schedule name", file=file, line=line)
    if not isinstance(cron, str) or not croniter.is_valid(cron):
        raise DefinitionError(
            f"schedule {name}: invalid cron expression {cron!r}", file=file, line=line
        )
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise DefinitionError(
            f"schedule {name}: unknown time zone {timezone!r} (use an IANA name like 'UTC' or "
            "'Europe/Amsterdam')",
            file=file,
            line=line,
        ) from None
    selection = (select,) if isinstance(select, str) else tuple(select)
    if not selection or not all(isinstance(s, str) and s.strip() for s in selection):
        raise DefinitionError(f"schedule {name}: select must name something", file=file, line=line)
    found = Schedule(name, cron, selection, timezone, bool(catchup), file, line)
    if found.next_tick(datetime(2000, 1, 1, tzinfo=UTC)) is None:
        raise DefinitionError(f"schedule {name}: cron {cron!r} never fires", file=file, line=line)
    return found


def validate_schedules(found: Sequence[Schedule], graph: AssetGraph) -> tuple[Schedule, ...]:
    """The project's schedules sorted by name; `DefinitionError` for a duplicate name or a
    selection that matches nothing."""
    by_name: dict[str, Schedule] = {}
    for sched in found:
        other = by_name.get(sched.name)
        if other is not None and other != sched:
            raise DefinitionError(
                f"schedule {sched.name!r} is declared twice (also at {other.file}:{other.line})",
                file=sched.file,
                line=sched.line,
            )
        try:
            select_assets(graph, sched.select)
        except SelectionError as exc:
            raise DefinitionError(
                f"schedule {sched.name}: {exc.message}", file=sched.file, line=sched.line
            ) from None
        by_name[sched.name] = sched
    return tuple(by_name[name] for name in sorted(by_name))


def _instants(wall: datetime, zone: ZoneInfo, every_hour: bool) -> list[datetime]:
    """The instants at which the naive wall time `wall` fires in `zone` (see module doc)."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if second > first and every_hour:  # the wall time happens twice: both, if hour is `*`
        return [first, second]
    return [first]  # fold=0: the first occurrence, or (in a gap) the pre-change offset


def _hour_is_wildcard(cron: str) -> bool:
    expanded = croniter(cron).expanded
    return bool(expanded[1] == ["*"])


def _require_aware(value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"expected a timezone-aware datetime, got {value!r}")


def _caller() -> tuple[str | None, int | None]:
    frame = inspect.currentframe()
    outer = frame.f_back.f_back if frame and frame.f_back else None
    if outer is None:
        return None, None
    return outer.f_code.co_filename, outer.f_lineno
