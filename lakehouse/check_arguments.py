"""Validation of the plain arguments of checks: severities, column names, accepted values,
`layer.asset` targets and ages; plus the short forms of ages and SQL shown in check names.

Separate because both the builders (at definition time) and the SQL generation (again, on
whatever `Check` it is given) validate the same arguments with the same messages. Pure Python:
no SQL, DuckDB or sqlglot.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from lakehouse.check_model import Severity
from lakehouse.errors import SluiceError


def valid_severity(value: object) -> Severity:
    if value == "error":
        return "error"
    if value == "warn":
        return "warn"
    raise SluiceError(f'severity must be "error" or "warn", got {value!r}')


def column_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not name:
        raise SluiceError(f"{what}: a column name must be a non-empty string, got {name!r}")
    return name


def column_names(names: Iterable[object], what: str) -> tuple[str, ...]:
    cols = tuple(column_name(n, what) for n in names)
    if not cols:
        raise SluiceError(f"{what}: at least one column is required")
    if len(set(cols)) != len(cols):
        raise SluiceError(f"{what}: a column is listed twice in {list(cols)!r}")
    return cols


def value_kind(values: Sequence[Any], column: str) -> Literal["str", "number", "bool"]:
    """Accepted values must be JSON scalars of one kind, so they bind as one typed list."""
    kinds: set[str] = set()
    for v in values:
        if isinstance(v, bool):
            kinds.add("bool")
        elif isinstance(v, int | float):
            if isinstance(v, float) and not math.isfinite(v):
                raise SluiceError(f"accepted_values({column}): {v!r} is not an accepted value")
            kinds.add("number")
        elif isinstance(v, str):
            kinds.add("str")
        else:
            raise SluiceError(
                f"accepted_values({column}): {v!r} is not a string, number or boolean"
            )
    if len(kinds) != 1:
        raise SluiceError(
            f"accepted_values({column}): values mix {' and '.join(sorted(kinds))}; use one type"
        )
    kind = kinds.pop()
    return "str" if kind == "str" else "bool" if kind == "bool" else "number"


def layer_asset(to: object) -> str:
    parts = to.split(".") if isinstance(to, str) else []
    if len(parts) != 2 or not all(parts):
        raise SluiceError(
            f'relationships: to= must be "layer.asset" (e.g. gold.dim_customer), got {to!r}'
        )
    return f"{parts[0]}.{parts[1]}"


_AGE_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_AGE_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*")


def age_seconds(max_age: object) -> float:
    """Seconds in `max_age`: a timedelta, a number of seconds, or "1h30m"-style text."""
    seconds: float
    if isinstance(max_age, dt.timedelta):
        seconds = max_age.total_seconds()
    elif isinstance(max_age, int | float) and not isinstance(max_age, bool):
        seconds = float(max_age)
    elif isinstance(max_age, str):
        pos, seconds, text = 0, 0.0, max_age.strip().lower()
        while pos < len(text):
            match = _AGE_PART.match(text, pos)
            if match is None or match.end() == pos:
                raise SluiceError(
                    f"freshness: cannot read max_age {max_age!r}; use e.g. '30m', '24h', '2d'"
                )
            seconds += float(match.group(1)) * _AGE_UNITS[match.group(2)]
            pos = match.end()
        if not text:
            raise SluiceError("freshness: max_age is empty")
    else:
        raise SluiceError(
            f"freshness: max_age must be a timedelta, seconds or text like '24h', got {max_age!r}"
        )
    if not math.isfinite(seconds) or seconds <= 0:
        raise SluiceError(f"freshness: max_age must be positive, got {max_age!r}")
    return seconds


def format_age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def shorten(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
