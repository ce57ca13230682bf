"""Selection expressions: which assets a run materializes.

Grammar of one expression (several are a union; one string may hold several, separated by
spaces or commas):

    [+]BASE[+]     a leading `+` adds every upstream, a trailing `+` every downstream
    BASE := NAME | LAYER.NAME | layer:LAYER | tag:TAG | *

`NAME` and `LAYER.NAME` follow the graph's reference rules (`AssetGraph.resolve`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from orchestrator.assets import AssetKey
from orchestrator.errors import SelectionError, UnknownAssetError
from orchestrator.graph import AssetGraph, did_you_mean

SEPARATORS = re.compile(r"[\s,]+")
EXPRESSION = re.compile(r"^(?P<up>\+?)(?P<base>[^+]+)(?P<down>\+?)$")


def select(graph: AssetGraph, expressions: Sequence[str] | str) -> list[AssetKey]:
    """The union of what every expression selects, in run order, without duplicates.

    No expression at all (an empty sequence, or only blanks) selects every asset. A single
    string is accepted as one expression list. Raises `SelectionError` for an expression that
    cannot be parsed or matches nothing, with a did-you-mean hint.
    """
    tokens = split_expressions([expressions] if isinstance(expressions, str) else expressions)
    if not tokens:
        return list(graph.order)
    selected: set[AssetKey] = set()
    for token in tokens:
        selected |= select_one(graph, token)
    return graph.sorted_keys(selected)


def split_expressions(expressions: Iterable[str]) -> list[str]:
    """Every expression, with strings holding several split on spaces and commas."""
    return [token for text in expressions for token in SEPARATORS.split(text) if token]


def select_one(graph: AssetGraph, expression: str) -> set[AssetKey]:
    """The keys one expression (no separators) selects; never empty unless the graph is."""
    match = EXPRESSION.match(expression)
    if match is None:
        raise SelectionError(
            f"cannot parse selection '{expression}': expected NAME, LAYER.NAME, layer:LAYER, "
            "tag:TAG or *, optionally with a leading and/or trailing '+'"
        )
    keys = _base(graph, match["base"], expression)
    selected = set(keys)
    if match["up"]:
        selected |= graph.ancestors(keys)
    if match["down"]:
        selected |= graph.descendants(keys)
    return selected


def _base(graph: AssetGraph, base: str, expression: str) -> set[AssetKey]:
    """The keys `base` names, before `+` expansion."""
    if base == "*":
        return set(graph.order)
    method, colon, value = base.partition(":")
    if not colon:
        return {_resolve(graph, base, expression)}
    if method == "layer":
        return _by_attribute(graph, "layer", value, expression)
    if method == "tag":
        return _by_attribute(graph, "tag", value, expression)
    raise SelectionError(
        f"unknown selector '{method}:' in selection '{expression}'; use 'layer:LAYER' or 'tag:TAG'"
    )


def _resolve(graph: AssetGraph, name: str, expression: str) -> AssetKey:
    """`graph.resolve(name)`, with its error turned into a `SelectionError`."""
    try:
        return graph.resolve(name)
    except UnknownAssetError as exc:
        raise SelectionError(f"selection '{expression}' matches nothing: {exc.message}") from None


def _by_attribute(graph: AssetGraph, method: str, value: str, expression: str) -> set[AssetKey]:
    """Keys whose layer (`method == "layer"`) or tags (`"tag"`) match `value`; never empty."""
    if method == "layer":
        found = {key for key in graph.order if key.layer == value}
        existing = {key.layer for key in graph.order}
    else:
        found = {key for key, asset in graph.assets.items() if value in asset.tags}
        existing = {tag for asset in graph.assets.values() for tag in asset.tags}
    if found:
        return found
    plural = "layers" if method == "layer" else "tags"
    known = f"{plural}: {', '.join(sorted(existing))}" if existing else f"no {plural} exist"
    raise SelectionError(
        f"selection '{expression}' matches nothing: no asset has {method} '{value}'"
        f"{did_you_mean(value, sorted(existing), prefix=f'{method}:')} ({known})"
    )
