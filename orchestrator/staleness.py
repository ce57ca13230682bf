"""The one staleness function, shared by the CLI and the scheduler. Pure: no I/O.

An asset is stale when it was never published, its code version differs from the one its
published snapshot records, or an upstream's published snapshot differs from the one it was
built from. An asset downstream of one that this plan rebuilds is stale too, and its
explanation follows the chain down to the root cause.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

ReasonKind = Literal[
    "never_published",
    "code_changed",
    "upstream_changed",
    "upstream_stale",
    "upstreams_changed",
    "forced",
]


@dataclass(frozen=True)
class PublishedState:
    """What `main` holds for one asset, read from snapshot provenance."""

    snapshot_id: int | None = None
    code_version: str | None = None
    inputs: Mapping[str, int] = field(default_factory=dict)

    @property
    def published(self) -> bool:
        return self.snapshot_id is not None and self.code_version is not None


@dataclass(frozen=True)
class Reason:
    kind: ReasonKind
    upstream: str | None = None
    detail: str = ""

    def text(self, *, versions: bool = True) -> str:
        """One reason in words; `versions=False` leaves out code versions and snapshot ids."""
        if self.kind == "never_published":
            return "it was never published"
        if self.kind == "code_changed":
            changed = "its code changed"
            return f"{changed} ({self.detail})" if self.detail and versions else changed
        if self.kind == "upstream_changed":
            changed = f"{self.upstream} was republished since it was built"
            return f"{changed} ({self.detail})" if versions else changed
        if self.kind == "upstream_stale":
            return f"{self.upstream} changed"
        if self.kind == "upstreams_changed":
            return f"its upstream assets changed ({self.detail})"
        return "--force was given"


def stale_reasons(
    order: Sequence[str],
    upstreams: Mapping[str, Sequence[str]],
    code_versions: Mapping[str, str],
    published: Mapping[str, PublishedState],
    *,
    force: Collection[str] = (),
    rebuilt: Mapping[str, Collection[str]] | None = None,
) -> dict[str, tuple[Reason, ...]]:
    """Reasons for every stale key of `order` (given in run order); fresh keys are absent.

    `upstreams` must list every upstream of every key of `order`; `published` should hold the
    state of those upstreams too (a missing one counts as never published). Keys may be
    partitions (`asset@partition`): inputs a write recorded for other partitions of a declared
    upstream asset do not concern this key. `rebuilt` maps an upstream key to the keys whose
    rebuild changes it (a partitioned asset read whole changes when any partition is rebuilt).
    """
    rebuilt = rebuilt or {}
    stale: dict[str, tuple[Reason, ...]] = {}
    for key in order:
        state = published.get(key, PublishedState())
        reasons: list[Reason] = []
        if key in force:
            reasons.append(Reason("forced"))
        if not state.published:
            reasons.append(Reason("never_published"))
        else:
            if state.code_version != code_versions[key]:
                reasons.append(
                    Reason("code_changed", detail=f"{state.code_version} -> {code_versions[key]}")
                )
            declared = set(upstreams.get(key, ()))
            declared_assets = {_asset_of(u) for u in declared}
            recorded = {
                u for u in state.inputs if u in declared or _asset_of(u) not in declared_assets
            }
            if declared != recorded:
                added, removed = sorted(declared - recorded), sorted(recorded - declared)
                detail = ", ".join([f"+{u}" for u in added] + [f"-{u}" for u in removed])
                reasons.append(Reason("upstreams_changed", detail=detail))
        for upstream in upstreams.get(key, ()):
            cause = (
                upstream
                if upstream in stale
                else next((n for n in rebuilt.get(upstream, ()) if n in stale), None)
            )
            if cause is not None:
                reasons.append(Reason("upstream_stale", upstream=cause))
            elif state.published and upstream in state.inputs:
                now = published.get(upstream, PublishedState()).snapshot_id
                built = state.inputs[upstream]
                if now != built:
                    reasons.append(
                        Reason("upstream_changed", upstream=upstream, detail=f"{built} -> {now}")
                    )
        if reasons:
            stale[key] = tuple(reasons)
    return stale


def _asset_of(key: str) -> str:
    return key.partition("@")[0]


def explain(key: str, stale: Mapping[str, Sequence[Reason]]) -> str:
    """`gold.revenue is stale because silver.orders changed, because its code changed`.

    Words only: the versions and snapshot ids are in each reason's own `text()`.
    """
    parts: list[str] = []
    current: str | None = key
    seen: set[str] = set()
    while current is not None and current in stale and current not in seen:
        seen.add(current)
        reasons = stale[current]
        first = next((r for r in reasons if r.kind != "upstream_stale"), reasons[0])
        parts.append(first.text(versions=False))
        current = first.upstream if first.kind == "upstream_stale" else None
    return f"{key} is stale because " + ", because ".join(parts)
