"""What parsing SQL texts yielded, remembered between loads (`QueryCache`), and the block in
which SQL assets and SQL checks use it (`remembered_sql`, `remembered_check`).

Parsing SQL is slow, and importing sqlglot alone costs more than loading a cached project:
with the cache, an unchanged text is never parsed again, and a load whose texts are all
remembered never imports sqlglot. Entries hold what `orchestrator.sql_query` and the check
builders computed and are keyed by the text, `QueryCache.FORMAT` and the sqlglot version (not
by Sluice's source), so a change to what those compute must bump `QueryCache.FORMAT`.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import sys
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.cache_files import read_json_object, section, write_json_atomically
from orchestrator.sql_query import ParsedQuery

if TYPE_CHECKING:
    from lakehouse.audits import Check, Severity


class QueryCache:
    """What parsing SQL texts yielded, by sha256 of the text, kept in a JSON file between loads:
    the parsed queries of SQL assets, and the checks built by `orchestrator.checks.expression`
    and `orchestrator.checks.sql` (which parse their SQL when they are built).

    Keyed by the exact text (never a file's modification time), and valid for one sqlglot
    version: any edit, and any sqlglot upgrade, parses again. Only texts that parsed are
    remembered, so every error is still raised with its position. Entries not used by a load
    are dropped when it saves. The file is read on first use: a load that parses no SQL never
    reads or writes it.
    """

    FORMAT = 1
    _SECTIONS = ("queries", "checks")

    def __init__(self, path: Path) -> None:
        self.path = path
        self._used: dict[str, dict[str, list[Any]]] = {name: {} for name in self._SECTIONS}

    @functools.cached_property
    def _version(self) -> str:
        return f"{self.FORMAT}/{sqlglot_version()}"

    @functools.cached_property
    def _stored(self) -> dict[str, dict[str, list[Any]]]:
        """The file's entries by section (read on first use), or none if it is not valid."""
        data = read_json_object(self.path, version=self._version)
        return {name: section(data, name) for name in self._SECTIONS}

    @staticmethod
    def _key(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    def get(self, body: str) -> ParsedQuery | None:
        key = self._key(body)
        entry = self._stored["queries"].get(key)
        try:
            refs, version, sql = entry  # type: ignore[misc]
            parsed = ParsedQuery(tuple(str(r) for r in refs), str(version), str(sql))
        except (TypeError, ValueError):
            return None
        self.put(body, parsed)
        return parsed

    def put(self, body: str, parsed: ParsedQuery) -> None:
        entry = [list(parsed.refs), parsed.code_version, parsed.sql]
        self._used["queries"][self._key(body)] = entry

    def check(self, kind: str, text: str, severity: Severity, build: Callable[..., Check]) -> Check:
        """`build(text, severity=severity)`, or the equal check it built from `text` before.

        `severity` must already be valid: a remembered check takes it as given.
        """
        key = self._key(f"{kind}\0{text}")
        found = _check_from_json(self._stored["checks"].get(key), severity)
        if found is None:
            found = build(text, severity=severity)
        entry = _check_to_json(found)
        if entry is not None:
            self._used["checks"][key] = entry
        return found

    def save(self) -> None:
        """Write the entries this load used, if they differ from the file (atomic)."""
        if not any(self._used.values()) and "_stored" not in vars(self):
            return  # nothing parsed, nothing looked up: leave the file as it is
        if self._used != self._stored:
            write_json_atomically(self.path, {"version": self._version, **self._used})


def _check_to_json(check: Check) -> list[Any] | None:
    """A check's fields but its severity, as JSON; None unless they are all plain text."""
    params = [[key, value] for key, value in check.params]
    texts = [check.kind, check.name, *(p for pair in params for p in pair), *check.references]
    if not all(isinstance(text, str) for text in texts):
        return None
    return [check.kind, check.name, params, list(check.references)]


def _check_from_json(entry: object, severity: Severity) -> Check | None:
    """The check `_check_to_json` described, with `severity`; None for anything else."""
    from lakehouse.audits import Check

    if not isinstance(entry, list) or len(entry) != 4:
        return None
    kind, name, params, references = entry
    if not isinstance(params, list) or not isinstance(references, list):
        return None
    if not all(isinstance(pair, list) and len(pair) == 2 for pair in params):
        return None
    pairs = tuple((key, value) for key, value in params)
    texts = [kind, name, *(p for pair in pairs for p in pair), *references]
    if not all(isinstance(text, str) for text in texts):
        return None
    return Check(kind, name, params=pairs, severity=severity, references=tuple(references))


active_cache: ContextVar[QueryCache | None] = ContextVar("sluice_sql_cache", default=None)


@contextlib.contextmanager
def remembered_sql(path: Path | None) -> Iterator[QueryCache | None]:
    """Remember what parsing yields (in the JSON file `path`, if given) for every SQL asset
    and SQL check built inside the block; saved when the block completes."""
    cache = QueryCache(path) if path is not None else None
    token = active_cache.set(cache)
    try:
        yield cache
    finally:
        active_cache.reset(token)
    if cache is not None:
        cache.save()


def remembered_check(
    kind: str, text: object, severity: object, build: Callable[..., Check]
) -> Check:
    """`build(text, severity=severity)`; inside `remembered_sql`, built once per text.

    Anything `build` might reject other than by parsing (a non-string text, an unknown
    severity) always goes to `build`, so its errors are raised exactly as without the cache.
    """
    cache = active_cache.get()
    if cache is None or not isinstance(text, str) or severity not in ("error", "warn"):
        return build(text, severity=severity)
    return cache.check(kind, text, "error" if severity == "error" else "warn", build)


def sqlglot_version() -> str:
    """`sqlglot.__version__`, without importing sqlglot if it is not imported yet.

    The caches of what sqlglot parsed are valid for one version, and exist to spare a load
    the sqlglot import (it costs more than loading a cached project): the version is read by
    running sqlglot's generated `_version.py` on its own, the module `sqlglot.__version__`
    comes from. Anything unexpected there falls back to importing sqlglot.
    """
    module = sys.modules.get("sqlglot")
    if module is None:
        with contextlib.suppress(Exception):
            spec = importlib.util.find_spec("sqlglot")
            folders = list(spec.submodule_search_locations or ()) if spec else []
            if folders:
                path = Path(folders[0]) / "_version.py"
                loaded = importlib.util.spec_from_file_location("_sluice_sqlglot_version", path)
                if loaded is not None and loaded.loader is not None:
                    version_module = importlib.util.module_from_spec(loaded)
                    loaded.loader.exec_module(version_module)
                    version = getattr(version_module, "__version__", None)
                    if isinstance(version, str):
                        return version
        import sqlglot as module
    return str(getattr(module, "__version__", ""))
