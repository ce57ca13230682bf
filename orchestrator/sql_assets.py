"""SQL assets: `assets/<layer>/<name>.sql` files turned into `Asset(kind="sql")`.

A SQL asset is exactly one DuckDB query. Its upstreams are the tables it reads (found with
sqlglot, CTE names and table functions excluded). Leading `-- key: value` comment lines
configure it:

    -- checks: not_null(order_id); unique(order_id); expression(amount >= 0)
    -- tags: finance, daily
    -- description: One row per order.
    -- owners: data-eng
    -- deps: bronze.fx_rates
    -- retry: attempts=3, backoff_s=2
    -- timeout_s: 600
    -- code_version: v2

Other comment lines (`-- Note: ...`) are ordinary comments. The code version is a hash of the
normalized query, so reformatting and comment edits never make the asset stale, and header
edits (checks, tags, ...) never do either.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import functools
import hashlib
import importlib.util
import inspect
import re
import sys
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakehouse.errors import SluiceError
from orchestrator.assets import (
    NAME_PATTERN,
    Asset,
    AssetKey,
    Retry,
    partitioned_version,
    validate_name,
)
from orchestrator.cache_files import read_json_object, section, write_json_atomically
from orchestrator.errors import DefinitionError, SqlParseError
from orchestrator.partitions import TimePartitions

if TYPE_CHECKING:
    from sqlglot import exp
    from sqlglot.errors import ParseError

    from lakehouse.audits import Check, Severity

DIALECT = "duckdb"

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
_CHECK_CALL = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*\((.*)\)$", re.DOTALL)
_TRAILING_SEVERITY = re.compile(r",\s*severity\s*=\s*(['\"])(\w*)\1\s*$")
_LAYOUT = "<assets_dir>/<layer>/<name>.sql"


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


@dataclass(frozen=True)
class _Where:
    """Location for error messages: the file and a line in it."""

    file: str
    line: int | None
    asset: str | None = None

    def error(self, message: str) -> DefinitionError:
        return DefinitionError(message, asset=self.asset, file=self.file, line=self.line)

    def parse_error(self, message: str, line: int | None = None) -> SqlParseError:
        at = self.line if line is None else line
        return SqlParseError(message, asset=self.asset, file=self.file, line=at)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def load_sql_asset(path: Path, assets_dir: Path, known: QueryCache | None = None) -> Asset:
    """Load `assets_dir/<layer>/<name>.sql` as a SQL asset.

    Guarantees: `sql` is the file without its header lines and without a trailing `;` (it may
    end in a line comment, so wrap it with a newline before a closing parenthesis); `deps` are
    the tables the query reads, in order of appearance, then the header's `deps`; `line` is
    the file line where the query starts. Raises `DefinitionError` (or its subclasses
    `InvalidNameError`, `SqlParseError`) naming the file and, when known, the line. With
    `known`, a query text parsed before (successfully) is not parsed again.
    """
    file = str(path)
    layer, name = _layer_and_name(path, assets_dir)
    validate_name(layer, "layer", file=file)
    validate_name(name, "asset name", file=file)
    key = AssetKey(layer, name)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DefinitionError(f"cannot read SQL asset: {exc}", asset=str(key), file=file) from exc
    if not text.strip():
        raise DefinitionError(
            "empty SQL file: expected one SELECT query", asset=str(key), file=file
        )

    lines = text.split("\n")  # only "\n" counts, as in sqlglot's line numbers
    n_header = 0
    while n_header < len(lines) and _is_header_line(lines[n_header]):
        n_header += 1
    first_line = n_header + 1
    body = "\n".join(lines[n_header:])
    if not body.strip():
        raise DefinitionError(
            "SQL file has only comments: expected one SELECT query", asset=str(key), file=file
        )

    header = _parse_header(lines[:n_header], file, str(key))
    parsed = known.get(body) if known is not None else None
    if parsed is None:
        parsed = _ParsedQuery.of(body, _parse_query(body, _Where(file, first_line, str(key))))
        if known is not None:
            known.put(body, parsed)
    deps = list(dict.fromkeys([*parsed.refs, *header.deps]))
    return Asset(
        key=key,
        kind="sql",
        code_version=partitioned_version(
            header.code_version or parsed.code_version, header.partitions
        ),
        partitions=header.partitions,
        sql=parsed.sql,
        deps=tuple(deps),
        checks=tuple(header.checks),
        retry=header.retry or Retry(),
        inherits_retry=header.retry is None,
        timeout_s=header.timeout_s,
        tags=frozenset(header.tags),
        description="\n".join(header.description) or None,
        owners=tuple(dict.fromkeys(header.owners)),
        file=file,
        line=first_line,
    )


def discover_sql_assets(assets_dir: Path, cache: Path | None = None) -> list[Asset]:
    """Load every `*.sql` file under `assets_dir`, sorted by path.

    SQL files must sit exactly at `<assets_dir>/<layer>/<name>.sql`; any other `.sql` file
    raises `DefinitionError`. Files and folders whose name starts with `.` are skipped.
    A missing `assets_dir` yields no assets. With `cache` (a JSON file), what parsing each
    query text yielded is remembered there (see `QueryCache`); without, inside a
    `remembered_sql` block, in that block's cache.
    """
    if not assets_dir.is_dir():
        return []
    if cache is None:
        return _discover(assets_dir, _active.get())
    with remembered_sql(cache) as known:
        return _discover(assets_dir, known)


def _discover(assets_dir: Path, known: QueryCache | None) -> list[Asset]:
    found: list[Asset] = []
    for path in sorted(assets_dir.rglob("*.sql")):
        relative = path.relative_to(assets_dir)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue
        if len(relative.parts) != 2:
            raise DefinitionError(
                f"misplaced SQL file {relative.as_posix()}: SQL assets must live at {_LAYOUT}",
                file=str(path),
            )
        found.append(load_sql_asset(path, assets_dir, known))
    return found


@dataclass(frozen=True)
class _ParsedQuery:
    """Everything a SQL asset takes from its query text: a function of that text alone."""

    refs: tuple[str, ...]
    code_version: str
    sql: str

    @classmethod
    def of(cls, body: str, query: exp.Expr) -> _ParsedQuery:
        return cls(tuple(upstream_refs(query)), sql_code_version(query), _strip_terminator(body))


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

    def get(self, body: str) -> _ParsedQuery | None:
        key = self._key(body)
        entry = self._stored["queries"].get(key)
        try:
            refs, version, sql = entry  # type: ignore[misc]
            parsed = _ParsedQuery(tuple(str(r) for r in refs), str(version), str(sql))
        except (TypeError, ValueError):
            return None
        self.put(body, parsed)
        return parsed

    def put(self, body: str, parsed: _ParsedQuery) -> None:
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


_active: ContextVar[QueryCache | None] = ContextVar("sluice_sql_cache", default=None)


@contextlib.contextmanager
def remembered_sql(path: Path | None) -> Iterator[QueryCache | None]:
    """Remember what parsing yields (in the JSON file `path`, if given) for every SQL asset
    and SQL check built inside the block; saved when the block completes."""
    cache = QueryCache(path) if path is not None else None
    token = _active.set(cache)
    try:
        yield cache
    finally:
        _active.reset(token)
    if cache is not None:
        cache.save()


def remembered_check(
    kind: str, text: object, severity: object, build: Callable[..., Check]
) -> Check:
    """`build(text, severity=severity)`; inside `remembered_sql`, built once per text.

    Anything `build` might reject other than by parsing (a non-string text, an unknown
    severity) always goes to `build`, so its errors are raised exactly as without the cache.
    """
    cache = _active.get()
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


def upstream_refs(query: exp.Expr) -> list[str]:
    """The tables `query` reads, as `layer.name` or `name`, deduplicated, in text order.

    Excluded: CTE names, table functions (`read_parquet(...)`, `range(...)`) and file or URL
    reads (`FROM 'data/x.parquet'`). A catalog part (`lake.silver.orders`) is dropped.
    """
    from sqlglot import exp
    from sqlglot.optimizer.normalize_identifiers import normalize_identifiers

    original = list(query.find_all(exp.Table, bfs=False))
    normalized = normalize_identifiers(query.copy(), dialect=DIALECT)
    normalized_tables = list(normalized.find_all(exp.Table, bfs=False))
    cte_names = {cte.alias_or_name for cte in normalized.find_all(exp.CTE)}
    in_scope, cte_refs = _scoped_tables(normalized)

    ordered: list[tuple[int, int, str]] = []
    for index, (table, twin) in enumerate(zip(original, normalized_tables, strict=True)):
        if not isinstance(table.this, exp.Identifier):
            continue  # a table function
        if id(twin) in cte_refs:
            continue
        if id(twin) not in in_scope and not twin.db and twin.name in cte_names:
            continue  # scope analysis missed it; a bare CTE name is never an upstream
        if not NAME_PATTERN.match(table.name) or (table.db and not NAME_PATTERN.match(table.db)):
            continue  # a file path or URL read by a DuckDB replacement scan
        ref = f"{table.db}.{table.name}" if table.db else table.name
        start = table.this.meta.get("start")
        ordered.append((start if isinstance(start, int) else 1 << 62, index, ref))
    return list(dict.fromkeys(ref for _, _, ref in sorted(ordered)))


def sql_code_version(query: exp.Expr) -> str:
    """sha256 (16 hex chars) of the query regenerated by sqlglot without comments.

    Whitespace, keyword and identifier case, and comments do not change it.
    """
    from sqlglot.optimizer.normalize_identifiers import normalize_identifiers

    normalized = normalize_identifiers(query.copy(), dialect=DIALECT)
    text = normalized.sql(dialect=DIALECT, comments=False, normalize=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# Layout and header
# --------------------------------------------------------------------------------------------


def _layer_and_name(path: Path, assets_dir: Path) -> tuple[str, str]:
    try:
        relative = path.relative_to(assets_dir)
    except ValueError:
        try:
            relative = path.resolve().relative_to(assets_dir.resolve())
        except ValueError:
            raise DefinitionError(
                f"SQL file is outside the assets folder {assets_dir}", file=str(path)
            ) from None
    if len(relative.parts) != 2 or path.suffix != ".sql":
        raise DefinitionError(
            f"misplaced SQL file {relative.as_posix()}: SQL assets must live at {_LAYOUT}",
            file=str(path),
        )
    return path.parent.name, path.stem


_PARTITION_KINDS = {"hourly": "hour", "daily": "day", "monthly": "month"}


def _parse_partitions(value: str, where: _Where) -> TimePartitions:
    """`daily(start=2024-01-01, column=order_date[, timezone=UTC, lookback=6, end_offset=0])`."""
    match = _CHECK_CALL.match(value)
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


def _is_header_line(line: str) -> bool:
    stripped = line.strip()
    return not stripped or stripped.startswith("--")


def _parse_header(lines: list[str], file: str, asset: str) -> _Header:
    header = _Header()
    for number, raw in enumerate(lines, start=1):
        match = _HEADER_LINE.match(raw.strip())
        if match is None:
            continue
        key, value = match.group(1).lower(), match.group(2).strip()
        where = _Where(file, number, asset)
        if key == "partitions":
            if header.partitions is not None:
                raise where.error("partitions is given twice in the header")
            header.partitions = _parse_partitions(value, where)
        elif key == "checks":
            header.checks.extend(_parse_check(call, where) for call in _split_calls(value, where))
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


def _split_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _validate_ref(ref: str, where: _Where) -> str:
    parts = ref.split(".")
    if len(parts) > 2:
        raise where.error(f"invalid upstream {ref!r} in deps: expected 'name' or 'layer.name'")
    for part in parts:
        validate_name(part, "upstream reference", file=where.file, line=where.line)
    return ref


def _parse_retry(value: str, where: _Where) -> Retry:
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
        number = _number(keyword.value)
        if keyword.arg not in allowed or number is None:
            raise where.error(f"cannot read retry {value!r}: {usage}")
        if keyword.arg == "attempts" and not isinstance(number, int):
            raise where.error(f"retry attempts must be an integer, got {number!r}")
        kwargs[keyword.arg] = number
    try:
        return Retry(**kwargs)  # type: ignore[arg-type]
    except DefinitionError as exc:
        raise where.error(f"bad retry {value!r}: {exc.message}") from None


def _number(node: ast.expr) -> int | float | None:
    sign = 1
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        sign = -1 if isinstance(node.op, ast.USub) else 1
        node = node.operand
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return None if isinstance(node.value, bool) else sign * node.value
    return None


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------


def _known_checks() -> str:
    return ", ".join(CHECK_NAMES)


def _check_builder(name: str) -> Callable[..., Check] | None:
    """The `orchestrator.checks` builder a header's check name calls (imported on first use)."""
    if name not in CHECK_NAMES:
        return None
    from orchestrator import checks

    builder: Callable[..., Check] = getattr(checks, name)
    return builder


def _split_calls(value: str, where: _Where) -> Iterator[str]:
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


def _parse_check(text: str, where: _Where) -> Check:
    match = _CHECK_CALL.match(text)
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


def _call_arguments(text: str, where: _Where) -> tuple[list[Any], dict[str, Any]]:
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


def _value(node: ast.expr, text: str, where: _Where) -> Any:
    """Bare names are column names, dotted names are table names; literals are themselves."""
    if isinstance(node, ast.Constant):
        return node.value
    number = _number(node)
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


# --------------------------------------------------------------------------------------------
# SQL
# --------------------------------------------------------------------------------------------


def _parse_query(body: str, where: _Where) -> exp.Expr:
    """The single query in `body`; positions in errors are lines of the file."""
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import ParseError, TokenError

    assert where.line is not None
    offset = where.line - 1
    try:
        parsed = sqlglot.parse(body, read=DIALECT)
    except ParseError as exc:
        raise _parse_error(exc, where, offset) from None
    except TokenError:
        line, column = _token_error_position(body)
        raise where.parse_error(
            "cannot parse SQL: unterminated string, quoted identifier or comment at line "
            f"{line + offset}, column {column}",
            line + offset,
        ) from None
    _check_duckdb_parses(body, where, offset)
    statements = [s for s in parsed if s is not None and not isinstance(s, exp.Semicolon)]
    if not statements:
        raise where.error("SQL file has only comments: expected one SELECT query")
    if len(statements) > 1:
        second = _second_statement_line(body)
        raise where.parse_error(
            f"a SQL asset must be exactly one query, found {len(statements)} statements",
            None if second is None else second + offset,
        )
    query = statements[0]
    if not isinstance(query, exp.Query | exp.Values):
        kind = query.key.upper()
        if isinstance(query, exp.Command):
            kind = str(query.this).upper()
        raise where.parse_error(
            f"a SQL asset must be a query (SELECT ...); {kind} statements are not allowed, "
            "Sluice writes the result to the asset's table itself"
        )
    return query


def _check_duckdb_parses(body: str, where: _Where, offset: int) -> None:
    """DuckDB runs the SQL, so SQL that sqlglot accepts but DuckDB's parser rejects is an error
    at load time too, not a failure in the middle of a run."""
    import duckdb

    try:
        duckdb.extract_statements(body)
    except duckdb.ParserException as exc:
        text = str(exc)
        found = re.search(r"LINE (\d+):", text)
        line = int(found.group(1)) + offset if found else None
        message = text.splitlines()[0].removeprefix("Parser Error: ")
        at = f" at line {line}" if line is not None else ""
        raise where.parse_error(f"cannot parse SQL: {message}{at}", line) from None


def _parse_error(exc: ParseError, where: _Where, offset: int) -> SqlParseError:
    if not exc.errors:
        return where.parse_error(f"cannot parse SQL: {exc}")
    first = exc.errors[0]
    description = first.get("description") or "syntax error"
    highlight = first.get("highlight") or ""
    line, column = first.get("line"), first.get("col")
    if not isinstance(line, int) or not isinstance(column, int):
        return where.parse_error(f"cannot parse SQL: {description}")
    if highlight and "\n" not in highlight:
        column = max(1, column - len(highlight) + 1)  # sqlglot reports the token's last column
    near = f" near {highlight!r}" if highlight else ""
    return where.parse_error(
        f"cannot parse SQL: {description}{near} at line {line + offset}, column {column}",
        line + offset,
    )


def _token_error_position(body: str) -> tuple[int, int]:
    """(line, column) of the first character the tokenizer could not turn into a token."""
    import sqlglot
    from sqlglot.errors import TokenError

    tokenizer = sqlglot.Dialect.get_or_raise(DIALECT).tokenizer()
    with contextlib.suppress(TokenError):
        tokenizer.tokenize(body)
    tokens = getattr(tokenizer, "tokens", [])
    pos = tokens[-1].end + 1 if tokens else 0
    while pos < len(body):
        if body[pos].isspace():
            pos += 1
        elif body.startswith("--", pos) and "\n" in body[pos:]:
            pos = body.index("\n", pos) + 1
        elif body.startswith("/*", pos) and "*/" in body[pos + 2 :]:
            pos = body.index("*/", pos + 2) + 2
        else:
            break
    pos = min(pos, len(body))
    line = body.count("\n", 0, pos) + 1
    return line, pos - (body.rfind("\n", 0, pos) + 1) + 1


def _second_statement_line(body: str) -> int | None:
    import sqlglot
    from sqlglot.errors import TokenError

    try:
        tokens = sqlglot.Dialect.get_or_raise(DIALECT).tokenize(body)
    except TokenError:
        return None
    seen_statement = False
    after_semicolon = False
    for token in tokens:
        if token.token_type == sqlglot.TokenType.SEMICOLON:
            after_semicolon = seen_statement
        elif after_semicolon:
            return int(token.line)
        else:
            seen_statement = True
    return None


def _strip_terminator(body: str) -> str:
    """`body` without a final `;` (and the comments after it), right-stripped."""
    import sqlglot
    from sqlglot.errors import TokenError

    try:
        tokens = sqlglot.Dialect.get_or_raise(DIALECT).tokenize(body)
    except TokenError:
        return body.rstrip()
    end = len(body)
    while tokens and tokens[-1].token_type == sqlglot.TokenType.SEMICOLON:
        end = tokens[-1].start
        tokens = tokens[:-1]
    return body[:end].rstrip()


def _scoped_tables(query: exp.Expr) -> tuple[set[int], set[int]]:
    """ids of the tables scope analysis saw, and of those that reference a CTE."""
    from sqlglot.errors import SqlglotError
    from sqlglot.optimizer.scope import traverse_scope

    seen: set[int] = set()
    cte_refs: set[int] = set()
    try:
        scopes = traverse_scope(query)
    except (SqlglotError, RecursionError):
        return seen, cte_refs
    for scope in scopes:
        for table in scope.tables:
            seen.add(id(table))
            if not table.db and table.name in scope.cte_sources:
                cte_refs.add(id(table))
    return seen, cte_refs
