"""Predicting when a job would finish at a site: stage-in, wait for a slot, run, stage-out.

::

    finish = max(stage_in, wait) + run + stage_out        (× the degraded penalty)

    stage_in  = per location: overhead + (bytes already queued on the route + the job's bytes) / rate
                (the slowest location decides; routes move data in parallel)
    wait      = an idle slot in a running pilot            → the dispatch latency
              | else the work ahead (jobs placed here with priority ≥ the job's, in slot-seconds of
                their apps' run times plus the site's measured turnaround per job, plus half a run per
                busy slot) drained by the capacity the site
                will have: running pilots now, queued pilots when their remaining queue wait ends, and a
                new pilot after the predicted queue wait when the queued capacity does not cover the demand
              + for a site whose agent has gone quiet (it may be dead), the time until it would be
                called down and the job moved (added to its stage-in as well: nothing moves either)
    run       = the app's run time here, scaled by the job's size where the history allows (its input
                bytes, or the numeric parameter the site's run times follow)
    stage_out = per location: overhead + bytes / rate

The dispatch latency is the site's measured one (a slot's time from one job's end to the next's start
while work waits: reports, acquire, start-up) where the service has it, else the configured prior.

``fastest_finish`` ranks sites by the job's *cost*, not its finish alone::

    cost = finish + marginal
    marginal = (jobs waiting here once the job is placed: those ahead beyond the idle slots, the job
                itself included) × run / the running slots — 0 when it finds an idle slot, and when it
                waits for a pilot still to start (the backlog sizes the elastic queue's next pilot: the
                job brings capacity along instead of taking it from later jobs)

A job that joins a site's queue delays every job that comes after it there by its run time over the
site's slots; with ``q`` waiting, about ``q`` more arrive behind it while it waits (a steady queue keeps
its length), so that is the delay it imposes on others.
Picking each job's own quickest site ignores it and keeps queues at the fast, small sites — queues
that the jobs after it wait in, and that a site failure catches whole.

Data moves while the work ahead drains, hence ``max(stage_in, wait)`` rather than their sum (a site's
elastic queue counts jobs still staging in, so its pilots are requested while the data moves).

:class:`SiteLoad` holds what a batch has already sent to a site on top of the snapshot, so the 500th job
of a batch sees the 499 before it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple

from beambridge.placement.decision import WaitBasis
from beambridge.placement.estimators import QueueWaitEstimate, RunTimeEstimate, TransferEstimate
from beambridge.placement.snapshot import JobRequest, SiteSnapshot

INFINITE = math.inf


class SiteLoad:
    """A site as a batch sees it: the snapshot plus the jobs placed on it earlier in the batch."""

    __slots__ = (
        "_ahead",
        "_base_backlog",
        "_busy_residual",
        "_in_flight",
        "_queues",
        "_routes",
        "_runs",
        "accepts_work",
        "extra_by_app",
        "extra_bytes",
        "extra_jobs",
        "extra_work_s",
        "health",
        "penalised",
        "site",
    )

    def __init__(self, site: SiteSnapshot) -> None:
        self.site = site
        self.extra_jobs = 0
        self.extra_work_s = 0.0
        self.extra_bytes: dict[str, float] = {}
        self.extra_by_app: dict[str, int] = {}
        self._runs: dict[str, RunTimeEstimate] = {}
        self._queues: dict[str, QueueWaitEstimate] = {}
        self._routes: dict[str, TransferEstimate] = {}
        self._ahead: dict[int, tuple[int, float]] = {}
        self._busy_residual: float | None = None
        self._in_flight: dict[str, int] = {}
        self._base_backlog = site.backlog_jobs
        self.health = site.health.state.value
        self.accepts_work = site.health.accepts_work
        self.penalised = self.health == "degraded"

    def run_time(self, app: str) -> RunTimeEstimate:
        """The site's run-time estimate of ``app`` (cached for the batch)."""
        estimate = self._runs.get(app)
        if estimate is None:
            estimate = self._runs[app] = self.site.run_time(app)
        return estimate

    def queue_wait(self, queue: str) -> QueueWaitEstimate:
        """The site's queue-wait estimate of ``queue`` (cached for the batch)."""
        estimate = self._queues.get(queue)
        if estimate is None:
            estimate = self._queues[queue] = self.site.queue_wait(queue)
        return estimate

    def transfer(self, location: str) -> TransferEstimate:
        """The site's transfer estimate of the route to ``location`` (cached for the batch)."""
        estimate = self._routes.get(location)
        if estimate is None:
            estimate = self._routes[location] = self.site.transfer(location)
        return estimate

    @property
    def backlog(self) -> int:
        """Jobs waiting here, counting the batch's."""
        return self._base_backlog + self.extra_jobs

    def in_flight(self, app: str) -> int:
        """Jobs of ``app`` placed here and not finished (running, waiting, or placed by this batch)."""
        known = self._in_flight.get(app)
        if known is None:  # the snapshot's part, counted once per batch (every job of a group asks)
            waiting = sum(g.jobs for g in self.site.backlog if g.app == app)
            known = self._in_flight[app] = waiting + self.site.running.get(app, 0)
        return known + self.extra_by_app.get(app, 0)

    def ahead(self, priority: int) -> tuple[int, float]:
        """Jobs and slot-seconds of work that run before a job of ``priority`` (the snapshot's part)."""
        cached = self._ahead.get(priority)
        if cached is None:
            jobs = 0
            work = 0.0
            turnaround = self.site.turnaround_s
            for group in self.site.backlog:
                if group.priority >= priority:
                    jobs += group.jobs
                    work += group.jobs * (self.run_time(group.app).median_s + turnaround)
            cached = self._ahead[priority] = (jobs, work)
        return cached

    def busy_residual_s(self, fallback_run_s: float) -> float:
        """Slot-seconds the busy slots still need: half a typical run each."""
        if self._busy_residual is None:
            site = self.site
            busy = site.running_slots - site.free_slots
            known = sum(site.running.values())
            if busy <= 0:
                self._busy_residual = 0.0
            elif known:
                mean = sum(n * self.run_time(app).median_s for app, n in site.running.items()) / known
                self._busy_residual = 0.5 * busy * mean
            else:
                return 0.5 * busy * fallback_run_s
        return self._busy_residual

    def add(self, job: JobRequest, run_s: float, in_locations: tuple[str, ...]) -> None:
        """Count ``job`` (predicted to run ``run_s``) as placed here."""
        self.extra_jobs += 1
        self.extra_work_s += run_s + self.site.turnaround_s
        self.extra_by_app[job.app] = self.extra_by_app.get(job.app, 0) + 1
        for location in in_locations:
            nbytes = job.input_bytes.get(location, 0.0)
            if nbytes:
                self.extra_bytes[location] = self.extra_bytes.get(location, 0.0) + nbytes


class FinishEstimate(NamedTuple):
    """The parts of one prediction (seconds from now); ``wait_s`` is infinite when no capacity will come."""

    stage_in_s: float
    wait_s: float
    wait_p95_s: float
    wait_basis: WaitBasis | None
    run_s: float
    run_p95_s: float
    run_basis: str
    stage_out_s: float
    penalty: float
    finish_s: float
    """Predicted seconds until the job finishes."""
    finish_p95_s: float
    """A 95th-percentile finish: the slow run and the slow queue."""
    marginal_s: float = 0.0
    """The delay placing the job here imposes on the jobs after it (see the module doc)."""

    @property
    def cost_s(self) -> float:
        """What ``fastest_finish`` minimises: the finish plus the delay imposed on later jobs."""
        return self.finish_s + self.marginal_s


def stage_seconds(
    load: SiteLoad, locations: tuple[str, ...], sizes: Mapping[str, float], queued: bool
) -> float:
    """Time to move the job's bytes for ``locations`` (the slowest route decides); ``queued`` counts the
    bytes already waiting on each route ahead of the job."""
    site = load.site
    worst = 0.0
    for location in locations:
        route = load.transfer(location)
        moving = sizes.get(location, 0.0)
        if queued:
            moving += site.pending_transfer_bytes.get(location, 0.0) + load.extra_bytes.get(location, 0.0)
        seconds = route.overhead_s + moving / route.rate_bps
        if seconds > worst:
            worst = seconds
    return worst


def wait_for_slot(load: SiteLoad, job: JobRequest, run_s: float) -> tuple[float, float, WaitBasis | None]:
    """``(wait, wait_p95, basis)`` until a slot takes the job once it is runnable (see the module doc)."""
    site = load.site
    jobs, work = load.ahead(job.priority)
    jobs += load.extra_jobs
    work += load.extra_work_s
    dispatch = site.dispatch_s if site.dispatch_s is not None else site.priors.dispatch_s
    if jobs < site.free_slots:
        return dispatch, dispatch, WaitBasis.FREE_SLOT
    need = work + load.busy_residual_s(run_s)
    if not site.queued_pilots and (site.new_pilot_slots == 0 or jobs < site.running_slots):
        if site.running_slots <= 0:
            return INFINITE, INFINITE, None
        wait = need / site.running_slots + dispatch
        return wait, wait, WaitBasis.BACKLOG
    # capacity segments: (start time, slots added)
    segments: list[tuple[float, int, WaitBasis]] = []
    queued_slots = 0
    for pilot in site.queued_pilots:
        estimate = load.queue_wait(pilot.queue)
        segments.append((estimate.remaining(pilot.age_s), pilot.slots, WaitBasis.QUEUED_PILOT))
        queued_slots += pilot.slots
    new_queue = load.queue_wait(site.new_pilot_queue)
    if site.new_pilot_slots > 0 and jobs + 1 > site.running_slots + queued_slots:
        segments.append((new_queue.median_s, site.new_pilot_slots, WaitBasis.NEW_PILOT))
    segments.sort()
    now_t = 0.0
    capacity = site.running_slots
    basis = WaitBasis.BACKLOG
    for start, slots, kind in segments:
        if capacity > 0 and need <= capacity * (start - now_t):
            break
        need -= capacity * (start - now_t)
        now_t = start
        capacity += slots
        basis = kind
    if capacity <= 0:
        return INFINITE, INFINITE, None
    wait = now_t + max(need, 0.0) / capacity + dispatch
    # a pilot's start is the uncertain part: its queue's spread from median to p95
    gap = max(new_queue.p95_s - new_queue.median_s, 0.0) if basis is not WaitBasis.BACKLOG else 0.0
    return wait, wait + gap, basis


def predict_finish(
    load: SiteLoad,
    job: JobRequest,
    in_locations: tuple[str, ...],
    out_locations: tuple[str, ...],
    degraded_penalty: float,
    size: float | None,
    marginal_weight: float = 0.0,
) -> FinishEstimate:
    """The finish-time prediction of ``job`` (``size`` bytes of input, ``None``: unknown) at ``load.site``,
    given what the batch already sent there; ``marginal_weight`` > 0 also prices the delay it imposes
    on later jobs there (:func:`marginal_delay`)."""
    estimate = load.run_time(job.app)
    if estimate.size_parameter is not None:
        size = estimate.job_size(job.parameters, size)
    run_s = estimate.predict(size)
    if estimate.source == "prior":
        run_basis = "prior"
    else:
        run_basis = "history_scaled" if size is not None and estimate.scales_with_size else "history"
    stage_in = stage_seconds(load, in_locations, job.input_bytes, queued=True) if in_locations else 0.0
    stage_out = stage_seconds(load, out_locations, job.output_bytes, queued=False) if out_locations else 0.0
    wait, wait_p95, basis = wait_for_slot(load, job, run_s)
    silent = load.site.silent_s
    if silent:  # the agent has gone quiet: if it is dead, nothing starts until the site is called down
        wait += silent
        wait_p95 += silent
        if stage_in:
            stage_in += silent
    penalty = degraded_penalty if load.penalised else 1.0
    run_p95 = run_s * estimate.spread
    marginal = marginal_delay(load, job, run_s * penalty, marginal_weight, basis)
    return FinishEstimate(
        stage_in,
        wait,
        wait_p95,
        basis,
        run_s,
        run_p95,
        run_basis,
        stage_out,
        penalty,
        ((stage_in if stage_in > wait else wait) + run_s + stage_out) * penalty,
        ((stage_in if stage_in > wait_p95 else wait_p95) + run_p95 + stage_out) * penalty,
        marginal,
    )


def marginal_delay(
    load: SiteLoad, job: JobRequest, run_s: float, weight: float, basis: WaitBasis | None
) -> float:
    """The delay placing ``job`` (running ``run_s``) at ``load.site`` imposes on the jobs after it:
    ``weight`` × (jobs beyond the idle slots once it is placed, itself included) × ``run_s`` / the
    running slots. Zero when the job finds an idle slot, and when it waits for a pilot still to start
    (``basis``: a queued or new pilot): there the backlog is what sizes the elastic queue's next pilot, so
    the job brings capacity along rather than taking it from the jobs after it."""
    if weight <= 0 or basis is not WaitBasis.BACKLOG:
        return 0.0
    site = load.site
    jobs = load.ahead(job.priority)[0] + load.extra_jobs
    queued = jobs + 1 - site.free_slots
    if queued <= 0 or site.running_slots <= 0:
        return 0.0
    return weight * queued * run_s / site.running_slots
