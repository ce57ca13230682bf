"""Upstream parameters a Python asset's function never reads, found from its bytecode.

An upstream parameter is a DuckDB relation over the upstream's pinned snapshot, and making one
costs a bind (0.4-0.9 ms a parameter). The common way to read an upstream is by name in
`ctx.sql(...)`, the parameter only declaring the dependency, so that relation is usually never
used. A parameter that the function's code never loads (no load instruction names it, no
nested function captures it, and the code asks for no frame's locals) cannot be used by the
function. It gets a `DeferredInput`, which makes the relation if something reaches it anyway
(a debugger, a helper that inspects its caller's frame).
"""

from __future__ import annotations

import dis
import functools
import types
from collections.abc import Callable, Iterator
from typing import Any

FRAME_NAMES = frozenset(
    {"locals", "vars", "eval", "exec", "_getframe", "currentframe", "f_locals", "stack", "trace"}
)
"""Names whose use in a function (or a function nested in it) may read its locals without a
load instruction: then every parameter counts as read."""


@functools.lru_cache(maxsize=4096)
def unread_parameters(fn: Callable[..., Any]) -> frozenset[str]:
    """The named parameters of plain function `fn` that its code never reads (none for any
    other callable, or a wrapper whose parameters are `*args, **kwargs`)."""
    if not isinstance(fn, types.FunctionType):
        return frozenset()
    code = fn.__code__
    named = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
    if any(FRAME_NAMES.intersection(c.co_names) for c in _codes(code)):
        return frozenset()
    read = set(code.co_cellvars)
    for instruction in dis.get_instructions(code):
        if "LOAD" in instruction.opname:  # LOAD_FAST..., and combined ones (STORE_FAST_LOAD_FAST)
            value = instruction.argval
            names = value if isinstance(value, tuple) else (value,)
            read.update(name for name in names if isinstance(name, str))
    return frozenset(name for name in named if name not in read)


def _codes(code: types.CodeType) -> Iterator[types.CodeType]:
    """`code` and the code of every function, class body or comprehension nested in it."""
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _codes(const)


class DeferredInput:
    """Stands for an upstream relation the function does not read: made at the first
    attribute asked of it, then used for every later one."""

    __slots__ = ("_make", "_made")

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._made: Any = None

    def relation(self) -> Any:
        if self._made is None:
            self._made = self._make()
        return self._made

    def __getattr__(self, name: str) -> Any:
        if name in DeferredInput.__slots__:  # not set: a copy made without `__init__`
            raise AttributeError(name)
        return getattr(self.relation(), name)

    def __repr__(self) -> str:
        return repr(self.relation())
