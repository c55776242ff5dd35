"""Placing jobs: one (:func:`place`) or many at once (:func:`place_batch`), and re-placing jobs whose site
stopped taking work (:func:`jobs_to_replace`).

For each job and each site it names::

    ineligible   the site can never run it (app, parameters, transfer slots, locations)   → reasons
    unavailable  not now: down or draining, the job must avoid it, backlog cap reached,
                 or no capacity will come (no pilot running or queued, none to be submitted)
    candidate    predicted finish computed; the policy picks one → chosen

A job with no eligible site is ``refused``; one whose eligible sites are all unavailable is ``deferred``
(the service tries again next cycle); otherwise it is ``placed``. A batch is placed highest priority
first (the order acquire serves them), and every placement is added to its site's load before the next
job is considered, so a batch spreads over sites as the predictions fill up.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from beambridge.placement.decision import Decision, Outcome, SiteEstimate, SiteStatus
from beambridge.placement.eligibility import ineligibility, job_sites, location_of, shape_key
from beambridge.placement.finish_time import INFINITE, FinishEstimate, SiteLoad, predict_finish
from beambridge.placement.policies import DEFAULT_POLICY, Candidate, PolicyContext, get_policy
from beambridge.placement.snapshot import JobKey, JobRequest, SiteSnapshot, Snapshot
from beambridge.schemas.apps import TransferDirection

NO_CAPACITY = "no pilot is running or queued, and the site will not submit one"


@dataclass(frozen=True, slots=True)
class BatchResult:
    """The decisions of a batch, in the order the jobs were given, and the next round-robin cursor."""

    decisions: tuple[Decision, ...]
    round_robin_cursor: int

    def placed(self) -> dict[JobKey, str]:
        """Job → site for the jobs that were placed."""
        return {d.job: d.site for d in self.decisions if d.site is not None}


@dataclass(frozen=True, slots=True)
class _Fit:
    """What a job's shape means at one site: why it is ineligible, and the locations it moves data with."""

    reasons: tuple[str, ...]
    in_locations: tuple[str, ...]
    out_locations: tuple[str, ...]


def _fit(job: JobRequest, site: SiteSnapshot) -> _Fit:
    reasons = tuple(ineligibility(job, site))
    app = site.apps.get(job.app)
    inputs = dict.fromkeys(job.input_bytes)
    outputs = dict.fromkeys(job.output_bytes)
    if app is not None:
        for slot, value in job.transfers.items():
            spec = app.transfer_slots.get(slot)
            if spec is not None:
                target = inputs if spec.direction is TransferDirection.IN else outputs
                target[location_of(value)] = None
    return _Fit(reasons, tuple(inputs), tuple(outputs))


class EligibilityCache:
    """Eligibility of job shapes at sites, kept across batches by a caller that places often.

    An entry is reused only while the site's app of that name and its locations are the very same
    objects, so a site that re-registers its apps is checked afresh.
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._fits: dict[tuple[object, ...], tuple[object, frozenset[str], _Fit]] = {}

    def fit(self, shape: tuple[object, ...], job: JobRequest, site: SiteSnapshot) -> _Fit:
        """The fit of ``job`` (of ``shape``) at ``site``."""
        key = (shape, site.name)
        app = site.apps.get(job.app)
        entry = self._fits.get(key)
        if entry is not None and entry[0] is app and entry[1] is site.locations:
            return entry[2]
        if len(self._fits) >= self.max_entries:
            self._fits.clear()
        fit = _fit(job, site)
        self._fits[key] = (app, site.locations, fit)
        return fit


class _Batch:
    """State shared by the jobs of one batch: per-site loads, eligibility, the cursor."""

    def __init__(self, snapshot: Snapshot, cache: EligibilityCache | None) -> None:
        self.snapshot = snapshot
        self.loads = {site.name: SiteLoad(site) for site in snapshot.sites}
        self.cache = cache if cache is not None else EligibilityCache()
        self.context = PolicyContext(snapshot, snapshot.round_robin_cursor)

    def decide(self, job: JobRequest, policy_name: str, avoid: Mapping[str, str]) -> Decision:
        snapshot = self.snapshot
        sites, unknown = job_sites(job, snapshot)
        estimates: list[SiteEstimate | None] = [
            SiteEstimate(name, SiteStatus.INELIGIBLE, "unknown", tuple(reasons))
            for name, reasons in unknown.items()
        ]
        candidates: list[Candidate] = []
        slots: list[int] = []
        fits: list[_Fit] = []
        penalty = snapshot.options.degraded_penalty
        shape = (shape_key(job), tuple(job.input_bytes), tuple(job.output_bytes))
        cache = self.cache
        size = job.total_input_bytes
        for site in sites:
            fit = cache.fit(shape, job, site)
            load = self.loads[site.name]
            health = load.health
            if fit.reasons:
                estimates.append(SiteEstimate(site.name, SiteStatus.INELIGIBLE, health, fit.reasons))
                continue
            if not load.accepts_work or site.name in avoid:
                reasons = (avoid[site.name],) if site.name in avoid else (site.health.describe(),)
                estimates.append(
                    SiteEstimate(site.name, SiteStatus.UNAVAILABLE, health, reasons, load.backlog)
                )
                continue
            predicted = predict_finish(load, job, fit.in_locations, fit.out_locations, penalty, size)
            unavailable: tuple[str, ...] = ()
            if site.max_backlog is not None and load.backlog >= site.max_backlog:
                unavailable = (f"backlog cap reached ({load.backlog} of {site.max_backlog} jobs)",)
            elif predicted.wait_s == INFINITE:
                unavailable = (NO_CAPACITY,)
            if unavailable:
                estimates.append(
                    _estimate(site.name, SiteStatus.UNAVAILABLE, health, unavailable, load, predicted)
                )
            else:  # built once the policy has chosen
                candidates.append(Candidate(load, predicted))
                slots.append(len(estimates))
                fits.append(fit)
                estimates.append(None)
        now = snapshot.now
        if not candidates:
            every = [e for e in estimates if e is not None]
            eligible = [e for e in every if e.status is not SiteStatus.INELIGIBLE]
            outcome = Outcome.DEFERRED if eligible else Outcome.REFUSED
            lead = "no eligible site takes work now" if eligible else "no site can run this job"
            detail = "; ".join(f"{e.site}: {', '.join(e.reasons)}" for e in (eligible or every))
            reason = f"{lead}: {detail}" if detail else f"{lead}: the snapshot has no sites"
            return Decision(job.key, policy_name, outcome, None, reason, now, tuple(every))
        choice = get_policy(policy_name)(job, candidates, self.context)
        for i, (candidate, position) in enumerate(zip(candidates, slots, strict=True)):
            status = SiteStatus.CHOSEN if i == choice.index else SiteStatus.CANDIDATE
            site = candidate.load.site
            estimates[position] = _estimate(
                site.name, status, candidate.load.health, (), candidate.load, candidate.estimate
            )
        chosen = candidates[choice.index]
        chosen.load.add(job, chosen.estimate.run_s, fits[choice.index].in_locations)
        return Decision(
            job.key,
            policy_name,
            Outcome.PLACED,
            chosen.name,
            choice.reason,
            now,
            tuple(e for e in estimates if e is not None),
            choice.explored,
        )


def _estimate(
    name: str,
    status: SiteStatus,
    health: str,
    reasons: tuple[str, ...],
    load: SiteLoad,
    predicted: FinishEstimate,
) -> SiteEstimate:
    finite = predicted.wait_s != INFINITE
    return SiteEstimate(
        name,
        status,
        health,
        reasons,
        load.backlog,
        predicted.stage_in_s,
        predicted.wait_s if finite else None,
        predicted.wait_basis,
        predicted.run_s,
        predicted.run_basis,
        predicted.stage_out_s,
        predicted.finish_s if finite else None,
        predicted.finish_p95_s if finite else None,
        predicted.penalty,
    )


def place_batch(
    jobs: Sequence[JobRequest],
    snapshot: Snapshot,
    policy: str = DEFAULT_POLICY,
    *,
    avoid: Mapping[JobKey, Mapping[str, str]] | None = None,
    cache: EligibilityCache | None = None,
) -> BatchResult:
    """Place ``jobs`` together on ``snapshot``'s sites; each job's own ``policy`` wins over ``policy``.

    ``avoid`` names, per job, sites it must not go to and why (the site it is leaving, the site its
    original runs on when hedging). ``cache`` keeps eligibility checks across calls (see
    :class:`EligibilityCache`). Decisions come back in the order of ``jobs``.
    """
    get_policy(policy)
    for job in jobs:
        if job.policy is not None:
            get_policy(job.policy)
    batch = _Batch(snapshot, cache)
    avoid = avoid or {}
    order = sorted(range(len(jobs)), key=lambda i: -jobs[i].priority)
    decisions: list[Decision | None] = [None] * len(jobs)
    for i in order:
        job = jobs[i]
        decisions[i] = batch.decide(job, job.policy or policy, avoid.get(job.key, {}))
    return BatchResult(tuple(d for d in decisions if d is not None), batch.context.cursor)


def place(job: JobRequest, snapshot: Snapshot, policy: str = DEFAULT_POLICY) -> Decision:
    """Place one job (see :func:`place_batch`)."""
    return place_batch([job], snapshot, policy).decisions[0]


@dataclass(frozen=True, slots=True)
class PlacedJob:
    """A job bound to a site and not finished, as re-placement and hedging see it.

    ``claimed``: a launcher acquired it or a transfer for it started — it then follows the normal
    expiry path and is never moved. ``finish_p95_s`` is the chosen site's ``finish_p95_s`` from its
    decision; ``hedged``: it already has a copy.
    """

    job: JobRequest
    site: str
    placed_at: float
    finish_p95_s: float | None = None
    claimed: bool = False
    hedged: bool = False


def jobs_to_replace(placed: Iterable[PlacedJob], snapshot: Snapshot) -> list[PlacedJob]:
    """The unclaimed jobs whose site is down, draining, or gone from the snapshot."""
    moving = []
    for item in placed:
        site = snapshot.by_name.get(item.site)
        if not item.claimed and (site is None or not site.health.accepts_work):
            moving.append(item)
    return moving


def replace(
    placed: Iterable[PlacedJob],
    snapshot: Snapshot,
    policy: str = DEFAULT_POLICY,
    *,
    cache: EligibilityCache | None = None,
) -> BatchResult:
    """Re-place the jobs :func:`jobs_to_replace` picks, never back onto the site they leave.

    A job with nowhere to go comes back ``deferred`` and stays where it is until the next cycle.
    """
    moving = jobs_to_replace(placed, snapshot)
    avoid = {item.job.key: {item.site: f"the job is leaving {item.site!r}"} for item in moving}
    return place_batch([item.job for item in moving], snapshot, policy, avoid=avoid, cache=cache)
