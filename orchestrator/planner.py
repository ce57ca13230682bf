"""Plans: which assets (and partitions) run, in which order, why, on which pinned inputs.

A plan is a value. Building one reads nothing: the caller passes what `main` holds for the
selected assets, their upstreams and their partitions (see `published.py`). Upstreams outside
the plan are pinned to what `main` held when the plan was made; upstreams inside it are pinned
to what this run publishes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from orchestrator.assets import Asset, AssetKey
from orchestrator.graph import AssetGraph
from orchestrator.published import RANGE_SEPARATOR, node_key
from orchestrator.staleness import PublishedState, Reason, explain, stale_reasons


@dataclass(frozen=True)
class PartitionSelection:
    """Which partitions of partitioned assets to plan: one (`partition`), a range (`first`,
    `last`), or by default the latest complete one at `as_of` (now)."""

    partition: str | None = None
    first: str | None = None
    last: str | None = None
    as_of: datetime | None = None


@dataclass(frozen=True)
class PlannedStep:
    """One materialization to run: an asset, or one partition (or a range) of it.

    `upstream` lists the input keys (`asset` or `asset@partition`); `waits_for` the steps of
    this plan that must publish first (None: the upstream keys that are steps of the plan).
    """

    asset: str
    reasons: tuple[Reason, ...]
    explanation: str
    upstream: tuple[str, ...]
    pinned: Mapping[str, int] = field(default_factory=dict)
    blocked: str | None = None
    partition: str | None = None
    partitions: tuple[str, ...] = ()
    waits_for: tuple[str, ...] | None = None

    @property
    def node(self) -> str:
        return node_key(self.asset, self.partition)


@dataclass(frozen=True)
class Plan:
    """Steps in run order, and the selected assets (or partitions) that are fresh."""

    steps: tuple[PlannedStep, ...]
    fresh: tuple[str, ...]

    @property
    def runnable(self) -> tuple[PlannedStep, ...]:
        return tuple(s for s in self.steps if s.blocked is None)


def plan_inputs(graph: AssetGraph, selected: Sequence[AssetKey]) -> set[AssetKey]:
    """Assets whose published state a plan over `selected` needs: them and their upstreams."""
    needed = set(selected)
    for key in selected:
        needed.update(graph.upstream(key))
    return needed


def partition_keys(asset: Asset, selection: PartitionSelection) -> list[str | None]:
    """The partitions of `asset` a plan covers ([None] for an unpartitioned asset)."""
    partitions = asset.partitions
    if partitions is None:
        return [None]
    if selection.partition is not None:
        key = partitions.parse_key(selection.partition)
        return [key] if key >= partitions.first_key() else []  # like a range, clipped
    if selection.first is not None or selection.last is not None:
        first = selection.first or partitions.first_key()
        last = selection.last or partitions.latest(datetime.now(UTC)) or first
        return list(partitions.keys(first, last))
    latest = partitions.latest(selection.as_of or datetime.now(UTC))
    return [latest] if latest is not None else []


def input_keys(graph: AssetGraph, key: AssetKey, partition: str | None) -> list[str]:
    """What one node reads: each upstream whole, or the partitions its partition maps to."""
    asset = graph.assets[key]
    found: list[str] = []
    for upstream in graph.upstream(key):
        theirs = graph.assets[upstream].partitions
        if theirs is not None and asset.partitions is not None and partition is not None:
            found += [
                node_key(str(upstream), p)
                for p in asset.partitions.upstream_keys(partition, theirs)
            ]
        else:
            found.append(str(upstream))
    return found


def build_plan(
    graph: AssetGraph,
    selected: Sequence[AssetKey],
    published: Mapping[str, PublishedState],
    *,
    force: bool = False,
    partitions: PartitionSelection = PartitionSelection(),
    ranged: bool = False,
) -> Plan:
    """Plan the stale nodes among `selected` (all of them with `force`)."""
    keyed: list[tuple[AssetKey, str, str | None]] = []
    for key in graph.sorted_keys(selected):
        text = str(key)
        keyed += [(key, text, p) for p in partition_keys(graph.assets[key], partitions)]
    nodes = [(a, p) for _, a, p in keyed]
    order = [node_key(a, p) for a, p in nodes]
    upstreams = {node_key(a, p): input_keys(graph, key, p) for key, a, p in keyed}
    code_versions = {node_key(a, p): graph.assets[key].code_version for key, a, p in keyed}
    rebuilt: dict[str, list[str]] = {}
    for asset, partition in nodes:
        if partition is not None:
            rebuilt.setdefault(asset, []).append(node_key(asset, partition))
    stale = stale_reasons(
        order,
        upstreams,
        code_versions,
        published,
        force=set(order) if force else (),
        rebuilt=rebuilt,
    )
    steps: list[PlannedStep] = []
    for asset, partition in nodes:
        node = node_key(asset, partition)
        if node not in stale:
            continue
        pinned: dict[str, int] = {}
        missing: list[str] = []
        waits: list[str] = []
        for upstream in upstreams[node]:
            in_plan = (
                [upstream]
                if upstream in stale
                else [n for n in rebuilt.get(upstream, ()) if n in stale]
            )
            waits += in_plan
            state = published.get(upstream, PublishedState())
            if in_plan:
                continue
            if state.snapshot_id is None or not state.published:
                missing.append(upstream)
            else:
                pinned[upstream] = state.snapshot_id
        steps.append(
            PlannedStep(
                asset=asset,
                reasons=stale[node],
                explanation=explain(node, stale),
                upstream=tuple(upstreams[node]),
                pinned=pinned,
                blocked=_missing_hint(asset, missing),
                partition=partition,
                partitions=(partition,) if partition is not None else (),
                waits_for=tuple(dict.fromkeys(waits)),
            )
        )
    fresh = tuple(n for n in order if n not in stale)
    plan = Plan(steps=tuple(steps), fresh=fresh)
    return merge_ranges(plan) if ranged else plan


def _missing_hint(asset: str, missing: Sequence[str]) -> str | None:
    if not missing:
        return None
    if all("@" in m for m in missing):
        keys = sorted(m.partition("@")[2] for m in missing)
        return (
            f"upstream {', '.join(missing)} never published: "
            f"sluice backfill +{asset} --from {keys[0]} --to {keys[-1]}"
        )
    return f"upstream {', '.join(missing)} never published: select it too (+{asset})"


def merge_ranges(plan: Plan) -> Plan:
    """One step per partitioned asset covering its planned partitions (one WAP cycle), or one
    per contiguous run of them: a write over a window replaces every partition in it, so it
    must never span a fresh partition (which it would rebuild without recording its inputs)."""
    fresh: dict[str, list[str]] = {}
    for node in plan.fresh:
        asset, _, partition = node.partition("@")
        if partition:
            fresh.setdefault(asset, []).append(partition)
    groups: dict[str, list[list[PlannedStep]]] = {}
    for step in plan.steps:
        if step.partition is None:
            groups[step.node] = [[step]]
            continue
        runs = groups.setdefault(step.asset, [])
        if runs and not any(
            runs[-1][-1].partitions[-1] < f < step.partitions[0] for f in fresh.get(step.asset, ())
        ):
            runs[-1].append(step)
        else:
            runs.append([step])
    merged_node = {
        s.node: node_key(s.asset, _range_label(group))
        for runs in groups.values()
        for group in runs
        for s in group
        if s.partition is not None
    }
    steps = []
    for group in (group for runs in groups.values() for group in runs):
        first = group[0]
        if first.partition is None:
            steps.append(_rewire(first, merged_node))
            continue
        own = {s.node for s in group}
        blocked = next((s.blocked for s in group if s.blocked), None)
        pinned: dict[str, int] = {}
        for s in group:
            pinned.update(s.pinned)
        steps.append(
            _rewire(
                PlannedStep(
                    asset=first.asset,
                    reasons=first.reasons,
                    explanation=first.explanation,
                    upstream=tuple(dict.fromkeys(u for s in group for u in s.upstream)),
                    pinned=pinned,
                    blocked=blocked,
                    partition=_range_label(group),
                    partitions=tuple(p for s in group for p in s.partitions),
                    waits_for=tuple(
                        dict.fromkeys(w for s in group for w in (s.waits_for or ()) if w not in own)
                    ),
                ),
                merged_node,
            )
        )
    return Plan(steps=tuple(steps), fresh=plan.fresh)


def _range_label(group: Sequence[PlannedStep]) -> str:
    first, last = group[0].partitions[0], group[-1].partitions[-1]
    return first if first == last else f"{first}{RANGE_SEPARATOR}{last}"


def _rewire(step: PlannedStep, merged: Mapping[str, str]) -> PlannedStep:
    waits = tuple(dict.fromkeys(merged.get(w, w) for w in (step.waits_for or ())))
    return replace(step, waits_for=waits)
