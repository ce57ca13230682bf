"""Code versions of Python assets: a hash of the function without formatting, comments,
docstring or decorators, computed once per source file content and remembered across runs.

The definition (`reference_code_version`) reads the function's source with `inspect` and
re-parses it; for thousands of assets that is most of the cost of loading a project, because
`inspect` re-tokenizes the file for every function. The fast path parses each source file once
and takes the function's node by its first line (`co_firstlineno`) and name; it yields exactly
the same version (the same `ast.unparse` of the same stripped node) and falls back to the
definition for anything it cannot place (lambdas, `functools.wraps` wrappers, code compiled
from strings, a file edited since it was imported).

While a project loads (`remembered_versions`), versions are also kept in a small JSON file
keyed by each source file's sha256, so an unchanged file costs one read and one hash. The key
is the content itself, never a modification time: an edit always yields a fresh version.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import hashlib
import inspect
import textwrap
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.cache_files import read_json_object, section, write_json_atomically

CACHE_FORMAT = 1
"""Bump when the version algorithm changes: older cache files are then ignored."""

_FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef


def reference_code_version(fn: Callable[..., Any]) -> str:
    """The definition of a Python code version, from `inspect.getsource`.

    Reformatting a function or editing its comments, docstring or decorators does not change
    it; a function without readable source gets a hash of its qualified name.
    """
    try:
        source = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError):
        return hashlib.sha256(fn.__qualname__.encode()).hexdigest()[:16]
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, _FunctionNode):
            _strip(node)
            break
    return _digest(tree)


def _strip(node: _FunctionNode) -> None:
    """Drop decorators and the docstring (a body left empty becomes `pass`)."""
    node.decorator_list = []
    body = node.body
    if (
        body
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    ):
        node.body = body[1:] or [ast.Pass()]


def _digest(tree: ast.AST) -> str:
    return hashlib.sha256(ast.unparse(tree).encode()).hexdigest()[:16]


def _first_line(node: _FunctionNode) -> int:
    """The line `co_firstlineno` reports for this definition: its first decorator's, if any."""
    return node.decorator_list[0].lineno if node.decorator_list else node.lineno


@dataclass
class _SourceFile:
    """One source file's content hash, the versions known for it, and (lazily) its parse."""

    sha256: str
    source: bytes
    versions: dict[str, str] = field(default_factory=dict)
    nodes: dict[str, _FunctionNode] | None = None

    def version(self, line: int, name: str) -> str | None:
        key = f"{line}:{name}"
        known = self.versions.get(key)
        if known is not None:
            return known
        if self.nodes is None:
            tree = ast.parse(self.source)
            self.nodes = {
                f"{_first_line(node)}:{node.name}": node
                for node in ast.walk(tree)
                if isinstance(node, _FunctionNode)
            }
        node = self.nodes.get(key)
        if node is None:
            return None
        stripped = copy.copy(node)  # shallow: nested definitions keep what the file says
        _strip(stripped)
        version = _digest(ast.Module(body=[stripped], type_ignores=[]))
        self.versions[key] = version
        return version


_MEMO_FILES = 16
_memo: dict[str, _SourceFile] = {}
"""Recently read files of this process, by path (newest last): a file re-read with the same
content reuses its parse and versions."""


def _source_file(filename: str, stored: Mapping[str, Any] | None) -> _SourceFile | None:
    """`filename` as it is now, reusing what this process (or `stored`) knows of its content."""
    try:
        source = Path(filename).read_bytes()
    except OSError:
        return None
    sha256 = hashlib.sha256(source).hexdigest()
    found = _memo.pop(filename, None)
    if found is None or found.sha256 != sha256:
        found = _SourceFile(sha256, source)
    if stored is not None and stored.get("sha256") == sha256:
        versions = stored.get("versions")
        if isinstance(versions, dict):
            found.versions = {**versions, **found.versions}
    _memo[filename] = found
    while len(_memo) > _MEMO_FILES:
        del _memo[next(iter(_memo))]
    return found


def _placeable(fn: Callable[..., Any]) -> Any:
    """`fn.__code__` when the fast path can find the function's node, else None."""
    code = getattr(fn, "__code__", None)
    if code is None or hasattr(fn, "__wrapped__") or code.co_name == "<lambda>":
        return None
    return code


class CodeVersionCache:
    """Versions by source file for one project load, optionally kept in a JSON file.

    Each file is read once per instance (the files do not change during one load) and its
    versions are valid for its content hash only.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._stored: dict[str, Any] = _load(path) if path is not None else {}
        self._files: dict[str, _SourceFile | None] = {}
        self._source_files: dict[str, str] = {}

    def version(self, fn: Callable[..., Any]) -> str | None:
        """The code version of a plain function, or None when only the definition can tell."""
        code = _placeable(fn)
        if code is None:
            return None
        filename = code.co_filename
        if filename not in self._files:
            self._files[filename] = _source_file(filename, self._stored.get(filename))
        source = self._files[filename]
        return None if source is None else source.version(code.co_firstlineno, code.co_name)

    def source_file(self, fn: Callable[..., Any]) -> str | None:
        """`inspect.getsourcefile(fn)`, asked once per code file during this load."""
        code = _placeable(fn)
        if code is None:
            return inspect.getsourcefile(fn)
        found = self._source_files.get(code.co_filename)
        if found is None:
            found = inspect.getsourcefile(fn)
            if found is not None:
                self._source_files[code.co_filename] = found
        return found

    def save(self) -> None:
        """Write the versions of the files read by this instance (best effort, atomic)."""
        if self.path is None:
            return
        files = {
            name: {"sha256": source.sha256, "versions": source.versions}
            for name, source in self._files.items()
            if source is not None and source.versions
        }
        if files != self._stored:
            write_json_atomically(self.path, {"format": CACHE_FORMAT, "files": files})


def _load(path: Path) -> dict[str, Any]:
    return section(read_json_object(path, format=CACHE_FORMAT), "files")


_active: ContextVar[CodeVersionCache | None] = ContextVar("sluice_code_versions", default=None)


@contextlib.contextmanager
def remembered_versions(path: Path | None) -> Iterator[CodeVersionCache]:
    """Use one cache (kept in `path` if given) for every asset declared inside the block."""
    cache = CodeVersionCache(path)
    token = _active.set(cache)
    try:
        yield cache
    finally:
        _active.reset(token)
    cache.save()


def source_file(fn: Callable[..., Any]) -> str | None:
    """`inspect.getsourcefile(fn)` (remembered per code file while a project loads)."""
    cache = _active.get()
    return inspect.getsourcefile(fn) if cache is None else cache.source_file(fn)


def python_code_version(fn: Callable[..., Any]) -> str:
    """The code version of `fn`: equal to `reference_code_version(fn)`, usually much cheaper."""
    cache = _active.get()
    if cache is not None:
        version = cache.version(fn)
    else:
        code = _placeable(fn)
        source = None if code is None else _source_file(code.co_filename, None)
        version = None if source is None else source.version(code.co_firstlineno, code.co_name)
    return version if version is not None else reference_code_version(fn)
