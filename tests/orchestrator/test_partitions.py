"""The partition model, pure: keys, windows (across DST changes), latest, upstream mapping with
lookback, and how plans and staleness work per partition. No I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from orchestrator.assets import Asset, AssetKey
from orchestrator.errors import DefinitionError, SelectionError
from orchestrator.graph import AssetGraph, build_graph
from orchestrator.partitions import (
    DailyPartitions,
    HourlyPartitions,
    MonthlyPartitions,
    TimePartitions,
)
from orchestrator.planner import PartitionSelection, Plan, build_plan, merge_ranges
from orchestrator.staleness import PublishedState

NY = "America/New_York"
# Zones with the awkward cases: DST at 02:00 (New York), at 01:00 UTC (London), a 30-minute DST
# shift (Lord Howe), a half-hour offset without DST (Kolkata), DST at midnight (Sao Paulo until
# 2019), a skipped calendar day (Apia, 2011-12-30).
ZONES = [
    "UTC",
    NY,
    "Europe/London",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "America/Sao_Paulo",
    "Pacific/Apia",
]


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def span(partitions: TimePartitions, key: str) -> tuple[datetime, datetime]:
    """A window as UTC instants (aware datetimes of one zone compare by wall time)."""
    start, end = partitions.window(key)
    return start.astimezone(UTC), end.astimezone(UTC)


# --- keys and windows ---------------------------------------------------------------------------


def test_daily_keys_are_inclusive_and_clipped_to_the_start() -> None:
    daily = DailyPartitions(start="2024-01-03", column="d")
    assert daily.keys("2024-01-01", "2024-01-05") == [
        "2024-01-03",
        "2024-01-04",
        "2024-01-05",
    ]
    assert daily.keys("2024-02-28", "2024-03-01") == ["2024-02-28", "2024-02-29", "2024-03-01"]
    assert daily.keys("2023-12-01", "2023-12-31") == []  # entirely before the start
    with pytest.raises(SelectionError, match="before"):
        daily.keys("2024-01-05", "2024-01-04")


def test_monthly_and_hourly_keys() -> None:
    monthly = MonthlyPartitions(start="2023-11-01", column="d")
    assert monthly.keys("2023-11", "2024-02") == ["2023-11", "2023-12", "2024-01", "2024-02"]
    hourly = HourlyPartitions(start="2024-01-01", column="ts")
    assert hourly.keys("2024-01-01T22", "2024-01-02T01") == [
        "2024-01-01T22",
        "2024-01-01T23",
        "2024-01-02T00",
        "2024-01-02T01",
    ]


def test_range_bounds_coarser_than_the_partitions_cover_whole_days_and_months() -> None:
    # `sluice backfill * --from 2024-01-01 --to 2024-01-02` over hourly and daily assets alike.
    hourly = HourlyPartitions(start="2024-01-01", column="ts")
    keys = hourly.keys("2024-01-01", "2024-01-02")
    assert len(keys) == 48 and keys[0] == "2024-01-01T00" and keys[-1] == "2024-01-02T23"
    daily = DailyPartitions(start="2024-01-01", column="d")
    assert daily.keys("2024-02", "2024-02") == [f"2024-02-{d:02}" for d in range(1, 30)]
    # A finer bound is truncated.
    assert MonthlyPartitions(start="2024-01-01", column="d").keys("2024-01-31", "2024-03-02") == [
        "2024-01",
        "2024-02",
        "2024-03",
    ]


def test_parse_key_normalizes_and_rejects() -> None:
    daily = DailyPartitions(start="2024-01-01", column="d")
    assert daily.parse_key("2024-01-31") == "2024-01-31"
    assert daily.parse_key("2024-01-31T05") == "2024-01-31"  # truncated
    assert MonthlyPartitions(start="2024-01-01", column="d").parse_key("2024-01-31") == "2024-01"
    for bad in ("2024-13-01", "31/01/2024", "2024-01-31; DROP TABLE x", "", "2024-01"):
        with pytest.raises(SelectionError, match="expected like 2024-01-01"):
            daily.parse_key(bad)
    with pytest.raises(SelectionError, match="expected like 2024-01-01T00"):
        HourlyPartitions(start="2024-01-01", column="ts").parse_key("2024-01-31")


def test_invalid_definitions_are_definition_errors() -> None:
    with pytest.raises(DefinitionError, match="timezone"):
        DailyPartitions(start="2024-01-01", column="d", timezone="Mars/Olympus")
    with pytest.raises(DefinitionError, match="start"):
        DailyPartitions(start="January", column="d")
    with pytest.raises(DefinitionError, match="lookback"):
        DailyPartitions(start="2024-01-01", column="d", lookback=-1)
    with pytest.raises(DefinitionError):
        DailyPartitions(start="2024-01-01", column="bad column")


def test_windows_are_half_open_and_timezone_aware() -> None:
    daily = DailyPartitions(start="2024-01-01", column="d")
    assert span(daily, "2024-02-29") == (utc(2024, 2, 29), utc(2024, 3, 1))
    monthly = MonthlyPartitions(start="2024-01-01", column="d", timezone=NY)
    start, end = monthly.window("2024-12")
    assert (start.isoformat(), end.isoformat()) == (
        "2024-12-01T00:00:00-05:00",
        "2025-01-01T00:00:00-05:00",
    )
    assert span(HourlyPartitions(start="2024-01-01", column="ts"), "2024-01-01T23") == (
        utc(2024, 1, 1, 23),
        utc(2024, 1, 2, 0),
    )


def test_hourly_partitions_across_new_york_dst_changes() -> None:
    hourly = HourlyPartitions(start="2024-01-01", column="ts", timezone=NY)

    # Spring forward (2024-03-10): 02:00 local never happens; the day has 23 partitions.
    spring = hourly.keys("2024-03-10T00", "2024-03-10T23")
    assert len(spring) == 23 and "2024-03-10T02" not in spring
    assert span(hourly, "2024-03-10T01") == (utc(2024, 3, 10, 6), utc(2024, 3, 10, 7))
    assert span(hourly, "2024-03-10T03") == (utc(2024, 3, 10, 7), utc(2024, 3, 10, 8))
    with pytest.raises(SelectionError, match="does not exist"):
        hourly.window("2024-03-10T02")

    # Fall back (2024-11-03): 01:00 local happens twice; that key is one two-hour partition,
    # never two partitions with the same key (and no hour belongs to no partition).
    fall = hourly.keys("2024-11-03T00", "2024-11-03T23")
    assert len(fall) == 24 and len(set(fall)) == 24
    assert span(hourly, "2024-11-03T00") == (utc(2024, 11, 3, 4), utc(2024, 11, 3, 5))
    assert span(hourly, "2024-11-03T01") == (utc(2024, 11, 3, 5), utc(2024, 11, 3, 7))
    assert span(hourly, "2024-11-03T02") == (utc(2024, 11, 3, 7), utc(2024, 11, 3, 8))
    # Both 01:30s (EDT and EST) are in partition 01.
    assert hourly.key_of(utc(2024, 11, 3, 5, 30)) == "2024-11-03T01"
    assert hourly.key_of(utc(2024, 11, 3, 6, 30)) == "2024-11-03T01"
    # The windows carry the right offsets, so they survive a trip through ISO strings.
    start, end = hourly.window("2024-11-03T01")
    assert (start.isoformat(), end.isoformat()) == (
        "2024-11-03T01:00:00-04:00",
        "2024-11-03T02:00:00-05:00",
    )

    # Each day's hourly windows exactly tile that day's daily window (23 and 25 hours).
    daily = DailyPartitions(start="2024-01-01", column="ts", timezone=NY)
    for day, keys, hours in (("2024-03-10", spring, 23), ("2024-11-03", fall, 25)):
        day_start, day_end = span(daily, day)
        assert day_end - day_start == timedelta(hours=hours)
        assert span(hourly, keys[0])[0] == day_start and span(hourly, keys[-1])[1] == day_end
        for before, after in zip(keys, keys[1:], strict=False):
            assert span(hourly, before)[1] == span(hourly, after)[0]
        assert daily.upstream_keys(day, hourly) == keys


def test_a_wall_time_in_a_skipped_day_belongs_to_the_first_partition_after_it() -> None:
    # Samoa skipped 2011-12-30 entirely: 2011-12-29 23:59 (UTC-10) was followed by
    # 2011-12-31 00:00 (UTC+14). Its hours must not read as 2011-12-31's same hours.
    hourly = HourlyPartitions(start="2011-10-01", column="ts", timezone="Pacific/Apia")
    assert hourly.key_of(datetime(2011, 12, 30, 6)) == "2011-12-31T00"
    assert hourly.key_of(datetime(2011, 12, 31, 0)) == "2011-12-31T00"
    assert hourly.keys(
        hourly.key_of(datetime(2011, 12, 30, 6)), hourly.key_of(datetime(2011, 12, 31, 0))
    ) == ["2011-12-31T00"]
    daily = DailyPartitions(start="2011-10-01", column="ts", timezone="Pacific/Apia")
    assert daily.key_of(datetime(2011, 12, 30, 6)) == "2011-12-31"


def test_hourly_latest_across_the_repeated_hour() -> None:
    hourly = HourlyPartitions(start="2024-01-01", column="ts", timezone=NY)
    # 01:30 EDT and 01:30 EST: partition 01 is still in progress both times.
    assert hourly.latest(utc(2024, 11, 3, 5, 30)) == "2024-11-03T00"
    assert hourly.latest(utc(2024, 11, 3, 6, 30)) == "2024-11-03T00"
    assert hourly.latest(utc(2024, 11, 3, 7, 0)) == "2024-11-03T01"
    assert hourly.latest(utc(2024, 3, 10, 7, 30)) == "2024-03-10T01"  # 03:30 EDT


def test_latest_complete_partition_and_end_offset() -> None:
    daily = DailyPartitions(start="2024-01-01", column="d")
    now = utc(2024, 3, 15, 12)
    assert daily.latest(now) == "2024-03-14"
    assert DailyPartitions(start="2024-01-01", column="d", end_offset=1).latest(now) == "2024-03-15"
    assert daily.latest(utc(2024, 1, 1, 5)) is None  # nothing complete yet
    assert daily.latest(utc(2024, 1, 2)) == "2024-01-01"  # exactly at midnight
    # A timezone shifts the day: 02:00 UTC is still the 14th in New York.
    assert DailyPartitions(start="2024-01-01", column="d", timezone=NY).latest(
        utc(2024, 3, 15, 2)
    ) == ("2024-03-13")
    assert MonthlyPartitions(start="2024-01-01", column="d").latest(now) == "2024-02"
    assert HourlyPartitions(start="2024-01-01", column="ts").latest(now) == "2024-03-15T11"


# --- upstream mapping ---------------------------------------------------------------------------


def test_upstream_keys_identity_lookback_and_granularity_changes() -> None:
    daily = DailyPartitions(start="2024-01-01", column="d")
    assert daily.upstream_keys("2024-01-10", daily) == ["2024-01-10"]

    rolling = DailyPartitions(start="2024-01-01", column="d", lookback=6)
    assert rolling.upstream_keys("2024-03-02", daily) == [
        "2024-02-25",
        "2024-02-26",
        "2024-02-27",
        "2024-02-28",
        "2024-02-29",
        "2024-03-01",
        "2024-03-02",
    ]
    # Clipped at the upstream's first partition.
    assert rolling.upstream_keys("2024-01-03", daily) == ["2024-01-01", "2024-01-02", "2024-01-03"]

    hourly = HourlyPartitions(start="2024-01-01", column="ts")
    assert daily.upstream_keys("2024-01-10", hourly) == [f"2024-01-10T{h:02}" for h in range(24)]
    assert hourly.upstream_keys("2024-01-10T05", daily) == ["2024-01-10"]
    monthly = MonthlyPartitions(start="2024-01-01", column="d")
    assert monthly.upstream_keys("2024-02", daily) == daily.keys("2024-02-01", "2024-02-29")
    assert daily.upstream_keys("2024-02-10", monthly) == ["2024-02"]

    # A New York day is 05:00..05:00 UTC: it overlaps two UTC days.
    ny_daily = DailyPartitions(start="2024-01-01", column="d", timezone=NY)
    assert ny_daily.upstream_keys("2024-01-10", daily) == ["2024-01-10", "2024-01-11"]


# --- properties ---------------------------------------------------------------------------------

GRANULARITIES = st.sampled_from(["hour", "day", "month"])
MAX_SPAN = {"hour": timedelta(days=6), "day": timedelta(days=120), "month": timedelta(days=900)}
CLOCK_CHANGES = [
    datetime(2024, 3, 10, 2),  # New York
    datetime(2024, 11, 3, 1),
    datetime(2024, 3, 31, 1),  # London
    datetime(2024, 10, 27, 1),
    datetime(2024, 4, 7, 2),  # Lord Howe
    datetime(2024, 10, 6, 2),
    datetime(2018, 11, 4, 0),  # Sao Paulo
    datetime(2019, 2, 16, 23),
    datetime(2011, 12, 30, 0),  # Apia
]
# Anywhere, or (mostly) within three days of a clock change of one of the zones above.
MOMENTS = st.one_of(
    st.datetimes(min_value=datetime(2011, 11, 1), max_value=datetime(2026, 12, 31)),
    st.builds(
        lambda change, minutes: change + timedelta(minutes=minutes),
        st.sampled_from(CLOCK_CHANGES),
        st.integers(min_value=-3 * 24 * 60, max_value=3 * 24 * 60),
    ),
)


def _partitions(granularity: str, zone: str, lookback: int = 0) -> TimePartitions:
    return TimePartitions(granularity, "2011-10-01", "ts", zone, lookback=lookback)  # type: ignore[arg-type]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    granularity=GRANULARITIES,
    zone=st.sampled_from(ZONES),
    first=MOMENTS,
    length=st.floats(min_value=0, max_value=1),
)
def test_keys_are_contiguous_ordered_and_their_windows_tile(
    granularity: str, zone: str, first: datetime, length: float
) -> None:
    partitions = _partitions(granularity, zone)
    last = first + MAX_SPAN[granularity] * length
    keys = partitions.keys(partitions.key_of(first), partitions.key_of(last))

    assert keys, "a range of existing partitions is never empty"
    assert keys == sorted(set(keys)), "keys are unique and in order"
    assert keys[0] == partitions.key_of(first) and keys[-1] == partitions.key_of(last)
    windows = [span(partitions, k) for k in keys]
    for key, (start, end) in zip(keys, windows, strict=True):
        assert start < end
        assert partitions.parse_key(key) == key
        # The window holds exactly the instants whose local time has this key.
        assert partitions.key_of(start) == key
        assert partitions.key_of(end - timedelta(microseconds=1)) == key
        assert partitions.key_of(end) != key
    for (_, end), (start, _) in zip(windows, windows[1:], strict=False):
        assert end == start, "no gap and no overlap between consecutive windows"
    # Any instant inside the range falls in the window of its own key.
    middle = min(
        windows[0][0] + (windows[-1][1] - windows[0][0]) * length,
        windows[-1][1] - timedelta(microseconds=1),
    )
    key = partitions.key_of(middle)
    assert key in keys
    start, end = span(partitions, key)
    assert start <= middle < end


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    granularity=GRANULARITIES,
    upstream_granularity=GRANULARITIES,
    zone=st.sampled_from(ZONES),
    upstream_zone=st.sampled_from(ZONES),
    moment=MOMENTS,
    lookback=st.integers(min_value=0, max_value=8),
)
@example(  # a wall time of the day Samoa skipped: its key is the first hour after the gap
    granularity="hour",
    upstream_granularity="hour",
    zone="Pacific/Apia",
    upstream_zone="UTC",
    moment=datetime(2011, 12, 30, 4, 0),
    lookback=1,
)
def test_upstream_keys_cover_exactly_the_window_widened_by_lookback(
    granularity: str,
    upstream_granularity: str,
    zone: str,
    upstream_zone: str,
    moment: datetime,
    lookback: int,
) -> None:
    own = _partitions(granularity, zone, lookback)
    upstream = _partitions(upstream_granularity, upstream_zone)
    key = own.key_of(moment)
    found = own.upstream_keys(key, upstream)

    # The widened window: from the start of the partition `lookback` before (even one before
    # this asset's own start: it reads its upstream's history), to this one's end.
    # Stepped back in elapsed time from the start of the key's partition, not in wall time
    # from `moment`: a wall time inside a skipped local day (Pacific/Apia, 2011-12-30) has no
    # instant of its own (its key is the first partition after the gap).
    back = {"hour": timedelta(hours=1), "day": timedelta(days=1), "month": timedelta(days=31)}
    unclipped = TimePartitions(granularity, "2000-01-01", "ts", zone)  # type: ignore[arg-type]
    instant = span(unclipped, key)[0]
    earlier = unclipped.keys(unclipped.key_of(instant - back[granularity] * (lookback + 3)), key)
    first = earlier[-1 - lookback]
    want_start, want_end = span(own, first)[0], span(own, key)[1]

    assert found == sorted(set(found))
    assert found == upstream.keys(found[0], found[-1]), "contiguous upstream partitions"
    # Contiguous, so it is enough that the first and the last overlap the window.
    for upstream_key in (found[0], found[-1]):
        start, end = span(upstream, upstream_key)
        assert start < want_end and want_start < end, f"{upstream_key} overlaps the window"
    # Together they cover the widened window (where the upstream has partitions at all).
    covered_start = span(upstream, found[0])[0]
    assert covered_start <= max(want_start, span(upstream, upstream.first_key())[0])
    assert span(upstream, found[-1])[1] >= want_end
    if granularity == upstream_granularity and zone == upstream_zone:
        wanted = [k for k in earlier[-1 - lookback :] if k >= upstream.first_key()]
        assert found == wanted, "same partitioning: the key and its lookback"


# --- plans and staleness per partition ----------------------------------------------------------

DAILY = DailyPartitions(start="2024-01-01", column="d")


def partitioned_graph(rolling_lookback: int = 0) -> AssetGraph:
    """bronze.raw (daily) -> silver.clean (daily) -> gold.total (whole), and
    silver.rolling (daily with lookback) <- silver.clean."""

    def make(key: str, *deps: str, partitions: TimePartitions | None = None) -> Asset:
        return Asset(
            key=AssetKey.parse(key), kind="sql", code_version="v1", deps=deps, partitions=partitions
        )

    rolling = DailyPartitions(start="2024-01-01", column="d", lookback=rolling_lookback)
    return build_graph(
        [
            make("bronze.raw", partitions=DAILY),
            make("silver.clean", "bronze.raw", partitions=DAILY),
            make("silver.rolling", "silver.clean", partitions=rolling),
            make("gold.total", "silver.clean"),
        ]
    )


DAYS = ["2024-01-01", "2024-01-02", "2024-01-03"]


def published_everything(graph: AssetGraph, days: list[str] = DAYS) -> dict[str, PublishedState]:
    """Every partition published fresh: partition D of an asset is snapshot 100*i + day."""
    state: dict[str, PublishedState] = {}
    ids = {str(k): 100 * (i + 1) for i, k in enumerate(graph.order)}
    for key in graph.order:
        asset = graph.assets[key]
        if asset.partitions is None:
            inputs = {str(u): ids[str(u)] + len(days) for u in graph.upstream(key)}
            state[str(key)] = PublishedState(ids[str(key)], "v1", inputs)
            continue
        state[str(key)] = PublishedState(ids[str(key)] + len(days), "v1", {})
        for n, day in enumerate(days, start=1):
            inputs = {
                f"{u}@{p}": ids[str(u)] + days.index(p) + 1
                for u in graph.upstream(key)
                for p in asset.partitions.upstream_keys(day, DAILY)
            }
            state[f"{key}@{day}"] = PublishedState(ids[str(key)] + n, "v1", inputs)
    return state


def plan_of(graph: AssetGraph, published: dict[str, PublishedState], **kwargs: object) -> Plan:
    return build_plan(
        graph,
        list(graph.order),
        published,
        partitions=PartitionSelection(first=DAYS[0], last=DAYS[-1]),
        **kwargs,  # type: ignore[arg-type]
    )


def test_a_plan_has_one_node_per_partition_in_dependency_order() -> None:
    graph = partitioned_graph(rolling_lookback=1)
    plan = plan_of(graph, {})
    nodes = [s.node for s in plan.steps]
    assert len(nodes) == 3 * 3 + 1
    position = {n: i for i, n in enumerate(nodes)}
    for step in plan.steps:
        for upstream in step.waits_for or ():
            assert position[upstream] < position[step.node], (upstream, step.node)
    by_node = {s.node: s for s in plan.steps}
    assert by_node["silver.clean@2024-01-02"].upstream == ("bronze.raw@2024-01-02",)
    assert by_node["silver.rolling@2024-01-02"].upstream == (
        "silver.clean@2024-01-01",
        "silver.clean@2024-01-02",
    )
    assert set(by_node["gold.total"].waits_for or ()) == {f"silver.clean@{d}" for d in DAYS}


def test_republishing_one_upstream_partition_makes_only_that_partition_stale() -> None:
    graph = partitioned_graph()
    published = published_everything(graph)
    assert plan_of(graph, published).steps == ()

    # bronze.raw@2024-01-02 was republished as a new snapshot.
    published["bronze.raw@2024-01-02"] = PublishedState(999, "v1", {})
    published["bronze.raw"] = PublishedState(999, "v1", {})
    plan = plan_of(graph, published)
    by_node = {s.node: s for s in plan.steps}
    assert set(by_node) == {"silver.clean@2024-01-02", "silver.rolling@2024-01-02", "gold.total"}
    clean = by_node["silver.clean@2024-01-02"]
    assert [(r.kind, r.upstream) for r in clean.reasons] == [
        ("upstream_changed", "bronze.raw@2024-01-02")
    ]
    assert by_node["gold.total"].explanation == (
        "gold.total is stale because silver.clean@2024-01-02 changed, "
        "because bronze.raw@2024-01-02 was republished since it was built"
    )


def test_lookback_partitions_go_stale_with_any_partition_they_read() -> None:
    graph = partitioned_graph(rolling_lookback=1)
    published = published_everything(graph)
    assert plan_of(graph, published).steps == ()
    inputs = published["silver.clean@2024-01-02"].inputs
    published["silver.clean@2024-01-02"] = PublishedState(999, "v1", inputs)
    published["silver.clean"] = PublishedState(999, "v1", {})
    stale = {s.node for s in plan_of(graph, published).steps}
    # rolling@01-02 and rolling@01-03 both read clean@01-02 (lookback 1); gold reads it whole.
    assert stale == {"silver.rolling@2024-01-02", "silver.rolling@2024-01-03", "gold.total"}


def test_an_unpublished_upstream_partition_blocks_with_a_backfill_hint() -> None:
    graph = partitioned_graph()
    plan = build_plan(
        graph,
        [AssetKey.parse("silver.clean")],
        {},
        partitions=PartitionSelection(first=DAYS[0], last=DAYS[-1]),
    )
    assert len(plan.steps) == 3
    assert all(s.blocked for s in plan.steps)
    assert "sluice backfill +silver.clean --from 2024-01-01 --to 2024-01-01" in (
        plan.steps[0].blocked or ""
    )


def test_ranged_plan_is_one_step_per_asset_and_rewires_waits() -> None:
    graph = partitioned_graph(rolling_lookback=1)
    plan = plan_of(graph, {}, ranged=True)
    by_node = {s.node: s for s in plan.steps}
    assert set(by_node) == {
        "bronze.raw@2024-01-01..2024-01-03",
        "silver.clean@2024-01-01..2024-01-03",
        "silver.rolling@2024-01-01..2024-01-03",
        "gold.total",
    }
    assert by_node["silver.clean@2024-01-01..2024-01-03"].partitions == tuple(DAYS)
    assert by_node["silver.rolling@2024-01-01..2024-01-03"].waits_for == (
        "silver.clean@2024-01-01..2024-01-03",
    )
    assert by_node["gold.total"].waits_for == ("silver.clean@2024-01-01..2024-01-03",)


def test_ranged_plan_never_spans_a_fresh_partition() -> None:
    # Only 01-01 and 01-03 are stale: one write over 01-01..01-03 would rewrite the fresh 01-02
    # and record no inputs for it, so each contiguous run of stale partitions is its own step.
    graph = partitioned_graph()
    published = published_everything(graph)
    for day in ("2024-01-01", "2024-01-03"):
        published[f"bronze.raw@{day}"] = PublishedState(None)
    plan = plan_of(graph, published, ranged=True)
    steps = {s.node: s.partitions for s in plan.steps}
    assert steps == {
        "bronze.raw@2024-01-01": ("2024-01-01",),
        "bronze.raw@2024-01-03": ("2024-01-03",),
        "silver.clean@2024-01-01": ("2024-01-01",),
        "silver.clean@2024-01-03": ("2024-01-03",),
        "silver.rolling@2024-01-01": ("2024-01-01",),
        "silver.rolling@2024-01-03": ("2024-01-03",),
        "gold.total": (),
    }
    assert plan.steps[-1].asset == "gold.total" or "gold.total" in steps
    assert merge_ranges(plan) == plan  # merging is idempotent


def test_a_partition_before_an_assets_start_is_not_planned() -> None:
    graph = partitioned_graph()
    plan = build_plan(graph, list(graph.order), {}, partitions=PartitionSelection("2023-12-31"))
    assert [s.node for s in plan.steps] == ["gold.total"]
    plan = build_plan(graph, list(graph.order), {}, partitions=PartitionSelection("2024-01-01"))
    assert len(plan.steps) == 4
    with pytest.raises(SelectionError):
        build_plan(graph, list(graph.order), {}, partitions=PartitionSelection("2024-01"))
