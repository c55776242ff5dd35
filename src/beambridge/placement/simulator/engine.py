"""The discrete-event simulator: modelled sites, an arrival trace, and the very placement code the service runs.

Each placement cycle builds a :class:`~beambridge.placement.snapshot.Snapshot` of the modelled sites —
the figures coming from the same estimators over the samples the simulation recorded — and calls
:func:`~beambridge.placement.placer.place_batch`; each health cycle calls
:func:`~beambridge.placement.health.site_health`, :func:`~beambridge.placement.placer.replace` and
:func:`~beambridge.placement.hedging.hedges`. Nothing about placement is re-implemented here.

A modelled site: pilots of fixed slot counts requested by an elastic queue (the service's rule: ask
when the backlog exceeds the slots of queued and running pilots), log-normal queue waits, a wall time
and an idle timeout; per-app log-normal run times scaled by input size; per-location transfer routes
that batch jobs into tasks with a per-task overhead and a log-normal rate, a few tasks at a time; and
outages (the whole site, its scheduler, or its transfers) and owner drains. A site that dies loses its
pilots: its running jobs come back runnable after the session timeout (the service's expiry path),
and its unclaimed jobs are re-placed once its health says ``down``.

Randomness: each job draws its run-time noise once (the same job is as slow, relative to the median,
wherever it runs) and each site has its own generator, so two policies replay the same trace.
"""

from __future__ import annotations

import gc
import heapq
import math
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from beambridge.placement.decision import Outcome
from beambridge.placement.estimators import (
    QueueWaitEstimate,
    QueueWaitSample,
    RunSample,
    RunTimeEstimate,
    TransferEstimate,
    TransferSample,
    estimate_queue_wait,
    estimate_run_time,
    estimate_transfer,
    failure_rate,
)
from beambridge.placement.health import HealthSignals, SiteHealth, site_health
from beambridge.placement.hedging import hedges
from beambridge.placement.placer import EligibilityCache, PlacedJob, place_batch, replace
from beambridge.placement.simulator.scenario import RouteModel, Scenario, SiteModel
from beambridge.placement.snapshot import (
    AppSpec,
    BacklogGroup,
    JobRequest,
    QueuedPilot,
    SitePriors,
    SiteSnapshot,
    Snapshot,
)
from beambridge.schemas.apps import TransferDirection, TransferSlot

MB = 1e6
SAMPLES_KEPT = 200
SLOTS = {
    "input": TransferSlot(direction=TransferDirection.IN, local_path="input", required=False),
    "output": TransferSlot(direction=TransferDirection.OUT, local_path="output", required=False),
}

# job phases
UNPLACED, QUEUED_IN, STAGING_IN, RUNNABLE, RUNNING, LOST, QUEUED_OUT, STAGING_OUT, DONE = range(9)
WAITING = (QUEUED_IN, STAGING_IN, RUNNABLE, LOST)
"""Phases that count in a site's backlog."""
UNCLAIMED = (QUEUED_IN, RUNNABLE)
"""Placed, not acquired, no transfer started: may be re-placed."""


class SimJob:
    """One job (or a hedge copy of one) in the simulation."""

    __slots__ = (
        "arrival",
        "copy",
        "epoch",
        "finished_at",
        "group",
        "in_bytes",
        "noise",
        "out_bytes",
        "p95",
        "phase",
        "placed_at",
        "replaced",
        "request",
        "site",
        "source",
    )

    def __init__(self, request: JobRequest, arrival: float, source: str, noise: float, group: Group) -> None:
        self.request = request
        self.arrival = arrival
        self.source = source
        self.in_bytes = request.input_bytes.get(source, 0.0)
        self.out_bytes = request.output_bytes.get(source, 0.0)
        self.noise = noise
        self.group = group
        self.site: SimSite | None = None
        self.phase = UNPLACED
        self.epoch = 0
        self.placed_at = 0.0
        self.p95: float | None = None
        self.finished_at: float | None = None
        self.replaced = 0
        self.copy: SimJob | None = None


@dataclass(slots=True)
class Group:
    """A job and its hedge copy: the first to finish wins."""

    finished_at: float | None = None
    site: str | None = None
    members: list[SimJob] = field(default_factory=list)


@dataclass(slots=True)
class Pilot:
    """A pilot job at a modelled site."""

    slots: int
    submitted: float
    started: float | None = None
    state: str = "queued"  # queued | running | ended


@dataclass(slots=True)
class Task:
    """A transfer task: several jobs' files moved together."""

    jobs: list[tuple[SimJob, int]]
    incarnation: int
    started: float
    nbytes: float


class Route:
    """Transfers in one direction between a location and a site."""

    __slots__ = ("active", "direction", "location", "model", "queue", "tasks")

    def __init__(self, location: str, model: RouteModel, direction: TransferDirection) -> None:
        self.location = location
        self.model = model
        self.direction = direction
        self.queue: deque[tuple[SimJob, int]] = deque()
        self.active = 0
        self.tasks: set[int] = set()


class SimSite:
    """A modelled facility's state."""

    def __init__(self, model: SiteModel, seed: int, apps: dict[str, AppSpec]) -> None:
        self.model = model
        self.name = model.name
        self.rng = random.Random(seed)
        self.apps = {name: apps[name] for name in model.apps}
        self.locations = frozenset(model.routes)
        self.priors = SitePriors(
            run_time_s={name: app.prior_s or app.median_s for name, app in model.apps.items()},
            queue_wait_s=model.queue_wait.median_s,
            transfer_rate_bps=min(r.rate_mbps for r in model.routes.values()) * MB,
            transfer_overhead_s=min(r.overhead_in_s for r in model.routes.values()),
            dispatch_s=model.dispatch_s,
        )
        self.pilots: list[Pilot] = []
        self.running_slots = 0
        self.free_slots = 0
        self.retiring = 0
        self.runnable: list[tuple[int, int, SimJob, int]] = []
        self.running_jobs: dict[SimJob, int] = {}
        self.routes_in = {loc: Route(loc, r, TransferDirection.IN) for loc, r in model.routes.items()}
        self.routes_out = {loc: Route(loc, r, TransferDirection.OUT) for loc, r in model.routes.items()}
        self.backlog: dict[tuple[str, int], int] = {}
        self.running: dict[str, int] = {}
        self.pending_bytes: dict[str, float] = dict.fromkeys(model.routes, 0.0)
        self.run_samples: dict[str, deque[RunSample]] = {a: deque(maxlen=SAMPLES_KEPT) for a in model.apps}
        self.wait_samples: deque[QueueWaitSample] = deque(maxlen=SAMPLES_KEPT)
        self.transfer_samples: dict[str, deque[TransferSample]] = {
            loc: deque(maxlen=SAMPLES_KEPT) for loc in model.routes
        }
        self.health = SiteHealth()
        self.alive = True
        self.dead_since = 0.0
        self.incarnation = 0
        self.outages: set[str] = set()
        self.drained = False
        self.scheduler_failures = 0
        self.idle_since: float | None = 0.0
        self.run_estimates: dict[str, RunTimeEstimate] = {}
        self.queue_estimates: dict[str, QueueWaitEstimate] = {}
        self.transfer_estimates: dict[str, TransferEstimate] = {}
        self.reported = (0, 0)
        self.finishes: list[float] = []

    def waiting(self) -> int:
        """Jobs placed here and not yet running."""
        return sum(self.backlog.values())


@dataclass(frozen=True, slots=True)
class SimulationResult:
    """What one policy did on one scenario."""

    scenario: str
    policy: str
    jobs: int
    finished: int
    stranded: int
    replaced: int
    """Re-placements (a job moved off a down or draining site; one job may move more than once)."""
    hedged: int
    hedge_wins: int
    explored: int
    latency_median_s: float
    latency_p95_s: float
    jobs_per_min: float
    site_jobs: dict[str, int]
    site_jobs_per_min: dict[str, float]
    span_s: float
    """From the first arrival to the last finish."""
    decisions: int
    decision_s: float
    """Time spent inside the placement code (all calls)."""
    wall_s: float
    finish_times: dict[str, list[float]]
    """Per site, when each job finished (for the plot)."""

    @property
    def decision_us_per_job(self) -> float:
        """Mean cost of one decision, in microseconds."""
        return 1e6 * self.decision_s / max(self.decisions, 1)


def _lognormal(rng: random.Random, median: float, sigma: float) -> float:
    return median * math.exp(sigma * rng.gauss(0.0, 1.0)) if sigma > 0 else median


def _rate_sampler(model: RouteModel) -> tuple[float, float]:
    """Median and sigma of a log-normal with the route's mean and standard deviation."""
    cv2 = (model.rate_sd_mbps / model.rate_mbps) ** 2
    sigma = math.sqrt(math.log1p(cv2))
    return model.rate_mbps * MB / math.sqrt(1 + cv2), sigma


class Simulation:
    """One policy on one scenario. ``run()`` returns the :class:`SimulationResult`."""

    def __init__(
        self,
        scenario: Scenario,
        policy: str,
        *,
        progress: Callable[[float], None] | None = None,
    ) -> None:
        self.scenario = scenario
        self.policy = policy
        self.progress = progress
        apps = {a.app: AppSpec(a.app, transfer_slots=SLOTS) for a in scenario.arrivals}
        for model in scenario.sites:
            for name in model.apps:
                apps.setdefault(name, AppSpec(name, transfer_slots=SLOTS))
        self.sites = [SimSite(m, scenario.seed * 1000 + i + 1, apps) for i, m in enumerate(scenario.sites)]
        self.by_name = {s.name: s for s in self.sites}
        self.thresholds = scenario.health.thresholds()
        self.options = scenario.options()
        self.events: list[tuple[float, int, Callable[..., None], tuple[object, ...]]] = []
        self.seq = 0
        self.now = 0.0
        collecting = gc.isenabled()
        gc.disable()
        try:
            self.jobs = self._trace()
        finally:
            if collecting:
                gc.enable()
        self.next_arrival = 0
        self.deferred: list[SimJob] = []
        self.cursor = 0
        self.decisions = 0
        self.decision_s = 0.0
        self.replaced = 0
        self.hedged = 0
        self.explored = 0
        self.finished = 0
        self.cache = EligibilityCache()
        self.hedge_watch: dict[SimJob, None] = {}
        """Hedge-flagged originals not finished and without a copy, in placement order."""

    # ----------------------------------------------------------------- trace
    def _trace(self) -> list[SimJob]:
        """The arrival trace, from the scenario's seed alone (the same for every policy)."""
        rng = np.random.default_rng(self.scenario.seed)
        streams = []
        for index, stream in enumerate(self.scenario.arrivals):
            span = stream.until_s - stream.start_s
            if stream.every_s is not None:
                ticks = np.arange(stream.start_s, stream.until_s, stream.every_s)
                times = np.repeat(ticks, stream.count)
            else:
                assert stream.rate_per_s is not None
                expected = stream.rate_per_s * span
                gaps = rng.exponential(1 / stream.rate_per_s, int(expected + 10 * np.sqrt(expected) + 10))
                times = stream.start_s + np.cumsum(gaps)
                times = times[times < stream.until_s]
            n = len(times)
            sizes = stream.input_mb * MB * np.exp(stream.input_sigma * rng.standard_normal(n))
            streams.append((times, np.full(n, index), sizes, rng.standard_normal(n), rng.random(n)))
        times = np.concatenate([s[0] for s in streams])
        order = np.argsort(times, kind="stable")
        columns = [np.concatenate([s[i] for s in streams])[order] for i in range(1, 5)]
        jobs = []
        for key, (t, index, size, noise, draw) in enumerate(
            zip(times[order].tolist(), *(c.tolist() for c in columns), strict=True)
        ):
            stream = self.scenario.arrivals[index]
            request = JobRequest(
                key,
                stream.app,
                tuple(stream.sites),
                transfers={"input": stream.source, "output": stream.source},
                input_bytes={stream.source: size} if size > 0 else {},
                output_bytes={stream.source: stream.output_mb * MB} if stream.output_mb > 0 else {},
                priority=stream.priority,
                hedge=draw < stream.hedge_share,
            )
            job = SimJob(request, t, stream.source, noise, Group())
            job.group.members.append(job)
            jobs.append(job)
        return jobs

    # ----------------------------------------------------------------- events
    def at(self, when: float, handler: Callable[..., None], *args: object) -> None:
        """Schedule ``handler(*args)`` at simulated time ``when``."""
        self.seq += 1
        heapq.heappush(self.events, (when, self.seq, handler, args))

    def run(self) -> SimulationResult:
        """Simulate until every job finished or the horizon passed."""
        collecting = gc.isenabled()
        gc.disable()  # a few hundred thousand long-lived objects: full collections would dominate
        try:
            return self._run()
        finally:
            if collecting:
                gc.enable()

    def _run(self) -> SimulationResult:
        started = time.perf_counter()
        scenario = self.scenario
        for site in self.sites:
            for _ in range(site.model.start_pilots):
                pilot = Pilot(site.model.slots_per_pilot, 0.0)
                site.pilots.append(pilot)
                self._pilot_start(site, pilot, site.incarnation)
            self.at(self.sites.index(site) * 0.37 % scenario.elastic_period_s, self._elastic, site)
        for outage in scenario.outages:
            self.at(outage.start_s, self._outage, self.by_name[outage.site], outage.kind, True)
            self.at(outage.end_s, self._outage, self.by_name[outage.site], outage.kind, False)
        for drain in scenario.drains:
            self.at(drain.start_s, self._drain, self.by_name[drain.site], True)
            self.at(drain.end_s, self._drain, self.by_name[drain.site], False)
        self._refresh_estimates()
        self.at(scenario.estimate_period_s, self._estimate_tick)
        self.at(0.0, self._health_tick)
        if self.jobs:
            self.at(self.jobs[0].arrival, self._place_tick)
        total = len(self.jobs)
        done = 0
        horizon = scenario.horizon_s
        report_every = max(total // 200, 1)
        while self.events:
            when, _, handler, args = heapq.heappop(self.events)
            if when > horizon:
                break
            self.now = when
            handler(*args)
            finished = self.finished
            if finished != done:
                done = finished
                if self.progress is not None and (done % report_every == 0 or done == total):
                    self.progress(done / total)
                if done == total:
                    break
        return self._result(time.perf_counter() - started)

    # ----------------------------------------------------------------- placement
    def _snapshot(self) -> Snapshot:
        sites = []
        now = self.now
        for site in self.sites:
            queued = tuple(
                QueuedPilot(p.slots, now - p.submitted) for p in site.pilots if p.state == "queued"
            )
            # a dead site's agent submits nothing; until it is called down the service sees its last report
            new_slots = (
                site.model.slots_per_pilot if site.alive and len(site.pilots) < site.model.max_pilots else 0
            )
            running, free = (site.running_slots, site.free_slots) if site.alive else site.reported
            sites.append(
                SiteSnapshot(
                    site.name,
                    site.apps,
                    site.locations,
                    site.health,
                    running,
                    free,
                    queued if site.alive else (),
                    new_slots,
                    "default",
                    tuple(BacklogGroup(app, prio, n) for (app, prio), n in site.backlog.items() if n),
                    site.running,
                    site.model.max_backlog,
                    site.run_estimates,
                    site.queue_estimates,
                    site.transfer_estimates,
                    site.pending_bytes,
                    site.priors,
                )
            )
        return Snapshot(now, tuple(sites), self.scenario.seed, self.cursor, self.options)

    def _place(self, jobs: list[SimJob], *, moving: bool = False) -> list[SimJob]:
        """Place (or re-place) ``jobs``; returns the ones deferred."""
        if not jobs:
            return []
        snapshot = self._snapshot()
        started = time.perf_counter()
        if moving:
            placed = [PlacedJob(j.request, j.site.name if j.site else "", j.placed_at) for j in jobs]
            result = replace(placed, snapshot, self.policy, cache=self.cache)
        else:
            result = place_batch([j.request for j in jobs], snapshot, self.policy, cache=self.cache)
        self.decision_s += time.perf_counter() - started
        self.decisions += len(result.decisions)
        self.cursor = result.round_robin_cursor
        deferred = []
        for job, decision in zip(jobs, result.decisions, strict=True):
            if decision.outcome is not Outcome.PLACED or decision.site is None:
                if decision.outcome is Outcome.REFUSED:
                    raise ValueError(f"job {job.request.key} can run nowhere: {decision.reason}")
                deferred.append(job)
                continue
            if moving and job.site is not None:
                self._release(job)
                job.replaced += 1
                self.replaced += 1
            self.explored += decision.explored
            chosen = decision.chosen
            job.p95 = chosen.finish_p95_s if chosen is not None else None
            self._accept(self.by_name[decision.site], job)
            if job.request.hedge and job.copy is None:
                self.hedge_watch[job] = None
        return deferred

    def _place_tick(self) -> None:
        arrived = []
        while self.next_arrival < len(self.jobs) and self.jobs[self.next_arrival].arrival <= self.now:
            arrived.append(self.jobs[self.next_arrival])
            self.next_arrival += 1
        retry, rest = self._deferred_prefix()
        still = self._place(retry + arrived)
        # oldest first: the retried jobs still deferred, those not tried, then the new arrivals deferred
        tried = set(map(id, retry))
        self.deferred = [j for j in still if id(j) in tried] + rest + [j for j in still if id(j) not in tried]
        period = self.scenario.placement_period_s
        if self.deferred:
            self.at(self.now + period, self._place_tick)
        elif self.next_arrival < len(self.jobs):
            upcoming = self.jobs[self.next_arrival].arrival
            self.at(max(self.now + period, upcoming), self._place_tick)

    def _deferred_prefix(self) -> tuple[list[SimJob], list[SimJob]]:
        """The deferred jobs worth trying this cycle: as many as the sites have room for (a service
        asks its queue for no more), oldest first."""
        room = 0
        for site in self.sites:
            if not site.health.accepts_work:
                continue
            cap = site.model.max_backlog
            if cap is None:
                return self.deferred, []
            room += max(cap - site.waiting(), 0)
        return self.deferred[:room], self.deferred[room:]

    def _accept(self, site: SimSite, job: SimJob) -> None:
        job.site = site
        job.placed_at = self.now
        job.epoch += 1
        key = (job.request.app, job.request.priority)
        site.backlog[key] = site.backlog.get(key, 0) + 1
        if job.in_bytes > 0:
            job.phase = QUEUED_IN
            site.pending_bytes[job.source] += job.in_bytes
            route = site.routes_in[job.source]
            route.queue.append((job, job.epoch))
            self._kick(site, route)
        else:
            self._make_runnable(site, job)

    def _release(self, job: SimJob) -> None:
        """Take ``job`` off its site (re-placed, or its twin won)."""
        site = job.site
        assert site is not None
        phase = job.phase
        if phase in WAITING:
            key = (job.request.app, job.request.priority)
            site.backlog[key] -= 1
            if phase in (QUEUED_IN, STAGING_IN):
                site.pending_bytes[job.source] -= job.in_bytes
        elif phase == RUNNING:
            site.running_jobs.pop(job, None)
            site.running[job.request.app] -= 1
            self._free_slot(site)
        job.epoch += 1

    # ----------------------------------------------------------------- transfers
    def _kick(self, site: SimSite, route: Route) -> None:
        if not site.alive:
            return
        model = route.model
        while route.active < model.max_tasks and route.queue:
            batch: list[tuple[SimJob, int]] = []
            nbytes = 0.0
            while route.queue and len(batch) < model.files_per_task:
                job, epoch = route.queue.popleft()
                if job.epoch != epoch or job.site is not site or job.group.finished_at is not None:
                    continue
                batch.append((job, epoch))
                if route.direction is TransferDirection.IN:
                    job.phase = STAGING_IN
                    nbytes += job.in_bytes
                else:
                    job.phase = STAGING_OUT
                    nbytes += job.out_bytes
            if not batch:
                return
            overhead = (
                model.overhead_in_s if route.direction is TransferDirection.IN else model.overhead_out_s
            )
            median, sigma = _rate_sampler(model)
            seconds = overhead + nbytes / _lognormal(site.rng, median, sigma)
            if "transfers" in site.outages:
                seconds = overhead
            task = Task(batch, site.incarnation, self.now, nbytes)
            route.active += 1
            route.tasks.add(id(task))
            self.at(self.now + seconds, self._transfer_done, site, route, task)

    def _transfer_done(self, site: SimSite, route: Route, task: Task) -> None:
        if task.incarnation != site.incarnation:
            return
        route.active -= 1
        route.tasks.discard(id(task))
        ok = "transfers" not in site.outages
        site.transfer_samples[route.location].append(
            TransferSample(task.nbytes, self.now - task.started, self.now, ok)
        )
        if not ok:
            for job, epoch in task.jobs:
                if job.epoch == epoch:
                    job.phase = QUEUED_IN if route.direction is TransferDirection.IN else QUEUED_OUT
                    route.queue.append((job, epoch))
            self.at(self.now + self.scenario.transfer_retry_s, self._kick, site, route)
            return
        for job, epoch in task.jobs:
            if job.epoch != epoch:
                continue
            if route.direction is TransferDirection.IN:
                site.pending_bytes[job.source] -= job.in_bytes
                self._make_runnable(site, job)
            else:
                self._finish(site, job)
        self._kick(site, route)
        if route.direction is TransferDirection.IN:
            self._dispatch(site)

    # ----------------------------------------------------------------- running
    def _make_runnable(self, site: SimSite, job: SimJob) -> None:
        job.phase = RUNNABLE
        self.seq += 1
        heapq.heappush(site.runnable, (-job.request.priority, self.seq, job, job.epoch))
        self._dispatch(site)

    def _dispatch(self, site: SimSite) -> None:
        if not site.alive:
            return
        while site.free_slots > 0 and site.runnable:
            _, _, job, epoch = heapq.heappop(site.runnable)
            if job.epoch != epoch or job.site is not site or job.group.finished_at is not None:
                continue
            site.free_slots -= 1
            site.idle_since = None
            app = job.request.app
            site.backlog[(app, job.request.priority)] -= 1
            site.running[app] = site.running.get(app, 0) + 1
            site.running_jobs[job] = epoch
            job.phase = RUNNING
            model = site.model.apps[app]
            scale = (job.in_bytes / (model.reference_mb * MB)) ** model.size_exponent if job.in_bytes else 1.0
            seconds = model.median_s * scale * math.exp(model.sigma * job.noise)
            self.at(self.now + site.model.dispatch_s + seconds, self._run_done, site, job, epoch, seconds)

    def _free_slot(self, site: SimSite) -> None:
        if site.retiring > 0:
            site.retiring -= 1
            site.running_slots -= 1
        else:
            site.free_slots += 1
        if site.free_slots == site.running_slots and not site.runnable:
            site.idle_since = self.now

    def _run_done(self, site: SimSite, job: SimJob, epoch: int, seconds: float) -> None:
        if job.epoch != epoch or site.running_jobs.get(job) != epoch:
            return
        del site.running_jobs[job]
        site.running[job.request.app] -= 1
        site.run_samples[job.request.app].append(RunSample(seconds, self.now, job.in_bytes or None))
        self._free_slot(site)
        if job.out_bytes > 0:
            job.phase = QUEUED_OUT
            route = site.routes_out[job.source]
            route.queue.append((job, epoch))
            self._kick(site, route)
        else:
            self._finish(site, job)
        self._dispatch(site)

    def _finish(self, site: SimSite, job: SimJob) -> None:
        job.phase = DONE
        job.finished_at = self.now
        group = job.group
        if group.finished_at is not None:
            return
        group.finished_at = self.now
        group.site = site.name
        site.finishes.append(self.now)
        self.finished += 1
        for twin in group.members:
            if twin is not job and twin.phase != DONE and twin.site is not None:
                self._release(twin)
                twin.phase = DONE
                self._dispatch(twin.site)

    # ----------------------------------------------------------------- pilots
    def _elastic(self, site: SimSite) -> None:
        self.at(self.now + self.scenario.elastic_period_s, self._elastic, site)
        if not site.alive:
            return
        if "scheduler" in site.outages:
            site.scheduler_failures += 1
            return
        site.scheduler_failures = 0
        model = site.model
        demand = site.waiting()
        queued = [p for p in site.pilots if p.state == "queued"]
        if demand == 0:
            for pilot in queued[: max(len(site.pilots) - model.min_pilots, 0)]:
                pilot.state = "ended"
            if site.idle_since is not None and self.now - site.idle_since >= model.idle_timeout_s:
                idle = [p for p in site.pilots if p.state == "running"]
                for pilot in idle[: max(len(self._live(site)) - model.min_pilots, 0)]:
                    self._retire(site, pilot)
        site.pilots = self._live(site)
        uncovered = demand - (site.running_slots - site.retiring + sum(p.slots for p in queued))
        while (uncovered > 0 or len(site.pilots) < model.min_pilots) and len(site.pilots) < model.max_pilots:
            pilot = Pilot(model.slots_per_pilot, self.now)
            site.pilots.append(pilot)
            wait = _lognormal(site.rng, model.queue_wait.median_s, model.queue_wait.sigma)
            self.at(self.now + wait, self._pilot_start, site, pilot, site.incarnation)
            uncovered -= pilot.slots

    @staticmethod
    def _live(site: SimSite) -> list[Pilot]:
        return [p for p in site.pilots if p.state != "ended"]

    def _pilot_start(self, site: SimSite, pilot: Pilot, incarnation: int) -> None:
        if pilot.state != "queued" or incarnation != site.incarnation:
            return
        pilot.state = "running"
        pilot.started = self.now
        site.wait_samples.append(QueueWaitSample(self.now - pilot.submitted, self.now))
        site.running_slots += pilot.slots
        site.free_slots += pilot.slots
        site.reported = (site.running_slots, site.free_slots)
        self.at(self.now + site.model.pilot_wall_time_s, self._retire, site, pilot)
        self._dispatch(site)

    def _retire(self, site: SimSite, pilot: Pilot) -> None:
        """A pilot ends (wall time or idle): its idle slots go now, its busy ones as their jobs end."""
        if pilot.state != "running":
            return
        pilot.state = "ended"
        now_free = min(site.free_slots, pilot.slots)
        site.free_slots -= now_free
        site.running_slots -= now_free
        site.retiring += pilot.slots - now_free
        site.pilots = self._live(site)

    # ----------------------------------------------------------------- outages, drains, health
    def _outage(self, site: SimSite, kind: str, starting: bool) -> None:
        if kind != "site":
            if starting:
                site.outages.add(kind)
            else:
                site.outages.discard(kind)
                if kind == "transfers":
                    for route in (*site.routes_in.values(), *site.routes_out.values()):
                        self._kick(site, route)
            return
        if starting:
            site.reported = (site.running_slots, site.free_slots)
            site.alive = False
            site.dead_since = self.now
            site.incarnation += 1
            for pilot in site.pilots:
                pilot.state = "ended"
            site.pilots = []
            site.running_slots = site.free_slots = site.retiring = 0
            for job, epoch in list(site.running_jobs.items()):
                site.running[job.request.app] -= 1
                key = (job.request.app, job.request.priority)
                site.backlog[key] = site.backlog.get(key, 0) + 1
                job.phase = LOST
                self.at(self.now + self.scenario.session_timeout_s, self._session_expired, site, job, epoch)
            site.running_jobs.clear()
            for route in (*site.routes_in.values(), *site.routes_out.values()):
                route.active = 0
                route.tasks.clear()
        else:
            site.alive = True
            for routes in (site.routes_in, site.routes_out):
                for route in routes.values():
                    self._requeue_stalled(site, route)
                    self._kick(site, route)
            self._dispatch(site)

    def _requeue_stalled(self, site: SimSite, route: Route) -> None:
        """Jobs whose transfer task died with the site go back to the route's queue."""
        stalled = QUEUED_IN if route.direction is TransferDirection.IN else QUEUED_OUT
        moving = STAGING_IN if route.direction is TransferDirection.IN else STAGING_OUT
        for job in self.jobs:
            if job.site is site and job.phase == moving and job.source == route.location:
                job.phase = stalled
                route.queue.appendleft((job, job.epoch))

    def _session_expired(self, site: SimSite, job: SimJob, epoch: int) -> None:
        if job.epoch == epoch and job.phase == LOST and job.site is site:
            job.phase = RUNNABLE
            self.seq += 1
            heapq.heappush(site.runnable, (-job.request.priority, self.seq, job, epoch))
            self._dispatch(site)

    def _drain(self, site: SimSite, starting: bool) -> None:
        site.drained = starting

    def _signals(self, site: SimSite) -> HealthSignals:
        beat = self.scenario.health.heartbeat_s
        age = (self.now - site.dead_since) if not site.alive else self.now % beat
        failed, attempts = 0, 0
        for samples in site.transfer_samples.values():
            f, a = failure_rate(samples, self.now, 15 * 60.0)
            failed += f
            attempts += a
        return HealthSignals(age, site.scheduler_failures, failed, attempts, site.drained)

    def _health_tick(self) -> None:
        self.at(self.now + self.scenario.health_period_s, self._health_tick)
        for site in self.sites:
            site.health = site_health(self._signals(site), self.thresholds)
        leaving = [
            job for site in self.sites if not site.health.accepts_work for job in self._unclaimed(site)
        ]
        if leaving:
            self._place(leaving, moving=True)
        self._hedge()

    def _unclaimed(self, site: SimSite) -> list[SimJob]:
        jobs = [job for route in site.routes_in.values() for job, epoch in route.queue if job.epoch == epoch]
        jobs += [job for _, _, job, epoch in site.runnable if job.epoch == epoch and job.phase == RUNNABLE]
        return [job for job in dict.fromkeys(jobs) if job.site is site and job.phase in UNCLAIMED]

    def _hedge(self) -> None:
        limit = self.scenario.max_hedges_per_cycle
        if limit == 0:
            return
        for job in [j for j in self.hedge_watch if j.group.finished_at is not None or j.copy is not None]:
            del self.hedge_watch[job]
        candidates = [
            job
            for job in self.hedge_watch
            if job.site is not None and job.p95 is not None and self.now - job.placed_at > job.p95
        ]
        if not candidates:
            return
        placed = [PlacedJob(j.request, j.site.name, j.placed_at, j.p95) for j in candidates if j.site]
        snapshot = self._snapshot()
        started = time.perf_counter()
        copies = hedges(placed, snapshot, policy=self.policy, max_copies=limit, cache=self.cache)
        self.decision_s += time.perf_counter() - started
        by_key = {j.request.key: j for j in candidates}
        for hedge in copies:
            original = by_key[hedge.original.job.key]
            copy = SimJob(original.request, original.arrival, original.source, original.noise, original.group)
            original.group.members.append(copy)
            original.copy = copy
            copy.copy = original
            del self.hedge_watch[original]
            self.hedged += 1
            self._accept(self.by_name[hedge.site], copy)

    # ----------------------------------------------------------------- estimates
    def _estimate_tick(self) -> None:
        self.at(self.now + self.scenario.estimate_period_s, self._estimate_tick)
        self._refresh_estimates()

    def _refresh_estimates(self) -> None:
        now = self.now
        for site in self.sites:
            runs: dict[str, RunTimeEstimate] = {}
            for app, samples in site.run_samples.items():
                if samples:
                    runs[app] = estimate_run_time(
                        samples,
                        now,
                        prior_s=site.priors.run_time_s[app],
                        prior_spread=site.priors.run_time_spread,
                    )
            ages = [now - p.submitted for p in site.pilots if p.state == "queued"]
            queue: dict[str, QueueWaitEstimate] = {}
            if site.wait_samples or ages:
                queue["default"] = estimate_queue_wait(
                    site.wait_samples, now, prior_s=site.priors.queue_wait_s, still_queued_ages=ages
                )
            transfers: dict[str, TransferEstimate] = {}
            for location, moved in site.transfer_samples.items():
                if moved:
                    route = site.model.routes[location]
                    transfers[location] = estimate_transfer(
                        moved,
                        now,
                        prior_rate_bps=route.rate_mbps * MB,
                        prior_overhead_s=route.overhead_in_s,
                    )
            site.run_estimates, site.queue_estimates, site.transfer_estimates = runs, queue, transfers

    # ----------------------------------------------------------------- results
    def _result(self, wall_s: float) -> SimulationResult:
        latencies = sorted(
            j.group.finished_at - j.arrival for j in self.jobs if j.group.finished_at is not None
        )
        finished = len(latencies)
        first = self.jobs[0].arrival if self.jobs else 0.0
        last = max((t for s in self.sites for t in s.finishes), default=first)
        span = max(last - first, 1e-9)
        per_site = {s.name: len(s.finishes) for s in self.sites}

        def pick(q: float) -> float:
            if not latencies:
                return math.nan
            return latencies[min(int(q * len(latencies)), len(latencies) - 1)]

        wins = sum(
            1
            for j in self.jobs
            if j.copy is not None
            and j.group.finished_at is not None
            and j.group.site == (j.copy.site.name if j.copy.site else None)
            and j.copy.finished_at is not None
        )
        return SimulationResult(
            scenario=self.scenario.name,
            policy=self.policy,
            jobs=len(self.jobs),
            finished=finished,
            stranded=len(self.jobs) - finished,
            replaced=self.replaced,
            hedged=self.hedged,
            hedge_wins=wins,
            explored=self.explored,
            latency_median_s=pick(0.5),
            latency_p95_s=pick(0.95),
            jobs_per_min=60 * finished / span,
            site_jobs=per_site,
            site_jobs_per_min={name: 60 * n / span for name, n in per_site.items()},
            span_s=span,
            decisions=self.decisions,
            decision_s=self.decision_s,
            wall_s=wall_s,
            finish_times={s.name: list(s.finishes) for s in self.sites},
        )


def simulate(
    scenario: Scenario, policy: str, *, progress: Callable[[float], None] | None = None
) -> SimulationResult:
    """Run ``policy`` on ``scenario`` (deterministic: the same inputs give the same result)."""
    return Simulation(scenario, policy, progress=progress).run()
