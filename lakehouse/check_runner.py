"""Running checks on a DuckDB relation: `run_checks`, with failing-row counts and samples.

Separate from SQL generation because it owns the execution guarantees: a check that cannot be
built or run never raises but becomes a failed (blocking, if severity error) result; nothing is
left on the connection; samples are always JSON-safe.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import uuid
from collections.abc import Sequence
from typing import Any

import duckdb

from lakehouse.check_arguments import column_names
from lakehouse.check_model import Check, CheckResult, seq_param
from lakehouse.check_sql import failing_rows_sql, ident, relation_sql
from lakehouse.errors import SluiceError


def run_checks(
    con: duckdb.DuckDBPyConnection,
    relation: str,
    checks: Sequence[Check],
    *,
    sample_size: int = 5,
    failing: Sequence[int | None] | None = None,
) -> list[CheckResult]:
    """Run `checks` over `relation` on `con`, one result per check, in order.

    `failing[i]`, when given and not None, is the failing-row count of `checks[i]` over
    `relation` already known (from `failing_counts_by_group`): that check is not counted
    again, only sampled when it failed, so its result is what counting it here would give.

    Never raises because of a check: a check whose SQL cannot be built or run becomes a failed
    result with `error` set (blocking if its severity is error). Nothing is left on `con`.
    """
    if sample_size < 0:
        raise SluiceError(f"sample_size must not be negative, got {sample_size}")
    if failing is not None and len(failing) != len(checks):
        raise SluiceError(f"{len(failing)} known failing counts for {len(checks)} checks")
    results: list[CheckResult] = []
    for number, check in enumerate(checks):
        known = failing[number] if failing is not None else None
        if known == 0:
            results.append(_result(check, 0, []))
            continue
        try:
            query, params = failing_rows_sql(check, relation)
            if known is None and check.kind == "unique" and _all_distinct(con, check, relation):
                known = 0
            if known is None:
                # fetchall, not fetchone: it completes the result, which DuckDB requires before
                # the connection runs anything else.
                count_rows = con.execute(
                    f'SELECT count(*) FROM ({query}) AS "failing_rows"', params
                ).fetchall()
                known = int(count_rows[0][0])
            samples: list[dict[str, Any]] = []
            if known and sample_size:
                samples = _fetch_samples(con, query, params, sample_size)
        except (duckdb.Error, SluiceError) as exc:
            results.append(
                CheckResult(
                    name=check.name,
                    kind=check.kind,
                    severity=check.severity,
                    passed=False,
                    failing_rows=0,
                    samples=[],
                    error=f"check {check.name} could not run on {relation}: {exc}",
                )
            )
            continue
        results.append(_result(check, known, samples))
    return results


def _all_distinct(con: duckdb.DuckDBPyConnection, check: Check, relation: str) -> bool:
    """Whether a `unique` check passes, proven by one count of distinct key hashes (cheaper
    than grouping by the key, and the common case). Keys DuckDB groups as equal have equal
    hashes (its grouping relies on it), so as many distinct hashes as rows proves every key
    distinct; a repeated key, or a mere hash collision, sends the check to the exact count."""
    cols = column_names(seq_param(check, "columns"), check.kind)
    not_null_keys = " AND ".join(f"{ident(c)} IS NOT NULL" for c in cols)
    [(rows, distinct)] = con.execute(
        f"SELECT count(*), count(DISTINCT hash({', '.join(ident(c) for c in cols)})) "
        f"FROM {relation_sql(relation)} WHERE {not_null_keys}"
    ).fetchall()
    return bool(rows == distinct)


def _result(check: Check, failing: int, samples: list[dict[str, Any]]) -> CheckResult:
    return CheckResult(
        name=check.name,
        kind=check.kind,
        severity=check.severity,
        passed=failing == 0,
        failing_rows=failing,
        samples=samples,
    )


def _fetch_samples(
    con: duckdb.DuckDBPyConnection, query: str, params: list[Any], limit: int
) -> list[dict[str, Any]]:
    """The first `limit` failing rows as JSON-safe dicts.

    Rows go through Arrow rather than DuckDB's Python conversion, which cannot produce
    TIMESTAMPTZ values without the optional pytz package. Values Python cannot represent at
    all (e.g. infinite timestamps) make the whole sample fall back to DuckDB's text form.
    """
    sampled = f'SELECT * FROM ({query}) AS "failing_rows" LIMIT {int(limit)}'
    try:
        rows = _arrow_rows(con, sampled, params)
    except Exception:  # any conversion failure; the text fallback raises if the query is bad
        as_text = f'SELECT CAST(COLUMNS(*) AS VARCHAR) FROM ({sampled}) AS "sampled"'
        rows = _arrow_rows(con, as_text, params)
    return [{str(k): _json_safe(v) for k, v in row.items()} for row in rows]


def _arrow_rows(con: duckdb.DuckDBPyConnection, query: str, params: list[Any]) -> list[Any]:
    rel = con.sql(query, params=params)
    to_arrow = getattr(rel, "to_arrow_table", None) or rel.fetch_arrow_table
    return list(to_arrow().to_pylist())


def _json_safe(value: Any) -> Any:
    """A JSON-encodable copy of a sampled value (temporal, decimal, bytes... become text)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    fields = getattr(value, "__match_args__", None)  # named tuples, e.g. Arrow's MonthDayNano
    if isinstance(value, tuple) and isinstance(fields, tuple) and len(fields) == len(value):
        return {str(k): _json_safe(v) for k, v in zip(fields, value, strict=True)}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID | dt.timedelta):
        return str(value)
    return str(value)
