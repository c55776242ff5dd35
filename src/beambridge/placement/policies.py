"""The placement policies: given the sites that can take a job now, which one gets it.

* ``round_robin`` — each site in turn (the snapshot's site order; the cursor carries across batches).
* ``shortest_backlog`` — Balsam's: the site with the fewest jobs waiting (its ``max_site_backlog`` cap
  is applied to every policy, as a site limit, before the policy sees the candidates).
* ``fastest_finish`` — the smallest predicted finish plus the delay the job would impose on the jobs
  after it at that site (:mod:`~beambridge.placement.finish_time`: its *cost*); a small,
  seeded share of jobs goes to an eligible site with no history for the app, so a new site gets measured
  instead of judged forever on its configured priors.

A policy sees candidates with their estimates already computed and returns the index it picks and why.
Ties go to a seeded hash of (job, site): deterministic for one snapshot, yet identical sites share work.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from beambridge.placement.finish_time import FinishEstimate, SiteLoad
from beambridge.placement.snapshot import JobRequest, Snapshot


@dataclass(slots=True)
class Candidate:
    """A site that can take the job now, with the batch's view of it and the job's predicted finish."""

    load: SiteLoad
    estimate: FinishEstimate

    @property
    def name(self) -> str:
        """The site's name."""
        return self.load.site.name


@dataclass(slots=True)
class PolicyContext:
    """What a policy may use besides the candidates: the snapshot and the round-robin cursor."""

    snapshot: Snapshot
    cursor: int


@dataclass(frozen=True, slots=True)
class Choice:
    """A policy's pick: the candidate's index, a sentence saying why, and whether it was exploration."""

    index: int
    reason: str
    explored: bool = False


Policy = Callable[[JobRequest, Sequence[Candidate], PolicyContext], Choice]


def unit_hash(seed: int, *parts: object) -> float:
    """A number in [0, 1) fixed by ``seed`` and ``parts`` (the same in every process, unlike ``hash``)."""
    text = "|".join([str(seed), *map(str, parts)]).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big") / 2.0**64


def _best(values: Sequence[float], seed: int, job: JobRequest, candidates: Sequence[Candidate]) -> int:
    """Index of the smallest value; exact ties broken by the seeded hash of (job, site)."""
    low = min(values)
    tied = [i for i, v in enumerate(values) if v == low]
    if len(tied) == 1:
        return tied[0]
    return min(tied, key=lambda i: unit_hash(seed, job.key, candidates[i].name))


def round_robin(job: JobRequest, candidates: Sequence[Candidate], ctx: PolicyContext) -> Choice:
    """The next site in turn."""
    index = ctx.cursor % len(candidates)
    ctx.cursor += 1
    return Choice(index, f"round robin: turn {ctx.cursor} of {len(candidates)} sites")


def shortest_backlog(job: JobRequest, candidates: Sequence[Candidate], ctx: PolicyContext) -> Choice:
    """The site with the fewest jobs waiting (Balsam's ``shortest-backlog``)."""
    backlogs = [c.load.backlog for c in candidates]
    index = _best(backlogs, ctx.snapshot.seed, job, candidates)
    others = sorted(b for i, b in enumerate(backlogs) if i != index)
    tail = f" (next: {others[0]})" if others else ""
    return Choice(index, f"shortest backlog: {backlogs[index]} jobs waiting{tail}")


def fastest_finish(job: JobRequest, candidates: Sequence[Candidate], ctx: PolicyContext) -> Choice:
    """The smallest predicted finish plus imposed delay; now and then a site with no history for the
    app, to learn it."""
    snapshot = ctx.snapshot
    share = snapshot.options.explore_share
    if share > 0 and len(candidates) > 1:
        unexplored = [
            i
            for i, c in enumerate(candidates)
            if not c.load.site.has_history(job.app) and c.load.in_flight(job.app) == 0
        ]
        # the job's hash decides whether it explores: drawn only when there is a site to explore
        if unexplored and len(unexplored) < len(candidates) and unit_hash(snapshot.seed, job.key) < share:
            index = min(unexplored, key=lambda i: unit_hash(snapshot.seed, job.key, candidates[i].name))
            return Choice(
                index,
                f"exploration: no run history for {job.app!r} at {candidates[index].name!r} "
                f"(a {share:.0%} share of jobs goes to sites without history)",
                explored=True,
            )
    costs = [c.estimate.cost_s for c in candidates]
    index = _best(costs, snapshot.seed, job, candidates)
    others = [(f, c.name) for i, (f, c) in enumerate(zip(costs, candidates, strict=True)) if i != index]
    runner = min(others) if others else None
    chosen = candidates[index].estimate
    marginal = f" + {chosen.marginal_s:.1f} s imposed on later jobs" if chosen.marginal_s else ""
    tail = f" (next: {runner[1]!r} {runner[0]:.1f} s)" if runner is not None else ""
    return Choice(index, f"fastest predicted finish: {chosen.finish_s:.1f} s{marginal}{tail}")


POLICIES: dict[str, Policy] = {
    "round_robin": round_robin,
    "shortest_backlog": shortest_backlog,
    "fastest_finish": fastest_finish,
}
"""The policies by name."""

DEFAULT_POLICY = "fastest_finish"


def get_policy(name: str) -> Policy:
    """The policy called ``name``; a :class:`ValueError` naming the known ones otherwise."""
    try:
        return POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown placement policy {name!r} (known: {', '.join(POLICIES)})") from None
