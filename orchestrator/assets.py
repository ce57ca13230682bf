"""Asset primitives: `AssetKey`, `Asset`, `Retry` and the `@asset` decorator.

The function is the asset (as in Hamilton): its parameter names are its upstream assets, its
docstring its description. Upstream references stay unresolved strings here; the graph resolves
them once every definition of the project is known.
"""

from __future__ import annotations

import hashlib
import inspect
import math
import types
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from orchestrator import code_versions
from orchestrator.errors import DefinitionError, InvalidNameError
from orchestrator.names import NAME_PATTERN as NAME_PATTERN
from orchestrator.names import validate_name as validate_name

if TYPE_CHECKING:
    from lakehouse.audits import Check
    from orchestrator.partitions import TimePartitions

CONTEXT_PARAMS = ("ctx", "context")
DEFAULT_LAYER = "default"


@dataclass(frozen=True, order=True)
class AssetKey:
    """`layer.name`, which is also the Iceberg identifier `namespace.table`."""

    layer: str
    name: str
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Keys are hashed hundreds of thousands of times while a large graph is built.
        object.__setattr__(self, "_hash", hash((self.layer, self.name)))

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(self) -> tuple[type[AssetKey], tuple[str, str]]:
        # Rebuilt through __init__: string hashes differ between processes.
        return (AssetKey, (self.layer, self.name))

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

    Reformatting a function or editing its comments does not make its asset stale. (Computed
    once per source file content; see `orchestrator.code_versions`.)
    """
    return code_versions.python_code_version(fn)


def _source_line(func: Callable[..., Any], file: str | None) -> int | None:
    """`inspect.getsourcelines(func)[1]`, without reading `file` for a plain function.

    For a plain function both are `co_firstlineno` (its first decorator's line, or its `def`).
    """
    code = getattr(func, "__code__", None)
    plain = isinstance(func, types.FunctionType) and not hasattr(func, "__wrapped__")
    if plain and code is not None and file is not None:
        return int(code.co_firstlineno)
    try:
        return inspect.getsourcelines(func)[1]
    except (OSError, TypeError):
        return None


def _docstring(func: Callable[..., Any]) -> str | None:
    """`inspect.getdoc(func)`; for a module-level function without one, known to be None."""
    if func.__doc__ is None and "." not in getattr(func, "__qualname__", "."):
        return None
    return inspect.getdoc(func)


def _parameters(func: Callable[..., Any]) -> list[tuple[str, bool]]:
    """(name, is *args/**kwargs) per parameter in signature order, as `inspect.signature` says.

    A plain function's code object holds the same, much more cheaply.
    """
    code = getattr(func, "__code__", None)
    if not isinstance(func, types.FunctionType) or code is None or hasattr(func, "__wrapped__"):
        return [
            (p.name, p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD))
            for p in inspect.signature(func).parameters.values()
        ]
    names = code.co_varnames
    positional, keyword_only = code.co_argcount, code.co_kwonlyargcount
    found = [(name, False) for name in names[:positional]]
    at = positional + keyword_only
    if code.co_flags & inspect.CO_VARARGS:
        found.append((names[at], True))
        at += 1
    found += [(name, False) for name in names[positional : positional + keyword_only]]
    if code.co_flags & inspect.CO_VARKEYWORDS:
        found.append((names[at], True))
    return found


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
        file = code_versions.source_file(func)
        line = _source_line(func, file)
        asset_name = validate_name(
            func.__name__ if name is None else name, "asset name", file=file, line=line
        )
        validate_name(layer, "layer", file=file, line=line)
        params = _parameters(func)
        if params and params[0][0] in CONTEXT_PARAMS:
            params = params[1:]
        if any(variadic for _, variadic in params):
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
            inputs=tuple((p, p) for p, _ in params),
            deps=(str(deps),) if isinstance(deps, str | AssetKey) else tuple(str(d) for d in deps),
            checks=tuple(checks),
            partitions=partitions,
            retry=retry or Retry(),
            tags=frozenset(tags),
            description=description or _docstring(func),
            owners=tuple(owners),
            file=file,
            line=line,
            timeout_s=timeout_s,
            on_failure=on_failure,
            inherits_retry=retry is None,
        )

    return wrap(fn) if fn is not None else wrap
