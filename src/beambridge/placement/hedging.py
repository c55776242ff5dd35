"""Hedging: a copy, on another site, of a job that is running late.

A job submitted with ``hedge=True`` whose time since placement has passed the 95th percentile of its
predicted finish (its decision's ``finish_p95_s`` at the chosen site) gets a copy on the best other site
that takes work now, chosen by the same batch placement as any job (so copies spread and respect caps).
The first run to finish wins and the service cancels the other; the job finishes exactly once with both
runs in its history. Copies are rationed: at most ``max_copies`` per call, most overdue first, so a site
that slows down as a whole does not double the load on every other site at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from beambridge.placement.decision import Decision
from beambridge.placement.placer import EligibilityCache, PlacedJob, place_batch
from beambridge.placement.policies import DEFAULT_POLICY
from beambridge.placement.snapshot import Snapshot


@dataclass(frozen=True, slots=True)
class Hedge:
    """A copy to start: the job, the site it runs late on, by how much, and the copy's placement."""

    original: PlacedJob
    overdue_s: float
    decision: Decision

    @property
    def site(self) -> str:
        """Where the copy goes."""
        assert self.decision.site is not None
        return self.decision.site


def overdue(placed: Iterable[PlacedJob], now: float) -> list[tuple[PlacedJob, float]]:
    """Hedge-flagged jobs without a copy that passed their predicted p95 finish, most overdue first
    (by elapsed time over the p95), with the seconds they are past it."""
    late = []
    for item in placed:
        if not item.job.hedge or item.hedged or item.finish_p95_s is None:
            continue
        elapsed = now - item.placed_at
        if elapsed > item.finish_p95_s:
            late.append((item, elapsed / max(item.finish_p95_s, 1e-9), elapsed - item.finish_p95_s))
    late.sort(key=lambda row: -row[1])
    return [(item, past) for item, _, past in late]


def hedges(
    placed: Iterable[PlacedJob],
    snapshot: Snapshot,
    *,
    policy: str = DEFAULT_POLICY,
    max_copies: int | None = None,
    cache: EligibilityCache | None = None,
) -> list[Hedge]:
    """The copies to make now (see the module docstring); jobs with no other site to go to are left."""
    late = overdue(placed, snapshot.now)
    if max_copies is not None:
        late = late[: max(max_copies, 0)]
    if not late:
        return []
    avoid = {item.job.key: {item.site: "the job already runs here"} for item, _ in late}
    result = place_batch([item.job for item, _ in late], snapshot, policy, avoid=avoid, cache=cache)
    return [
        Hedge(item, past, decision)
        for (item, past), decision in zip(late, result.decisions, strict=True)
        if decision.site is not None
    ]
