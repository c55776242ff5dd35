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
    """The decisions of a batch, in the order the jobs were given, and the next round-robin cursor;
    ``groups``: for each job, the index of the first job of the group it was placed with (itself when
    placed alone), so a caller can record the group's survey once."""

    decisions: tuple[Decision, ...]
    round_robin_cursor: int
    groups: tuple[int, ...] = ()

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

    def survey(self, job: JobRequest, avoid: Mapping[str, str]) -> _Survey:
        """Every site's part in placing ``job`` now: the fixed estimates (ineligible, unavailable) in
        their places, and the candidates with their predictions."""
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
        weight = snapshot.options.marginal_weight
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
            predicted = predict_finish(load, job, fit.in_locations, fit.out_locations, penalty, size, weight)
            unavailable = _unavailable(load, predicted)
            if unavailable:
                estimates.append(
                    _estimate(site.name, SiteStatus.UNAVAILABLE, health, unavailable, load, predicted)
                )
            else:  # built once the policy has chosen
                candidates.append(Candidate(load, predicted))
                slots.append(len(estimates))
                fits.append(fit)
                estimates.append(None)
        return _Survey(estimates, candidates, slots, fits, size)

    def unplaced(self, job: JobRequest, policy_name: str, estimates: list[SiteEstimate | None]) -> Decision:
        """The decision for a job no site takes now (deferred) or ever (refused)."""
        every = [e for e in estimates if e is not None]
        eligible = [e for e in every if e.status is not SiteStatus.INELIGIBLE]
        outcome = Outcome.DEFERRED if eligible else Outcome.REFUSED
        lead = "no eligible site takes work now" if eligible else "no site can run this job"
        detail = "; ".join(f"{e.site}: {', '.join(e.reasons)}" for e in (eligible or every))
        reason = f"{lead}: {detail}" if detail else f"{lead}: the snapshot has no sites"
        return Decision(job.key, policy_name, outcome, None, reason, self.snapshot.now, tuple(every))

    def decide(self, job: JobRequest, policy_name: str, avoid: Mapping[str, str]) -> Decision:
        return self.decide_group([job], policy_name, avoid)[0]

    def decide_group(
        self, jobs: Sequence[JobRequest], policy_name: str, avoid: Mapping[str, str]
    ) -> list[Decision]:
        """Decisions for jobs that are alike in everything placement looks at (app, sites, shape, sizes,
        priority, sites to avoid), one after the other, as :meth:`decide` would make them each: the sites
        are surveyed once, and after each placement only the chosen site's prediction is made again (the
        others' loads did not change), so the group fills the sites by predicted finish (water-filling)."""
        first = jobs[0]
        survey = self.survey(first, avoid)
        estimates = survey.estimates
        candidates = survey.candidates
        slots = survey.slots
        fits = survey.fits
        policy = get_policy(policy_name)
        now = self.snapshot.now
        penalty = self.snapshot.options.degraded_penalty
        weight = self.snapshot.options.marginal_weight
        shown: list[SiteEstimate | None] = [None] * len(candidates)
        """Each candidate's estimate as a non-chosen site, kept until its prediction changes."""
        out: list[Decision] = []
        for job in jobs:
            if not candidates:
                out.append(self.unplaced(job, policy_name, estimates))
                continue
            choice = policy(job, candidates, self.context)
            index = choice.index
            row = list(estimates)
            for i, (candidate, position) in enumerate(zip(candidates, slots, strict=True)):
                load = candidate.load
                if i == index:
                    row[position] = _estimate(
                        load.site.name, SiteStatus.CHOSEN, load.health, (), load, candidate.estimate
                    )
                else:
                    seen = shown[i]
                    if seen is None:
                        seen = shown[i] = _estimate(
                            load.site.name, SiteStatus.CANDIDATE, load.health, (), load, candidate.estimate
                        )
                    row[position] = seen
            chosen = candidates[index]
            fit = fits[index]
            load = chosen.load
            load.add(job, chosen.estimate.run_s, fit.in_locations)
            out.append(
                Decision(
                    job.key,
                    policy_name,
                    Outcome.PLACED,
                    load.site.name,
                    choice.reason,
                    now,
                    tuple(e for e in row if e is not None),
                    choice.explored,
                )
            )
            if len(jobs) == 1:
                break
            # the chosen site's prediction for the next job of the group, with this one counted
            predicted = predict_finish(
                load, job, fit.in_locations, fit.out_locations, penalty, survey.size, weight
            )
            unavailable = _unavailable(load, predicted)
            if unavailable:
                estimates[slots[index]] = _estimate(
                    load.site.name, SiteStatus.UNAVAILABLE, load.health, unavailable, load, predicted
                )
                del candidates[index], slots[index], fits[index], shown[index]
            else:
                chosen.estimate = predicted
                shown[index] = None
        return out


@dataclass(slots=True)
class _Survey:
    estimates: list[SiteEstimate | None]
    """Fixed estimates in place; ``None`` where a candidate goes."""
    candidates: list[Candidate]
    slots: list[int]
    """Each candidate's place in ``estimates``."""
    fits: list[_Fit]
    size: float | None


def _unavailable(load: SiteLoad, predicted: FinishEstimate) -> tuple[str, ...]:
    """Why a site that takes work cannot take this job now: its backlog cap, or no capacity to come."""
    site = load.site
    if site.max_backlog is not None and load.backlog >= site.max_backlog:
        return (f"backlog cap reached ({load.backlog} of {site.max_backlog} jobs)",)
    if predicted.wait_s == INFINITE:
        return (NO_CAPACITY,)
    return ()


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
        predicted.marginal_s if finite and predicted.marginal_s else None,
    )


def place_batch(
    jobs: Sequence[JobRequest],
    snapshot: Snapshot,
    policy: str = DEFAULT_POLICY,
    *,
    avoid: Mapping[JobKey, Mapping[str, str]] | None = None,
    cache: EligibilityCache | None = None,
    grouped: bool = True,
) -> BatchResult:
    """Place ``jobs`` together on ``snapshot``'s sites; each job's own ``policy`` wins over ``policy``.

    ``avoid`` names, per job, sites it must not go to and why (the site it is leaving, the site its
    original runs on when hedging). ``cache`` keeps eligibility checks across calls (see
    :class:`EligibilityCache`). Decisions come back in the order of ``jobs``.

    Runs of alike jobs (same app, sites, policy, priority, parameter shape, sizes and sites to avoid)
    are placed as groups: the sites are surveyed once per group and each placement re-predicts only the
    site it filled. ``grouped=False`` surveys every site for every job; the decisions are the same (a
    test checks it), only slower.
    """
    get_policy(policy)
    for job in jobs:
        if job.policy is not None:
            get_policy(job.policy)
    batch = _Batch(snapshot, cache)
    avoid = avoid or {}
    sizes = size_parameters(snapshot)
    order = sorted(range(len(jobs)), key=lambda i: -jobs[i].priority)
    decisions: list[Decision | None] = [None] * len(jobs)
    groups = list(range(len(jobs)))
    if not grouped:
        for i in order:
            job = jobs[i]
            decisions[i] = batch.decide(job, job.policy or policy, avoid.get(job.key, {}))
        return BatchResult(tuple(d for d in decisions if d is not None), batch.context.cursor, tuple(groups))
    run: list[int] = []
    run_key: object = None
    for i in [*order, -1]:
        item = jobs[i] if i >= 0 else None
        key = (
            _group_key(item, item.policy or policy, avoid.get(item.key), sizes) if item is not None else None
        )
        if run and (key is None or key != run_key):
            lead = jobs[run[0]]
            made = batch.decide_group(
                [jobs[k] for k in run], lead.policy or policy, avoid.get(lead.key) or {}
            )
            for k, decision in zip(run, made, strict=True):
                decisions[k] = decision
                groups[k] = run[0]
            run = []
        run.append(i)
        run_key = key
    return BatchResult(tuple(d for d in decisions if d is not None), batch.context.cursor, tuple(groups))


def size_parameters(snapshot: Snapshot) -> tuple[str, ...]:
    """The job parameters some site's run-time model scales by (their values set a job's run time)."""
    names = {
        estimate.size_parameter
        for site in snapshot.sites
        for estimate in site.run_times.values()
        if estimate.size_parameter is not None
    }
    return tuple(sorted(names))


def _group_key(
    job: JobRequest, policy: str, avoid: Mapping[str, str] | None, sizes: tuple[str, ...] = ()
) -> tuple[object, ...]:
    """What makes jobs alike for placement: consecutive jobs (in priority order) with equal keys are
    placed as one group (:meth:`_Batch.decide_group`); ``sizes``: parameters whose values count."""
    return (
        tuple(job.parameters.get(name) for name in sizes) if sizes else (),
        policy,
        job.app,
        job.sites,
        job.priority,
        shape_key(job),
        tuple(job.input_bytes.items()),
        tuple(job.output_bytes.items()),
        tuple(avoid.items()) if avoid else (),
    )


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
