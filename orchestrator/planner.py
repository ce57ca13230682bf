"""Plans: which assets run, in which order, why, and on which pinned inputs. A plan is a value.

Building a plan reads nothing: the caller passes what `main` holds for the selected assets and
their upstreams (see `published.py`). Upstreams outside the plan are pinned to the snapshot
`main` held when the plan was made; upstreams inside it are pinned to what this run publishes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from orchestrator.assets import AssetKey
from orchestrator.graph import AssetGraph
from orchestrator.staleness import PublishedState, Reason, explain, stale_reasons


@dataclass(frozen=True)
class PlannedStep:
    """One materialization to run."""

    asset: str
    reasons: tuple[Reason, ...]
    explanation: str
    upstream: tuple[str, ...]
    pinned: Mapping[str, int] = field(default_factory=dict)
    blocked: str | None = None


@dataclass(frozen=True)
class Plan:
    """Steps in run order, and the selected assets that are fresh."""

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


def build_plan(
    graph: AssetGraph,
    selected: Sequence[AssetKey],
    published: Mapping[str, PublishedState],
    *,
    force: bool = False,
) -> Plan:
    """Plan the stale assets among `selected` (all of them with `force`)."""
    order = [str(k) for k in graph.sorted_keys(selected)]
    upstreams = {str(k): [str(u) for u in graph.upstream(k)] for k in selected}
    code_versions = {str(k): graph.assets[k].code_version for k in selected}
    stale = stale_reasons(
        order, upstreams, code_versions, published, force=set(order) if force else ()
    )
    steps: list[PlannedStep] = []
    for key in order:
        if key not in stale:
            continue
        pinned: dict[str, int] = {}
        missing: list[str] = []
        for upstream in upstreams[key]:
            if upstream in stale:
                continue
            state = published.get(upstream, PublishedState())
            if not state.published or state.snapshot_id is None:
                missing.append(upstream)
                continue
            pinned[upstream] = state.snapshot_id
        steps.append(
            PlannedStep(
                asset=key,
                reasons=stale[key],
                explanation=explain(key, stale),
                upstream=tuple(upstreams[key]),
                pinned=pinned,
                blocked=(
                    f"upstream {', '.join(missing)} never published: select it too (+{key})"
                    if missing
                    else None
                ),
            )
        )
    fresh = tuple(k for k in order if k not in stale)
    return Plan(steps=tuple(steps), fresh=fresh)
