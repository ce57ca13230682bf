"""The `-- checks:` line of a SQL asset's header, read into the checks `orchestrator.checks`
builds: `not_null(order_id); unique(order_id); expression(amount >= 0)`.

A check call is read with Python's syntax but never evaluated: bare names are column names,
dotted names are table names, literals are themselves, and `expression(...)` and `sql(...)`
take their SQL verbatim. Every error names the file and the header line. The builders (and
DuckDB with them) are imported with the first check, not on import.
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from lakehouse.errors import SluiceError

if TYPE_CHECKING:
    from lakehouse.audits import Check
    from orchestrator.sql_location import Where


CHECK_NAMES = (
    "not_null",
    "unique",
    "accepted_values",
    "row_count",
    "expression",
    "relationships",
    "freshness",
    "sql",
)
"""Check names usable in a `-- checks:` header: the builders of `orchestrator.checks`."""

CHECK_CALL = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*\((.*)\)$", re.DOTALL)
_TRAILING_SEVERITY = re.compile(r",\s*severity\s*=\s*(['\"])(\w*)\1\s*$")


def _known_checks() -> str:
    return ", ".join(CHECK_NAMES)


def _check_builder(name: str) -> Callable[..., Check] | None:
    """The `orchestrator.checks` builder a header's check name calls (imported on first use)."""
    if name not in CHECK_NAMES:
        return None
    from orchestrator import checks

    builder: Callable[..., Check] = getattr(checks, name)
    return builder


def split_calls(value: str, where: Where) -> Iterator[str]:
    """Split `a(...); b(...)` on top-level semicolons (not inside quotes or brackets)."""
    depth, quote, start = 0, "", 0
    for i, char in enumerate(value):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == ";" and depth == 0:
            if value[start:i].strip():
                yield value[start:i].strip()
            start = i + 1
    if quote or depth != 0:
        raise where.error(f"unbalanced quotes or parentheses in checks: {value!r}")
    if value[start:].strip():
        yield value[start:].strip()


def parse_check(text: str, where: Where) -> Check:
    match = CHECK_CALL.match(text)
    if match is None:
        raise where.error(
            f"cannot read check {text!r}: expected a call such as not_null(order_id); "
            f"known checks: {_known_checks()}"
        )
    name, inner = match.group(1), match.group(2)
    builder = _check_builder(name)
    if builder is None:
        raise where.error(f"unknown check {name!r}; known checks: {_known_checks()}")

    args: list[Any]
    kwargs: dict[str, Any]
    if name == "expression":
        args, kwargs = _raw_sql_argument(inner)
    else:
        try:
            args, kwargs = _call_arguments(text, where)
        except SyntaxError:
            if name != "sql":
                raise where.error(
                    f"cannot read check {text!r}: arguments must be column names, dotted table "
                    f"names, literals or lists; known checks: {_known_checks()}"
                ) from None
            args, kwargs = _raw_sql_argument(inner)

    signature = inspect.signature(builder)
    try:
        signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise where.error(
            f"bad arguments for check {text!r}: {exc}; expected {name}{_plain(signature)}"
        ) from None
    try:
        return builder(*args, **kwargs)
    except (SluiceError, TypeError, ValueError) as exc:
        message = exc.message if isinstance(exc, SluiceError) else str(exc)
        raise where.error(f"bad check {text!r}: {message}") from None


def _plain(signature: inspect.Signature) -> inspect.Signature:
    """`signature` without annotations, for error messages: `(col, values, *, severity='error')`."""
    params = [p.replace(annotation=inspect.Parameter.empty) for p in signature.parameters.values()]
    return signature.replace(parameters=params, return_annotation=inspect.Signature.empty)


def _raw_sql_argument(inner: str) -> tuple[list[Any], dict[str, Any]]:
    """The text between the parentheses, verbatim, minus a trailing `, severity='warn'`."""
    kwargs: dict[str, Any] = {}
    severity = _TRAILING_SEVERITY.search(inner)
    if severity is not None:
        kwargs["severity"] = severity.group(2)
        inner = inner[: severity.start()]
    text = inner.strip()
    if len(text) >= 2 and text[0] == text[-1] == "'":
        try:
            literal = ast.literal_eval(text)
        except (SyntaxError, ValueError):
            literal = None
        if isinstance(literal, str):
            text = literal  # a Python-style quoted string: a SQL string is never a predicate
    return [text], kwargs


def _call_arguments(text: str, where: Where) -> tuple[list[Any], dict[str, Any]]:
    """Positional and keyword arguments of one check call; raises SyntaxError if not Python."""
    call = ast.parse(text.strip(), mode="eval").body
    if not isinstance(call, ast.Call):
        raise SyntaxError(text)
    args: list[Any] = []
    for node in call.args:
        if isinstance(node, ast.Starred):
            raise where.error(f"cannot read check {text!r}: *arguments are not supported")
        args.append(_value(node, text, where))
    kwargs: dict[str, Any] = {}
    for keyword in call.keywords:
        if keyword.arg is None:
            raise where.error(f"cannot read check {text!r}: **arguments are not supported")
        kwargs[keyword.arg] = _value(keyword.value, text, where)
    return args, kwargs


def _value(node: ast.expr, text: str, where: Where) -> Any:
    """Bare names are column names, dotted names are table names; literals are themselves."""
    if isinstance(node, ast.Constant):
        return node.value
    number = numeric_literal(node)
    if number is not None:
        return number
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        parts: list[str] = []
        current: ast.expr = node
        while isinstance(current, ast.Attribute):
            parts.append(current.attr)
            current = current.value
        if isinstance(current, ast.Name):
            return ".".join([current.id, *reversed(parts)])
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        return [_value(item, text, where) for item in node.elts]
    raise where.error(
        f"cannot read check {text!r}: unsupported argument {ast.unparse(node)!r}; use column "
        "names, dotted table names, literals or lists"
    )


def numeric_literal(node: ast.expr) -> int | float | None:
    sign = 1
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        sign = -1 if isinstance(node.op, ast.USub) else 1
        node = node.operand
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return None if isinstance(node.value, bool) else sign * node.value
    return None
