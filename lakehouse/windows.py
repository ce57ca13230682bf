"""Row windows: the rows of one partition (or a range of them) as `start <= column < end`.

The lakehouse knows nothing of calendars; the orchestrator hands it a window, and here it
becomes an Iceberg row filter (for replacing and pruning files), a DuckDB predicate (for
scoping audits and reads), and a partition transform for the table's spec.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.expressions import And, BooleanExpression, GreaterThanOrEqual, LessThan
from pyiceberg.schema import Schema
from pyiceberg.transforms import DayTransform, HourTransform, MonthTransform, Transform
from pyiceberg.types import DateType, TimestampType, TimestamptzType

from lakehouse.errors import SchemaChangeError

TransformName = Literal["hour", "day", "month"]
SPLIT_FORMATS = {"hour": "%Y-%m-%dT%H", "day": "%Y-%m-%d", "month": "%Y-%m"}
TRANSFORMS: dict[str, type[Transform]] = {  # type: ignore[type-arg]
    "hour": HourTransform,
    "day": DayTransform,
    "month": MonthTransform,
}


@dataclass(frozen=True)
class RowWindow:
    """Rows with `start <= column < end`; `label` names it (a partition key or a range).

    Bounds are timezone-aware. A `date` column compares with the bounds' local dates, a
    timestamp without time zone with their local wall-clock time, a `timestamptz` column with
    the absolute instants.
    """

    column: str
    start: datetime
    end: datetime
    label: str
    transform: TransformName = "day"

    def overlaps(self, column: str, start: str, end: str) -> bool:
        """Whether this window overlaps a window recorded as ISO strings on the same column."""
        if column != self.column:
            return True
        return datetime.fromisoformat(start) < self.end and self.start < datetime.fromisoformat(end)

    def bounds(self, schema: Schema) -> tuple[date | datetime, date | datetime]:
        """The bounds as values comparable with the column's type."""
        field_type = self._field_type(schema)
        if isinstance(field_type, DateType):
            return self.start.date(), self.end.date()
        if isinstance(field_type, TimestamptzType):
            return self.start.astimezone(UTC), self.end.astimezone(UTC)
        return self.start.replace(tzinfo=None), self.end.replace(tzinfo=None)

    def _field_type(self, schema: Schema) -> DateType | TimestampType | TimestamptzType:
        """The partition column's type; a missing or non-temporal column is a schema error
        (the user's to fix), not a crash."""
        try:
            field = schema.find_field(self.column)
        except ValueError:
            raise SchemaChangeError(f"the result has no partition column {self.column!r}") from None
        if not isinstance(field.field_type, DateType | TimestampType | TimestamptzType):
            raise SchemaChangeError(
                f"partition column {self.column!r} is {field.field_type}; "
                "it must be a date or a timestamp"
            )
        return field.field_type

    def iceberg_filter(self, schema: Schema) -> BooleanExpression:
        low, high = self.bounds(schema)
        return And(
            GreaterThanOrEqual(self.column, low.isoformat()),  # type: ignore[call-arg,arg-type]
            LessThan(self.column, high.isoformat()),  # type: ignore[call-arg,arg-type]
        )

    def sql_predicate(self, schema: Schema) -> str:
        """DuckDB predicate selecting the window (column and bounds rendered by sqlglot, never
        spliced)."""
        low, high = self.sql_bounds(schema)
        column = self.sql_column()
        return f"{column} >= {low} AND {column} < {high}"

    def sql_column(self) -> str:
        """The column as a quoted DuckDB identifier."""
        from sqlglot import exp

        return str(exp.column(self.column, quoted=True).sql(dialect="duckdb"))

    def sql_bounds(self, schema: Schema) -> tuple[str, str]:
        """The bounds as the typed DuckDB literals `sql_predicate` compares the column with."""
        low, high = self.bounds(schema)
        kind = (
            "DATE"
            if isinstance(low, date) and not isinstance(low, datetime)
            else ("TIMESTAMPTZ" if isinstance(low, datetime) and low.tzinfo else "TIMESTAMP")
        )
        return _typed_literal(low.isoformat(), kind), _typed_literal(high.isoformat(), kind)

    def spec_transform(self, schema: Schema) -> Transform | None:  # type: ignore[type-arg]
        """The partition transform for the table, or None when Iceberg's UTC transforms would
        not line up with the window (a `timestamptz` column partitioned in another timezone)."""
        field_type = self._field_type(schema)
        if isinstance(field_type, TimestamptzType) and not self._utc_aligned():
            return None
        if isinstance(field_type, DateType) and self.transform == "hour":
            return None
        return TRANSFORMS[self.transform]()  # type: ignore[call-arg]

    def _utc_aligned(self) -> bool:
        """Whether the window's timezone is UTC all year, so that its partitions are Iceberg's
        UTC days/hours/months. One window with offset 0 is not enough: the spec is set once
        for the table, and a London winter day is a UTC day while a summer day is not."""
        zone = self.start.tzinfo
        moments = [self.start, self.end]
        for year in {self.start.year, self.end.year}:
            moments += [datetime(year, 1, 1, tzinfo=zone), datetime(year, 7, 1, tzinfo=zone)]
        return all(not m.utcoffset() for m in moments)

    def split(self, rows: pa.Table) -> pa.Array:
        """Each row's partition within the window (by the window's transform, in its timezone),
        so that every data file holds exactly one partition.

        The key is the row's local wall-clock value formatted at the transform's precision.
        Formatting is slow per row, so each value is first floored to the transform's unit
        (which the format cannot tell apart) and only the distinct floored values, a handful
        per batch, are formatted."""
        if self.column not in rows.column_names:
            raise SchemaChangeError(f"the result has no partition column {self.column!r}")
        values = rows.column(self.column).combine_chunks()
        if pa.types.is_timestamp(values.type):
            if values.type.tz is not None:
                zone = getattr(self.start.tzinfo, "key", "UTC")
                local = pc.local_timestamp(values.cast(pa.timestamp(values.type.unit, tz=zone)))
            else:
                local = values
            values = pc.floor_temporal(local, unit=self.transform)
        encoded = pc.dictionary_encode(values)
        formatted = pc.strftime(encoded.dictionary, format=SPLIT_FORMATS[self.transform])
        return pc.fill_null(pc.take(formatted, encoded.indices), "null")

    def to_json(self) -> list[str]:
        return [self.column, self.start.isoformat(), self.end.isoformat()]


@functools.lru_cache(maxsize=4096)
def _typed_literal(text: str, kind: str) -> str:
    """`CAST('<text>' AS <kind>)` rendered by sqlglot (a ranged audit renders each bound of
    hundreds of windows several times)."""
    from sqlglot import exp

    return str(exp.cast(exp.Literal.string(text), kind).sql(dialect="duckdb"))
