"""Tick arithmetic with an injected clock: time zones, daylight saving, catch-up on and off."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from conftest import ProjectDir
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator import schedule
from orchestrator.errors import DefinitionError
from orchestrator.loader import load_project
from orchestrator.schedules import Schedule, due_tick, ticks_between


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def run_ticks(sched: Schedule, since: datetime, now: datetime) -> list[datetime]:
    """What a scheduler loop does at `now`: take due ticks until none is left."""
    taken = []
    while (tick := due_tick(sched, since, now)) is not None:
        taken.append(tick)
        since = tick
    return taken


def test_a_daily_utc_schedule_ticks_at_its_time() -> None:
    nightly = schedule("nightly", cron="0 2 * * *")
    assert nightly.next_tick(utc(2024, 3, 9, 12)) == utc(2024, 3, 10, 2)
    assert nightly.next_tick(utc(2024, 3, 10, 2)) == utc(2024, 3, 11, 2)  # strictly after
    assert nightly.latest_tick(utc(2024, 3, 10, 2)) == utc(2024, 3, 10, 2)  # at or before
    assert nightly.latest_tick(utc(2024, 3, 10, 1, 59)) == utc(2024, 3, 9, 2)


def test_a_time_zone_moves_the_tick_with_its_offset() -> None:
    nightly = schedule("nightly", cron="0 2 * * *", timezone="Europe/Amsterdam")
    assert nightly.next_tick(utc(2024, 1, 15)) == utc(2024, 1, 15, 1)  # CET, UTC+1
    assert nightly.next_tick(utc(2024, 7, 14, 12)) == utc(2024, 7, 15, 0)  # CEST, UTC+2
    kolkata = schedule("k", cron="30 9 * * 1-5", timezone="Asia/Kolkata")
    assert kolkata.next_tick(utc(2024, 3, 8, 5)) == utc(2024, 3, 11, 4)  # Fri -> Mon 09:30 IST


def test_spring_forward_runs_a_skipped_wall_time_once_an_hour_later() -> None:
    # 2024-03-10 in New York: 02:00 EST jumps to 03:00 EDT; 02:30 does not exist.
    sched = schedule("s", cron="30 2 * * *", timezone="America/New_York")
    ticks = ticks_between(sched, utc(2024, 3, 9), utc(2024, 3, 12))
    assert ticks == [utc(2024, 3, 9, 7, 30), utc(2024, 3, 10, 7, 30), utc(2024, 3, 11, 6, 30)]
    assert sched.local(ticks[1]).strftime("%H:%M %Z") == "03:30 EDT"


def test_spring_forward_keeps_an_hourly_schedule_without_duplicates() -> None:
    hourly = schedule("h", cron="0 * * * *", timezone="America/New_York")
    ticks = ticks_between(hourly, utc(2024, 3, 10, 4), utc(2024, 3, 10, 9))
    assert ticks == [utc(2024, 3, 10, h) for h in range(5, 10)]  # one per real hour
    assert [hourly.local(t).hour for t in ticks] == [0, 1, 3, 4, 5]


def test_fall_back_runs_a_fixed_time_once_and_an_hourly_schedule_in_both_hours() -> None:
    # 2024-11-03 in New York: 02:00 EDT goes back to 01:00 EST; 01:30 happens twice.
    fixed = schedule("f", cron="30 1 * * *", timezone="America/New_York")
    assert ticks_between(fixed, utc(2024, 11, 3), utc(2024, 11, 4)) == [utc(2024, 11, 3, 5, 30)]
    hourly = schedule("h", cron="0 * * * *", timezone="America/New_York")
    ticks = ticks_between(hourly, utc(2024, 11, 3, 3), utc(2024, 11, 3, 8))
    assert ticks == [utc(2024, 11, 3, h) for h in range(4, 9)]
    assert [hourly.local(t).strftime("%H %Z") for t in ticks] == [
        "00 EDT",
        "01 EDT",
        "01 EST",
        "02 EST",
        "03 EST",
    ]


def test_catchup_off_runs_only_the_latest_missed_tick() -> None:
    nightly = schedule("nightly", cron="0 2 * * *", catchup=False)
    last_run = utc(2024, 3, 4, 2)  # Monday; the scheduler was down until Thursday 03:00
    assert run_ticks(nightly, last_run, utc(2024, 3, 7, 3)) == [utc(2024, 3, 7, 2)]


def test_catchup_on_runs_every_missed_tick_in_order() -> None:
    nightly = schedule("nightly", cron="0 2 * * *", catchup=True)
    last_run = utc(2024, 3, 4, 2)
    assert run_ticks(nightly, last_run, utc(2024, 3, 7, 3)) == [
        utc(2024, 3, 5, 2),
        utc(2024, 3, 6, 2),
        utc(2024, 3, 7, 2),
    ]


def test_nothing_is_due_between_ticks_and_a_tick_is_due_at_its_instant() -> None:
    every = schedule("m", cron="*/5 * * * *")
    since = utc(2024, 1, 1, 10, 0)
    assert due_tick(every, since, utc(2024, 1, 1, 10, 4, 59)) is None
    assert due_tick(every, since, utc(2024, 1, 1, 10, 5)) == utc(2024, 1, 1, 10, 5)


def test_catchup_across_a_dst_change_takes_each_real_tick_once() -> None:
    hourly = schedule("h", cron="0 * * * *", timezone="Europe/Amsterdam", catchup=True)
    # 2024-10-27: 03:00 CEST goes back to 02:00 CET; the 02:00 hour happens twice.
    ticks = run_ticks(hourly, utc(2024, 10, 26, 22), utc(2024, 10, 27, 4))
    assert ticks == [utc(2024, 10, 26, 23) + timedelta(hours=h) for h in range(6)]


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule("n", cron="* * * * *").next_tick(datetime(2024, 1, 1))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "bad name", "cron": "* * * * *"}, "invalid schedule name"),
        ({"name": "s", "cron": "61 * * * *"}, "invalid cron expression"),
        ({"name": "s", "cron": "0 2 * * *", "timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"name": "s", "cron": "0 2 * * *", "select": []}, "select must name something"),
        ({"name": "s", "cron": "0 0 30 2 *"}, "never fires"),
    ],
)
def test_bad_declarations_name_the_file_and_line(kwargs: dict[str, object], message: str) -> None:
    name = kwargs.pop("name")
    with pytest.raises(DefinitionError, match=message) as caught:
        schedule(name, **kwargs)  # type: ignore[arg-type]
    assert caught.value.file == __file__
    assert caught.value.line is not None


ASSET = """
    import pyarrow as pa

    from orchestrator import asset, schedule

    @asset(layer="bronze")
    def raw(ctx):
        return pa.table({"id": [1]})

    nightly = schedule("nightly", cron="0 2 * * *", select="*")
    """


def test_the_loader_collects_schedules_from_asset_modules(project: ProjectDir) -> None:
    project.write(
        {
            "assets/bronze/raw.py": ASSET,
            "assets/schedules.py": """
                from orchestrator import schedule

                hourly = schedule("hourly", cron="0 * * * *", select=["layer:bronze"])
                """,
        }
    )
    loaded = load_project(project.root)
    assert [s.name for s in loaded.schedules] == ["hourly", "nightly"]
    assert loaded.schedules[0].select == ("layer:bronze",)


def test_two_schedules_with_one_name_are_a_definition_error(project: ProjectDir) -> None:
    project.write(
        {
            "assets/bronze/raw.py": ASSET,
            "assets/other.py": """
                from orchestrator import schedule

                again = schedule("nightly", cron="0 3 * * *")
                """,
        }
    )
    result = project.sluice("schedules")
    assert result.code == 2
    assert "schedule 'nightly' is declared twice" in result.out
    assert "other.py" in result.out


def test_a_schedule_selecting_nothing_is_a_definition_error(project: ProjectDir) -> None:
    project.write(
        {
            "assets/bronze/raw.py": ASSET.replace('select="*"', 'select="layer:gold"'),
        }
    )
    result = project.sluice("plan")
    assert result.code == 2
    assert "schedule nightly" in result.out
    assert "raw.py" in result.out


def test_sluice_schedules_lists_the_next_tick(project: ProjectDir) -> None:
    project.write({"assets/bronze/raw.py": ASSET})
    result = project.sluice("schedules")
    assert result.code == 0, result.out
    assert "nightly" in result.out
    assert "0 2 * * * UTC" in result.out
    assert "T02:00:00+00:00" in result.out


ZONES = ["UTC", "Europe/Amsterdam", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]
CRONS = ["0 2 * * *", "*/20 * * * *", "30 1 * * 0", "0 * * * *", "15 2,3 1 * *"]


@settings(max_examples=60, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    cron=st.sampled_from(CRONS),
    at=st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1)),
)
def test_latest_and_next_tick_bracket_any_moment(zone: str, cron: str, at: datetime) -> None:
    sched = schedule("p", cron=cron, timezone=zone)
    now = at.replace(tzinfo=UTC)
    latest, following = sched.latest_tick(now), sched.next_tick(now)
    assert latest is not None and following is not None
    assert latest <= now < following
    assert ticks_between(sched, latest, following) == [following]  # nothing in between
