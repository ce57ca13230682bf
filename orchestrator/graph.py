"""The validated asset graph: reference resolution, cycle detection and run order.

`build_graph` is the only way to obtain an `AssetGraph`. Once built, a graph is known to have
unique keys, fully resolved upstream references and no cycles, so every query on it is total for
the keys it contains. The module is pure: no I/O, no imports of user code.

Reference rules (shared by `build_graph` and `AssetGraph.resolve`):

* a reference containing a dot (`"silver.orders"`) is a full key and must name an asset exactly;
* any other reference (`"orders"`) is a short name and must match exactly one asset's name;
  a short name shared by several layers is ambiguous and must be written as a full key.
"""

from __future__ import annotations

import difflib
import graphlib
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from orchestrator.assets import Asset, AssetKey
from orchestrator.errors import CycleError, DuplicateAssetError, UnknownAssetError

MAX_SUGGESTIONS = 3
SUGGESTION_CUTOFF = 0.6


def quoted_list(items: Iterable[object], conjunction: str = "and") -> str:
    """`'a'`, `'a' and 'b'`, `'a', 'b' and 'c'` (with `conjunction` before the last item)."""
    parts = [f"'{item}'" for item in items]
    if len(parts) <= 1:
        return "".join(parts)
    return f"{', '.join(parts[:-1])} {conjunction} {parts[-1]}"


def did_you_mean(value: str, candidates: Iterable[str], prefix: str = "") -> str:
    """`"; did you mean '<prefix>x'?"` for the closest candidates, or `""` if none is close."""
    matches = difflib.get_close_matches(
        value, list(candidates), n=MAX_SUGGESTIONS, cutoff=SUGGESTION_CUTOFF
    )
    suggested = [f"{prefix}{match}" for match in matches]
    return f"; did you mean {quoted_list(suggested, 'or')}?" if suggested else ""


def _location(asset: Asset) -> str:
    """`file:line` of a definition, `file` without a line, or `<unknown location>`."""
    if asset.file is None:
        return "<unknown location>"
    return asset.file if asset.line is None else f"{asset.file}:{asset.line}"


_sort_key = operator.attrgetter("layer", "name")
"""The order of `AssetKey`s as a plain tuple: sorting thousands of keys by it is much cheaper
than through the dataclass comparison methods, with the same result."""


def _as_keys(keys: AssetKey | Iterable[AssetKey]) -> list[AssetKey]:
    """One key or an iterable of keys, as a list."""
    return [keys] if isinstance(keys, AssetKey) else list(keys)


@dataclass(frozen=True)
class _NameIndex:
    """Every known key plus a short-name index, built once in O(n)."""

    keys: frozenset[AssetKey]
    by_name: Mapping[str, tuple[AssetKey, ...]]

    @classmethod
    def of(cls, keys: Iterable[AssetKey]) -> _NameIndex:
        """Index `keys`; each short name maps to its keys in sorted order."""
        by_name: dict[str, list[AssetKey]] = {}
        for key in sorted(keys, key=_sort_key):
            by_name.setdefault(key.name, []).append(key)
        return cls(
            keys=frozenset(key for found in by_name.values() for key in found),
            by_name=MappingProxyType({name: tuple(found) for name, found in by_name.items()}),
        )

    def lookup(self, ref: str) -> tuple[AssetKey, ...]:
        """Every key `ref` may mean: one if it resolves, several if ambiguous, none if unknown."""
        if "." in ref:
            layer, _, name = ref.partition(".")
            key = AssetKey(layer, name)
            return (key,) if key in self.keys else ()
        return self.by_name.get(ref, ())

    def suggestions(self, ref: str) -> list[str]:
        """Up to `MAX_SUGGESTIONS` full keys close to `ref`, best first.

        A key is close if its full key is close to `ref` or its short name is close to `ref`'s
        name part; it scores the better of the two similarities.
        """
        name = ref.rpartition(".")[2]
        full_names = [str(key) for key in self.keys]
        close = [
            *difflib.get_close_matches(
                ref, [*self.by_name, *full_names], MAX_SUGGESTIONS, SUGGESTION_CUTOFF
            ),
            *difflib.get_close_matches(
                name, list(self.by_name), MAX_SUGGESTIONS, SUGGESTION_CUTOFF
            ),
        ]
        keys = {key for match in close for key in self.lookup(match)}

        def score(key: AssetKey) -> tuple[float, float, str]:
            full = difflib.SequenceMatcher(None, ref, str(key)).ratio()
            short = difflib.SequenceMatcher(None, name, key.name).ratio()
            return (-max(full, short), -full, str(key))

        return [str(key) for key in sorted(keys, key=score)[:MAX_SUGGESTIONS]]

    def resolve(self, ref: str, referrer: Asset | None = None) -> AssetKey:
        """The one key `ref` names, else `UnknownAssetError` (located at `referrer` if given)."""
        found = self.lookup(ref)
        if len(found) == 1:
            return found[0]
        prefix = f"asset '{referrer.key}' references " if referrer is not None else ""
        if found:
            message = (
                f"{prefix}ambiguous asset name '{ref}': it matches {quoted_list(found)}; "
                f"use the full key, e.g. '{found[0]}'"
            )
        else:
            hints = self.suggestions(ref)
            hint = (
                f"did you mean {quoted_list(hints, 'or')}?"
                if hints
                else "no asset has a similar name"
            )
            message = f"{prefix}unknown asset '{ref}'; {hint}"
        if referrer is None:
            raise UnknownAssetError(message)
        raise UnknownAssetError(
            message, asset=str(referrer.key), file=referrer.file, line=referrer.line
        )


@dataclass(frozen=True, eq=False, repr=False)
class AssetGraph:
    """A validated, acyclic asset graph. Build it with `build_graph`.

    `assets` iterates in run order. `order` is a deterministic topological order that does not
    depend on the order in which assets were given: it runs generation by generation (every
    asset whose upstreams are all earlier), each generation sorted by key. Every query raises
    `UnknownAssetError` for a key that is not in the graph.
    """

    assets: Mapping[AssetKey, Asset]
    order: tuple[AssetKey, ...]
    _index: _NameIndex
    _upstream: Mapping[AssetKey, tuple[AssetKey, ...]]
    _downstream: Mapping[AssetKey, tuple[AssetKey, ...]]
    _inputs: Mapping[AssetKey, Mapping[str, AssetKey]]
    _position: Mapping[AssetKey, int]

    def __repr__(self) -> str:
        return f"AssetGraph({len(self.order)} assets)"

    def __len__(self) -> int:
        return len(self.order)

    def __contains__(self, key: object) -> bool:
        return key in self.assets

    def _require(self, key: AssetKey) -> AssetKey:
        """`key` itself if it is in the graph, else `UnknownAssetError` with a hint."""
        if key not in self.assets:
            hints = self._index.suggestions(str(key))
            hint = f"; did you mean {quoted_list(hints, 'or')}?" if hints else ""
            raise UnknownAssetError(f"unknown asset '{key}'{hint}", asset=str(key))
        return key

    def resolve(self, ref: str | AssetKey) -> AssetKey:
        """The key named by `ref` (short name or full key), by the module's reference rules.

        Raises `UnknownAssetError` for an unknown name (with a did-you-mean hint) or an
        ambiguous short name (listing the candidates).
        """
        if isinstance(ref, AssetKey):
            return self._require(ref)
        return self._index.resolve(ref)

    def upstream(self, key: AssetKey) -> tuple[AssetKey, ...]:
        """Direct upstreams of `key`, resolved, in reference order, without duplicates."""
        return self._upstream[self._require(key)]

    def downstream(self, key: AssetKey) -> tuple[AssetKey, ...]:
        """Direct downstreams of `key`, sorted by key."""
        return self._downstream[self._require(key)]

    def ancestors(self, keys: AssetKey | Iterable[AssetKey]) -> set[AssetKey]:
        """Every asset reachable upstream from `keys` through at least one edge.

        A given key is included only if it is upstream of another given key.
        """
        return self._reach(keys, self._upstream)

    def descendants(self, keys: AssetKey | Iterable[AssetKey]) -> set[AssetKey]:
        """Every asset reachable downstream from `keys` through at least one edge.

        A given key is included only if it is downstream of another given key.
        """
        return self._reach(keys, self._downstream)

    def _reach(
        self,
        keys: AssetKey | Iterable[AssetKey],
        edges: Mapping[AssetKey, tuple[AssetKey, ...]],
    ) -> set[AssetKey]:
        """Transitive closure over `edges` from `keys`, in O(nodes + edges) visited."""
        stack = [nxt for key in _as_keys(keys) for nxt in edges[self._require(key)]]
        seen: set[AssetKey] = set()
        while stack:
            node = stack.pop()
            if node not in seen:
                seen.add(node)
                stack.extend(edges[node])
        return seen

    def inputs(self, key: AssetKey) -> dict[str, AssetKey]:
        """Function parameter name -> resolved upstream key, in parameter order (a copy)."""
        return dict(self._inputs[self._require(key)])

    def sorted_keys(self, keys: Iterable[AssetKey]) -> list[AssetKey]:
        """The given keys, without duplicates, in run order (their order in `order`)."""
        unique = {self._require(key) for key in keys}
        return sorted(unique, key=self._position.__getitem__)


def build_graph(assets: Iterable[Asset]) -> AssetGraph:
    """Validate `assets` and return their graph; nothing runs before this succeeds.

    Checks run in this order and the first failure is raised; within each check, assets are
    visited sorted by key, so the error does not depend on the order of `assets`:

    1. duplicate keys -> `DuplicateAssetError` (smallest duplicated key, every location);
    2. every reference resolves -> `UnknownAssetError` (unknown or ambiguous, with a hint,
       located at the referencing asset);
    3. no cycles, self-references included -> `CycleError` (the cycle path).
    """
    by_key = _unique(assets)
    index = _NameIndex.of(by_key)
    upstream, inputs = _resolve_references(by_key, index)
    order = _topological_order(by_key, upstream)
    return AssetGraph(
        assets=MappingProxyType({key: by_key[key] for key in order}),
        order=order,
        _index=index,
        _upstream=MappingProxyType(upstream),
        _downstream=MappingProxyType(_invert(order, upstream)),
        _inputs=MappingProxyType(inputs),
        _position=MappingProxyType({key: pos for pos, key in enumerate(order)}),
    )


def _unique(assets: Iterable[Asset]) -> dict[AssetKey, Asset]:
    """Assets by key, sorted by key; `DuplicateAssetError` if a key is defined twice."""
    definitions: dict[AssetKey, list[Asset]] = {}
    for asset in assets:
        definitions.setdefault(asset.key, []).append(asset)
    duplicated = sorted(key for key, found in definitions.items() if len(found) > 1)
    if duplicated:
        raise _duplicate_error(duplicated[0], definitions[duplicated[0]])
    return {key: definitions[key][0] for key in sorted(definitions, key=_sort_key)}


def _duplicate_error(key: AssetKey, definitions: Sequence[Asset]) -> DuplicateAssetError:
    """Error naming `key` and every definition location, located at the second one."""
    ordered = sorted(
        definitions, key=lambda a: (a.file or "", a.line if a.line is not None else -1)
    )
    places = [_location(asset) for asset in ordered]
    where = " and ".join(places) if len(places) == 2 else ", ".join(places)
    return DuplicateAssetError(
        f"asset '{key}' is defined more than once: at {where}",
        asset=str(key),
        file=ordered[1].file,
        line=ordered[1].line,
    )


def _resolve_references(
    by_key: Mapping[AssetKey, Asset], index: _NameIndex
) -> tuple[dict[AssetKey, tuple[AssetKey, ...]], dict[AssetKey, Mapping[str, AssetKey]]]:
    """Resolved direct upstreams and parameter inputs of every asset, visited sorted by key."""
    upstream: dict[AssetKey, tuple[AssetKey, ...]] = {}
    inputs: dict[AssetKey, Mapping[str, AssetKey]] = {}
    for key, asset in by_key.items():
        resolved = {ref: index.resolve(ref, referrer=asset) for ref in asset.references}
        upstream[key] = tuple(dict.fromkeys(resolved.values()))
        inputs[key] = MappingProxyType({param: resolved[ref] for param, ref in asset.inputs})
    return upstream, inputs


def _topological_order(
    by_key: Mapping[AssetKey, Asset], upstream: Mapping[AssetKey, tuple[AssetKey, ...]]
) -> tuple[AssetKey, ...]:
    """Generation-by-generation order, each generation sorted; `CycleError` on a cycle.

    `by_key` must iterate sorted by key. The sort runs on integer ids (their order is the key
    order) because hashing and comparing ints is much cheaper than `AssetKey`s.
    """
    keys = list(by_key)
    ids = {key: number for number, key in enumerate(keys)}
    sorter: graphlib.TopologicalSorter[int] = graphlib.TopologicalSorter()
    for number, key in enumerate(keys):
        sorter.add(number, *[ids[parent] for parent in upstream[key]])
    try:
        sorter.prepare()
    except graphlib.CycleError as exc:
        raise _cycle_error([keys[number] for number in exc.args[1]], by_key) from None
    order: list[AssetKey] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        order.extend(keys[number] for number in ready)
        sorter.done(*ready)
    return tuple(order)


def _cycle_error(cycle: Sequence[AssetKey], by_key: Mapping[AssetKey, Asset]) -> CycleError:
    """`dependency cycle: a -> b -> a`, arrows pointing downstream, starting at the smallest key.

    `cycle` is graphlib's path: first and last node equal, each node upstream of the next.
    """
    nodes = list(cycle[:-1])
    start = nodes.index(min(nodes))
    path = [*nodes[start:], *nodes[:start], nodes[start]]
    first = by_key[path[0]]
    return CycleError(
        "dependency cycle: " + " -> ".join(str(key) for key in path),
        asset=str(first.key),
        file=first.file,
        line=first.line,
    )


def _invert(
    order: Sequence[AssetKey], upstream: Mapping[AssetKey, tuple[AssetKey, ...]]
) -> dict[AssetKey, tuple[AssetKey, ...]]:
    """Direct downstreams of every key, each sorted by key."""
    downstream: dict[AssetKey, list[AssetKey]] = {key: [] for key in order}
    for key in sorted(order, key=_sort_key):
        for parent in upstream[key]:
            downstream[parent].append(key)
    return {key: tuple(children) for key, children in downstream.items()}
