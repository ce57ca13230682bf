"""The header of a SQL asset: its leading `-- key: value` comment lines, read into `_Header`.

The header configures the asset (checks, tags, description, owners, deps, retry, code_version,
partitions, timeout_s) and is never part of its query, so editing it never changes the query's
code version. Lines with other keys are ordinary comments; a key that takes one value is an
error when given twice. Every error names the file and the header line.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lakehouse.errors import SluiceError
from orchestrator.assets import Retry, validate_name
from orchestrator.errors import DefinitionError
from orchestrator.partitions import TimePartitions
from orchestrator.sql_header_checks import CHECK_CALL, numeric_literal, parse_check, split_calls
from orchestrator.sql_location import Where

if TYPE_CHECKING:
    from lakehouse.audits import Check


HEADER_KEYS = (
    "checks",
    "tags",
    "description",
    "owners",
    "deps",
    "retry",
    "code_version",
    "partitions",
    "timeout_s",
)

_HEADER_LINE = re.compile(r"^--\s*([A-Za-z_][A-Za-z0-9_]*)\s*:(.*)$")


@dataclass
class _Header:
    checks: list[Check] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    description: list[str] = field(default_factory=list)
    owners: list[str] = field(default_factory=list)
    deps: list[str] = field(default_factory=list)
    retry: Retry | None = None
    code_version: str | None = None
    partitions: TimePartitions | None = None
    timeout_s: float | None = None


def is_header_line(line: str) -> bool:
    stripped = line.strip()
    return not stripped or stripped.startswith("--")


def parse_header(lines: list[str], file: str, asset: str) -> _Header:
    header = _Header()
    for number, raw in enumerate(lines, start=1):
        match = _HEADER_LINE.match(raw.strip())
        if match is None:
            continue
        key, value = match.group(1).lower(), match.group(2).strip()
        where = Where(file, number, asset)
        if key == "partitions":
            if header.partitions is not None:
                raise where.error("partitions is given twice in the header")
            header.partitions = _parse_partitions(value, where)
        elif key == "checks":
            header.checks.extend(parse_check(call, where) for call in split_calls(value, where))
        elif key == "tags":
            header.tags.extend(_split_list(value))
        elif key == "owners":
            header.owners.extend(_split_list(value))
        elif key == "description":
            if value:
                header.description.append(value)
        elif key == "deps":
            header.deps.extend(_validate_ref(ref, where) for ref in _split_list(value))
        elif key == "retry":
            if header.retry is not None:
                raise where.error("retry is given twice in the header")
            header.retry = _parse_retry(value, where)
        elif key == "code_version":
            if header.code_version is not None:
                raise where.error("code_version is given twice in the header")
            if not value:
                raise where.error("code_version is empty")
            header.code_version = value
        elif key == "timeout_s":
            if header.timeout_s is not None:
                raise where.error("timeout_s is given twice in the header")
            try:
                header.timeout_s = float(value)
            except ValueError:
                header.timeout_s = -1.0
            if not header.timeout_s > 0:
                raise where.error(f"timeout_s must be a number of seconds > 0, got {value!r}")
    return header


_PARTITION_KINDS = {"hourly": "hour", "daily": "day", "monthly": "month"}


def _parse_partitions(value: str, where: Where) -> TimePartitions:
    """`daily(start=2024-01-01, column=order_date[, timezone=UTC, lookback=6, end_offset=0])`."""
    match = CHECK_CALL.match(value)
    kind = match.group(1).lower() if match else ""
    if match is None or kind not in _PARTITION_KINDS:
        raise where.error(
            f"invalid partitions {value!r}: expected daily(start=2024-01-01, column=order_date), "
            "or hourly(...) / monthly(...)"
        )
    options: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in match.group(2).split(","))):
        name, sep, raw = part.partition("=")
        if not sep:
            raise where.error(f"invalid partitions option {part!r}: expected name=value")
        options[name.strip()] = raw.strip().strip("'\"")
    unknown = set(options) - {"start", "column", "timezone", "lookback", "end_offset"}
    if unknown or not {"start", "column"} <= set(options):
        raise where.error(
            "partitions take start= and column=, and optionally timezone=, lookback=, end_offset="
        )
    try:
        return TimePartitions(
            granularity=_PARTITION_KINDS[kind],  # type: ignore[arg-type]
            start=options["start"],
            column=options["column"],
            timezone=options.get("timezone", "UTC"),
            lookback=int(options.get("lookback", "0")),
            end_offset=int(options.get("end_offset", "0")),
        )
    except (ValueError, SluiceError) as exc:
        message = exc.message if isinstance(exc, SluiceError) else str(exc)
        raise where.error(f"invalid partitions: {message}") from None


def _split_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _validate_ref(ref: str, where: Where) -> str:
    parts = ref.split(".")
    if len(parts) > 2:
        raise where.error(f"invalid upstream {ref!r} in deps: expected 'name' or 'layer.name'")
    for part in parts:
        validate_name(part, "upstream reference", file=where.file, line=where.line)
    return ref


def _parse_retry(value: str, where: Where) -> Retry:
    allowed = {f.name: f.type for f in dataclasses.fields(Retry)}
    usage = f"expected e.g. 'retry: attempts=3, backoff_s=2' (keys: {', '.join(allowed)})"
    try:
        call = ast.parse(f"_({value})", mode="eval").body
    except SyntaxError:
        raise where.error(f"cannot read retry {value!r}: {usage}") from None
    if not isinstance(call, ast.Call) or call.args or not call.keywords:
        raise where.error(f"cannot read retry {value!r}: {usage}")
    kwargs: dict[str, float | int] = {}
    for keyword in call.keywords:
        number = numeric_literal(keyword.value)
        if keyword.arg not in allowed or number is None:
            raise where.error(f"cannot read retry {value!r}: {usage}")
        if keyword.arg == "attempts" and not isinstance(number, int):
            raise where.error(f"retry attempts must be an integer, got {number!r}")
        kwargs[keyword.arg] = number
    try:
        return Retry(**kwargs)  # type: ignore[arg-type]
    except DefinitionError as exc:
        raise where.error(f"bad retry {value!r}: {exc.message}") from None
