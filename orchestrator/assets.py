"""Asset primitives: `AssetKey`, `Asset`, `Retry` and the `@asset` decorator.

The function is the asset (as in Hamilton): its parameter names are its upstream assets, its
docstring its description. Upstream references stay unresolved strings here; the graph resolves
them once every definition of the project is known.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import math
import textwrap
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from lakehouse.audits import Check
from orchestrator.errors import DefinitionError, InvalidNameError
from orchestrator.names import NAME_PATTERN as NAME_PATTERN
from orchestrator.names import validate_name as validate_name
from orchestrator.partitions import TimePartitions

CONTEXT_PARAMS = ("ctx", "context")
DEFAULT_LAYER = "default"


@dataclass(frozen=True, order=True)
class AssetKey:
    """`layer.name`, which is also the Iceberg identifier `namespace.table`."""

    layer: str
    name: str

    @classmethod
    def parse(cls, value: str | tuple[str, str] | AssetKey) -> AssetKey:
        """Accept `"silver.orders"`, `("silver", "orders")` or an `AssetKey`."""
        if isinstance(value, AssetKey):
            return value
        if not isinstance(value, str | tuple | list):
            raise InvalidNameError(f"invalid asset key {value!r}: expected 'layer.name'")
        parts = tuple(value.split(".")) if isinstance(value, str) else tuple(value)
        if len(parts) != 2:
            raise InvalidNameError(f"invalid asset key {value!r}: expected 'layer.name'")
        layer, name = parts
        return cls(validate_name(layer, "layer"), validate_name(name, "asset name"))

    def __str__(self) -> str:
        return f"{self.layer}.{self.name}"


@dataclass(frozen=True)
class Retry:
    """How often a failing materialization is attempted again, with exponential backoff."""

    attempts: int = 1
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise DefinitionError(f"Retry.attempts must be >= 1, got {self.attempts}")
        if self.backoff_s < 0 or self.max_backoff_s < 0 or not 0 <= self.jitter <= 1:
            raise DefinitionError("Retry backoff values must be >= 0 and jitter within [0, 1]")

    def delay(self, attempt: int) -> float:
        """Delay before attempt number `attempt + 1` (attempt counts from 1), without jitter."""
        try:  # ldexp: backoff * 2**(attempt - 1), exact, without converting a huge int to float
            uncapped = math.ldexp(self.backoff_s, attempt - 1)
        except OverflowError:
            return float(self.max_backoff_s)
        return float(min(self.max_backoff_s, uncapped))


@dataclass(frozen=True)
class Asset:
    """One declared asset, Python or SQL. Plain data: safe to print, compare and hash.

    `inputs` maps a function parameter to the upstream reference it receives; `deps` are the
    other upstream references (read through `ctx.sql`, or by a SQL asset). References are
    unresolved strings (`"orders"` or `"silver.orders"`) until the graph resolves them.
    """

    key: AssetKey
    kind: Literal["python", "sql"]
    code_version: str
    fn: Callable[..., Any] | None = field(default=None, compare=False, repr=False)
    sql: str | None = None
    inputs: tuple[tuple[str, str], ...] = ()
    deps: tuple[str, ...] = ()
    checks: tuple[Check, ...] = ()
    partitions: TimePartitions | None = None
    retry: Retry = Retry()
    tags: frozenset[str] = frozenset()
    description: str | None = None
    owners: tuple[str, ...] = ()
    file: str | None = None
    line: int | None = None
    # Scheduling options: when to give up on an attempt, whom to tell when the asset fails.
    timeout_s: float | None = None
    on_failure: Callable[[Any], object] | None = field(default=None, compare=False, repr=False)
    inherits_retry: bool = False
    """True when no retry was declared: the project's `[retry]` default applies."""

    @property
    def references(self) -> tuple[str, ...]:
        """Every upstream reference: parameters first, then `deps`, then check targets."""
        refs = [ref for _, ref in self.inputs] + list(self.deps)
        for check in self.checks:
            refs.extend(check.references)
        return tuple(dict.fromkeys(refs))


def partitioned_version(code_version: str, partitions: TimePartitions | None) -> str:
    """A code version that also changes when the asset's partitioning changes meaning."""
    if partitions is None:
        return code_version
    return hashlib.sha256(f"{code_version}|{partitions.fingerprint}".encode()).hexdigest()[:16]


def python_code_version(fn: Callable[..., Any]) -> str:
    """Hash of the function body with formatting, comments, docstring and decorators removed.

    Reformatting a function or editing its comments does not make its asset stale.
    """
    try:
        source = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError):
        return hashlib.sha256(fn.__qualname__.encode()).hexdigest()[:16]
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            node.decorator_list = []
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                node.body = body[1:] or [ast.Pass()]
            break
    return hashlib.sha256(ast.unparse(tree).encode()).hexdigest()[:16]


def asset(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    layer: str = DEFAULT_LAYER,
    deps: Iterable[str | AssetKey] = (),
    checks: Sequence[Check] = (),
    partitions: TimePartitions | None = None,
    retry: Retry | None = None,
    code_version: str | None = None,
    tags: Iterable[str] = (),
    description: str | None = None,
    owners: Iterable[str] = (),
    timeout_s: float | None = None,
    on_failure: Callable[[Any], object] | None = None,
) -> Any:
    """Declare a Python asset.

    Parameters other than `ctx`/`context` are upstream assets, by short or full name
    (`raw_orders` matches `bronze.raw_orders`). Use `deps=` for upstreams the function reads
    only through `ctx.sql()`. Usable as `@asset` or `@asset(...)`.

    `timeout_s` ends an attempt that runs longer (it counts as a failed attempt, retried like
    an exception, and can never publish afterwards). `on_failure(event)` is called with an
    `orchestrator.alerts.AlertEvent` when the asset finally fails or fails its audit.
    """

    def wrap(func: Callable[..., Any]) -> Asset:
        file = inspect.getsourcefile(func)
        try:
            line: int | None = inspect.getsourcelines(func)[1]
        except (OSError, TypeError):
            line = None
        asset_name = validate_name(
            func.__name__ if name is None else name, "asset name", file=file, line=line
        )
        validate_name(layer, "layer", file=file, line=line)
        params = list(inspect.signature(func).parameters.values())
        if params and params[0].name in CONTEXT_PARAMS:
            params = params[1:]
        for param in params:
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise DefinitionError(
                    f"asset {layer}.{asset_name}: *args/**kwargs cannot name upstream assets",
                    file=file,
                    line=line,
                )
        if timeout_s is not None and not timeout_s > 0:
            raise DefinitionError(
                f"asset {layer}.{asset_name}: timeout_s must be > 0, got {timeout_s!r}",
                file=file,
                line=line,
            )
        return Asset(
            key=AssetKey(layer, asset_name),
            kind="python",
            fn=func,
            code_version=partitioned_version(code_version or python_code_version(func), partitions),
            inputs=tuple((p.name, p.name) for p in params),
            deps=(str(deps),) if isinstance(deps, str | AssetKey) else tuple(str(d) for d in deps),
            checks=tuple(checks),
            partitions=partitions,
            retry=retry or Retry(),
            tags=frozenset(tags),
            description=description or inspect.getdoc(func),
            owners=tuple(owners),
            file=file,
            line=line,
            timeout_s=timeout_s,
            on_failure=on_failure,
            inherits_retry=retry is None,
        )

    return wrap(fn) if fn is not None else wrap
