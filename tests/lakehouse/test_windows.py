"""Row windows: typed bounds, DuckDB predicates, Iceberg partition transforms, file splitting."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import duckdb
import pyarrow as pa
import pytest
from pyiceberg.schema import Schema
from pyiceberg.transforms import DayTransform, HourTransform, MonthTransform
from pyiceberg.types import (
    DateType,
    LongType,
    NestedField,
    StringType,
    TimestampType,
    TimestamptzType,
)

from lakehouse.errors import SchemaChangeError
from lakehouse.windows import RowWindow

NY = ZoneInfo("America/New_York")
LONDON = ZoneInfo("Europe/London")
UTC_ZONE = ZoneInfo("UTC")


def schema(column_type: object, column: str = "ts") -> Schema:
    return Schema(
        NestedField(1, column, column_type, required=False),  # type: ignore[arg-type]
        NestedField(2, "id", LongType(), required=False),
    )


def day(key: str, zone: ZoneInfo = UTC_ZONE, column: str = "ts") -> RowWindow:
    start = datetime.fromisoformat(key).replace(tzinfo=zone)
    end = datetime.fromisoformat(key).replace(day=start.day + 1, tzinfo=zone)
    return RowWindow(column, start, end, key, "day")


# The New York hour 01:00 of 2024-11-03 happens twice: as a partition it is 05:00..07:00 UTC.
REPEATED_HOUR = RowWindow(
    "ts",
    datetime(2024, 11, 3, 5, tzinfo=UTC).astimezone(NY),
    datetime(2024, 11, 3, 7, tzinfo=UTC).astimezone(NY),
    "2024-11-03T01",
    "hour",
)


def test_bounds_follow_the_column_type() -> None:
    window = day("2024-01-02", NY)
    assert window.bounds(schema(DateType())) == (date(2024, 1, 2), date(2024, 1, 3))
    assert window.bounds(schema(TimestampType())) == (
        datetime(2024, 1, 2),
        datetime(2024, 1, 3),
    )  # local wall-clock time
    low, high = window.bounds(schema(TimestamptzType()))
    assert (low, high) == (datetime(2024, 1, 2, 5, tzinfo=UTC), datetime(2024, 1, 3, 5, tzinfo=UTC))
    assert isinstance(low, datetime) and isinstance(high, datetime)
    assert low.utcoffset() == high.utcoffset() == UTC.utcoffset(None)
    # The repeated hour: wall clock 01:00..02:00, instants 05:00..07:00 UTC.
    assert REPEATED_HOUR.bounds(schema(TimestampType())) == (
        datetime(2024, 11, 3, 1),
        datetime(2024, 11, 3, 2),
    )
    assert REPEATED_HOUR.bounds(schema(TimestamptzType())) == (
        datetime(2024, 11, 3, 5, tzinfo=UTC),
        datetime(2024, 11, 3, 7, tzinfo=UTC),
    )


def test_a_missing_or_non_temporal_partition_column_is_a_schema_error() -> None:
    window = day("2024-01-02")
    with pytest.raises(SchemaChangeError, match="'ts' is string; it must be a date"):
        window.bounds(schema(StringType()))
    with pytest.raises(SchemaChangeError, match="'ts' is string"):
        window.spec_transform(schema(StringType()))
    with pytest.raises(SchemaChangeError, match="no partition column 'ts'"):
        window.spec_transform(schema(DateType(), column="other"))
    with pytest.raises(SchemaChangeError, match="no partition column 'ts'"):
        window.split(pa.table({"other": [1]}))


def _selected(window: RowWindow, column_type: object, values: pa.Array) -> list[object]:
    con = duckdb.connect()
    try:
        con.register("t", pa.table({window.column: values}))
        predicate = window.sql_predicate(schema(column_type, window.column))
        rows = con.sql(f"SELECT * FROM t WHERE {predicate} ORDER BY 1").to_arrow_table()
        return rows.column(0).to_pylist()
    finally:
        con.close()


def test_sql_predicate_selects_exactly_the_window_in_duckdb() -> None:
    window = day("2024-01-02")
    dates = pa.array([date(2024, 1, 1), date(2024, 1, 2), date(2024, 1, 3), None])
    assert _selected(window, DateType(), dates) == [date(2024, 1, 2)]

    naive = pa.array(
        [datetime(2024, 1, 1, 23, 59, 59), datetime(2024, 1, 2), datetime(2024, 1, 2, 23, 59)]
        + [datetime(2024, 1, 3)],
        pa.timestamp("us"),
    )
    assert _selected(window, TimestampType(), naive) == [
        datetime(2024, 1, 2),
        datetime(2024, 1, 2, 23, 59),
    ]

    # Both 01:30s of the repeated New York hour, and nothing of the hours around it.
    instants = [datetime(2024, 11, 3, h, m, tzinfo=UTC) for h, m in [(4, 59), (5, 30), (6, 30)]]
    instants += [datetime(2024, 11, 3, 7, tzinfo=UTC)]
    selected = _selected(
        REPEATED_HOUR, TimestamptzType(), pa.array(instants, pa.timestamp("us", "UTC"))
    )
    assert [v.astimezone(UTC) for v in selected] == instants[1:3]  # type: ignore[attr-defined]


def test_sql_predicate_quotes_the_column_and_types_the_bounds() -> None:
    window = day("2024-01-02", column='odd "name"')
    predicate = window.sql_predicate(schema(DateType(), 'odd "name"'))
    assert predicate == (
        '"odd ""name""" >= CAST(\'2024-01-02\' AS DATE) '
        'AND "odd ""name""" < CAST(\'2024-01-03\' AS DATE)'
    )
    values = pa.array([date(2024, 1, 2), date(2024, 1, 3)])
    assert _selected(window, DateType(), values) == [date(2024, 1, 2)]


def test_overlaps_compares_instants_on_the_same_column() -> None:
    window = day("2024-01-02")
    assert not window.overlaps("ts", "2024-01-01T00:00:00+00:00", "2024-01-02T00:00:00+00:00")
    assert not window.overlaps("ts", "2024-01-03T00:00:00+00:00", "2024-01-04T00:00:00+00:00")
    assert window.overlaps("ts", "2024-01-02T23:00:00+00:00", "2024-01-03T01:00:00+00:00")
    assert window.overlaps("ts", "2024-01-01T00:00:00+00:00", "2024-02-01T00:00:00+00:00")
    # A New York day recorded with its offsets overlaps two UTC days.
    assert window.overlaps("ts", "2024-01-01T00:00:00-05:00", "2024-01-02T00:00:00-05:00")
    # Rows on another column may be anywhere: always a conflict.
    assert window.overlaps("other", "1990-01-01T00:00:00+00:00", "1990-01-02T00:00:00+00:00")
    # The window survives the trip through provenance (ISO strings with offsets).
    assert REPEATED_HOUR.overlaps(*REPEATED_HOUR.to_json())
    column, start, end = REPEATED_HOUR.to_json()
    assert (start, end) == ("2024-11-03T01:00:00-04:00", "2024-11-03T02:00:00-05:00")


@pytest.mark.parametrize(
    ("window", "column_type", "expected"),
    [
        (day("2024-01-02"), DateType(), DayTransform),
        (day("2024-01-02"), TimestamptzType(), DayTransform),
        (day("2024-01-02", NY), TimestampType(), DayTransform),  # wall-clock days line up
        (REPEATED_HOUR, TimestampType(), HourTransform),
        (REPEATED_HOUR, DateType(), None),  # hours of a date: no transform
        (REPEATED_HOUR, TimestamptzType(), None),  # New York hours are not UTC hours
        (day("2024-07-02", NY), TimestamptzType(), None),
        # London is UTC in winter, but its summer days are not UTC days: the table's spec is set
        # once, so a winter window must not give it a UTC day transform either.
        (day("2024-01-10", LONDON), TimestamptzType(), None),
        (day("2024-07-10", LONDON), TimestamptzType(), None),
        (
            RowWindow(
                "ts",
                datetime(2024, 1, 1, tzinfo=UTC_ZONE),
                datetime(2024, 2, 1, tzinfo=UTC_ZONE),
                "2024-01",
                "month",
            ),
            TimestamptzType(),
            MonthTransform,
        ),
    ],
)
def test_spec_transform_only_when_iceberg_partitions_line_up_with_windows(
    window: RowWindow, column_type: object, expected: type | None
) -> None:
    transform = window.spec_transform(schema(column_type))
    if expected is None:
        assert transform is None
    else:
        assert isinstance(transform, expected)


def test_split_assigns_each_row_its_local_partition() -> None:
    instants = [
        datetime(2024, 1, 2, 4, 59, tzinfo=UTC),  # still Jan 1 in New York
        datetime(2024, 1, 2, 5, 0, tzinfo=UTC),
        datetime(2024, 1, 3, 4, 59, tzinfo=UTC),
        None,
    ]
    rows = pa.table({"ts": pa.array(instants, pa.timestamp("us", "UTC"))})
    assert day("2024-01-02", NY).split(rows).to_pylist() == [
        "2024-01-01",
        "2024-01-02",
        "2024-01-02",
        "null",
    ]
    naive = pa.table({"ts": pa.array([datetime(2024, 11, 3, 1, 30)], pa.timestamp("us"))})
    assert REPEATED_HOUR.split(naive).to_pylist() == ["2024-11-03T01"]
    dates = pa.table({"ts": pa.array([date(2024, 1, 2), date(2024, 1, 31)])})
    assert day("2024-01-02").split(dates).to_pylist() == ["2024-01-02", "2024-01-31"]
