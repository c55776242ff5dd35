"""One user's sites as placement sees them, built from the database.

Every figure comes from rows the service keeps anyway: the site's heartbeat and drain (health), its
launcher sessions and batch jobs (running slots, idle slots, queued pilots), its jobs (backlog, running),
the event log (run times: ``RUNNING`` → ``RUN_DONE`` per site and app) and its batch jobs' start times
(queue waits). The history figures change slowly and cost the most to read, so they are kept for
``history_ttl_s``; the live counts are read on every snapshot.
"""

from __future__ import annotations

import math
import threading
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import datetime
from itertools import pairwise
from typing import Any

import sqlalchemy as sa
from pydantic import TypeAdapter
from sqlalchemy.engine import Connection

from beambridge.placement import (
    AppSpec,
    BacklogGroup,
    HealthSignals,
    HealthThresholds,
    QueuedPilot,
    QueueWaitSample,
    RunSample,
    SitePriors,
    SiteSnapshot,
    Snapshot,
    estimate_queue_wait,
    estimate_run_time,
    site_health,
)
from beambridge.placement.estimators import (
    QueueWaitEstimate,
    RunTimeEstimate,
    TransferEstimate,
    TransferSample,
    estimate_transfer,
)
from beambridge.schemas.apps import AppParameter, TransferSlot
from beambridge.schemas.batch_jobs import BatchJobState
from beambridge.schemas.placement import SiteFigures
from beambridge.schemas.transfers import TransferState
from beambridge.server.db.tables import (
    BACKLOG_SQL,
    apps,
    batch_jobs,
    events,
    job_runs,
    jobs,
    sessions,
    sites,
    transfer_items,
)
from beambridge.states import JobState

S = JobState
WAITING_STATES = (S.READY, S.STAGED_IN, S.PREPROCESSED, S.RESTART_READY)
"""A job placed at a site and not running yet (its backlog)."""
_WAITING = [s.value for s in WAITING_STATES]
_PARAMS = TypeAdapter(dict[str, AppParameter])
_SLOTS = TypeAdapter(dict[str, TransferSlot])
HISTORY_WINDOW_S = 6 * 3600.0
TRANSFER_WINDOW_S = 900.0


@dataclass(frozen=True, slots=True)
class SiteRef:
    """The database side of a site in a snapshot: its id and its apps' ids and hooks by name."""

    id: int
    name: str
    app_ids: dict[str, int]
    app_hooks: dict[str, frozenset[str]]
    app_params: dict[str, dict[str, AppParameter]]
    app_slots: dict[str, dict[str, TransferSlot]]


@dataclass(frozen=True, slots=True)
class ServiceSnapshot:
    """A snapshot and the ids behind its names."""

    snapshot: Snapshot
    refs: dict[str, SiteRef]

    def site_id(self, name: str) -> int:
        return self.refs[name].id

    def names_by_id(self) -> dict[int, str]:
        return {ref.id: name for name, ref in self.refs.items()}


@dataclass
class _History:
    at: float
    run_times: dict[int, dict[int, RunTimeEstimate]]
    queue_waits: dict[int, dict[str, QueueWaitEstimate]]
    turnarounds: dict[int, float] = field(default_factory=dict)
    dispatches: dict[int, float] = field(default_factory=dict)


MIN_TURNAROUNDS = 3
"""Samples a site needs before its measured turnaround (else 0) or dispatch (else the measured
turnaround, else the prior) is used."""


def _turnarounds(
    conn: Connection, owner_id: int, since: datetime
) -> tuple[dict[int, float], dict[int, float]]:
    """Per site, from the newest 20,000 runs of the window paired per (pilot, node, slot):

    * the *turnaround*: the median time a slot stood between the end of one run and the start of the
      next while that next job was already waiting (created before the run ended) — what each job
      costs a busy slot beyond its run time: the launcher's reports, its acquire, the job's start-up;
    * the *dispatch*: the median time from a job's creation to its start on a slot that was idle when
      it came (the previous run there had ended) — how soon a free slot takes new work: the long-poll
      wake-up, the acquire, the start-up. Exact for jobs placed at submission with nothing to stage in;
      a job that staged data in first makes it an overestimate.
    """
    query = (
        sa.select(
            job_runs.c.site_id,
            job_runs.c.batch_job_id,
            job_runs.c.node,
            job_runs.c.slot,
            job_runs.c.started_at,
            job_runs.c.ended_at,
            jobs.c.created_at,
        )
        .join(jobs, jobs.c.id == job_runs.c.job_id)
        .where(job_runs.c.owner_id == owner_id, job_runs.c.started_at >= since)
        .order_by(job_runs.c.id.desc())
        .limit(20_000)
    )
    lanes: dict[tuple[Any, ...], list[tuple[float, float | None, float]]] = defaultdict(list)
    for row in conn.execute(query):
        if row.batch_job_id is None or row.slot is None:
            continue
        lane = (row.site_id, row.batch_job_id, row.node, row.slot)
        ended = row.ended_at.timestamp() if row.ended_at is not None else None
        lanes[lane].append((row.started_at.timestamp(), ended, row.created_at.timestamp()))
    gaps: dict[int, list[float]] = defaultdict(list)
    dispatches: dict[int, list[float]] = defaultdict(list)
    for (site_id, *_), runs in lanes.items():
        runs.sort(key=lambda run: run[0])
        for (_, ended, _), (started, _, created) in pairwise(runs):
            if ended is None:
                continue
            if created <= ended <= started:
                gaps[site_id].append(started - ended)
            elif ended < created <= started:
                dispatches[site_id].append(started - created)

    def medians(samples: dict[int, list[float]]) -> dict[int, float]:
        return {
            site_id: sorted(values)[len(values) // 2]
            for site_id, values in samples.items()
            if len(values) >= MIN_TURNAROUNDS
        }

    return medians(gaps), medians(dispatches)


@dataclass
class HistoryCache:
    """Run-time and queue-wait estimates per owner, kept ``ttl_s`` seconds."""

    ttl_s: float = 10.0
    _entries: dict[int, _History] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, owner_id: int, now: float) -> _History | None:
        with self._lock:
            entry = self._entries.get(owner_id)
        return entry if entry is not None and now - entry.at < self.ttl_s else None

    def put(self, owner_id: int, entry: _History) -> None:
        with self._lock:
            self._entries[owner_id] = entry

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_FIGURES = TypeAdapter(SiteFigures)
_NO_FIGURES = SiteFigures()


def site_figures(status: Any) -> SiteFigures:
    """What the site's agent reported for placement (``status.placement``); nothing when it sent none or
    something malformed (an old agent, a hand-edited status): the site then keeps the service's priors."""
    report = status.get("placement") if isinstance(status, dict) else None
    if not isinstance(report, dict):
        return _NO_FIGURES
    try:
        return _FIGURES.validate_python(report)
    except ValueError:
        return _NO_FIGURES


def site_priors(figures: SiteFigures, defaults: SitePriors) -> SitePriors:
    """The service's priors with what the site's configuration says instead, figure by figure."""
    given = figures.priors
    changes = {
        name: value for name, value in given.model_dump(exclude={"run_time_s"}).items() if value is not None
    }
    if not changes and not given.run_time_s:
        return defaults
    run_times = {**defaults.run_time_s, **given.run_time_s}
    return replace(defaults, run_time_s=run_times, **changes)


def measured_transfers(figures: SiteFigures, now: float, priors: SitePriors) -> dict[str, TransferEstimate]:
    """Per location alias, the route's rate and overhead from the transfer tasks the agent timed."""
    out = {}
    for location, measured in figures.transfers.items():
        samples = [TransferSample(m.bytes, m.seconds, m.at, m.ok) for m in measured]
        out[location] = estimate_transfer(
            samples, now, prior_rate_bps=priors.transfer_rate_bps, prior_overhead_s=priors.transfer_overhead_s
        )
    return out


MAX_SIZE_PARAMETERS = 8


def numeric_parameters(parameters: Any) -> tuple[tuple[str, float], ...]:
    """A job's top-level numeric parameters (at most :data:`MAX_SIZE_PARAMETERS`, by name): what the
    run-time model may find its size in when the job moves no data."""
    if not isinstance(parameters, dict):
        return ()
    found = sorted(
        (name, float(value))
        for name, value in parameters.items()
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    )
    return tuple(found[:MAX_SIZE_PARAMETERS])


def _posix(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def _history(
    conn: Connection, owner_id: int, site_ids: list[int], now: float, priors: SitePriors
) -> _History:
    since = datetime.fromtimestamp(now - HISTORY_WINDOW_S).astimezone()
    # Run times: RUNNING → RUN_DONE of the same job, newest first, at most a few thousand.
    query = (
        sa.select(events.c.job_id, events.c.site_id, events.c.to_state, events.c.timestamp)
        .where(
            events.c.owner_id == owner_id,
            events.c.to_state.in_([S.RUNNING.value, S.RUN_DONE.value]),
            events.c.timestamp >= since,
        )
        .order_by(events.c.id.desc())
        .limit(20_000)
    )
    started: dict[int, float] = {}
    done: list[tuple[int, int, float]] = []
    for event in conn.execute(query):
        at = event.timestamp.timestamp()
        if event.to_state == S.RUN_DONE.value:
            done.append((event.job_id, event.site_id, at))
        else:  # newest first: the RUNNING event that ended in the RUN_DONE is the latest one before it
            started.setdefault(event.job_id, at)
    job_apps: dict[int, int] = {}
    job_sizes: dict[int, tuple[tuple[str, float], ...]] = {}
    done_ids = sorted({job_id for job_id, _, _ in done})
    for start in range(0, len(done_ids), 5000):
        chunk = done_ids[start : start + 5000]
        for r in conn.execute(
            sa.select(jobs.c.id, jobs.c.app_id, jobs.c.parameters).where(jobs.c.id.in_(chunk))
        ):
            job_apps[r.id] = r.app_id
            job_sizes[r.id] = numeric_parameters(r.parameters)
    samples: dict[tuple[int, int], list[RunSample]] = defaultdict(list)
    for job_id, site_id, at in done:
        begin = started.get(job_id)
        app_id = job_apps.get(job_id)
        if begin is not None and app_id is not None and at >= begin:
            samples[(site_id, app_id)].append(RunSample(at - begin, at, parameters=job_sizes[job_id]))
    run_times: dict[int, dict[int, RunTimeEstimate]] = defaultdict(dict)
    for (site_id, app_id), rows in samples.items():
        run_times[site_id][app_id] = estimate_run_time(
            rows, now, prior_s=priors.default_run_time_s, prior_spread=priors.run_time_spread
        )
    # Queue waits: batch jobs that started, per (site, queue); those still queued are censored samples.
    waits: dict[tuple[int, str], list[QueueWaitSample]] = defaultdict(list)
    queued_ages: dict[tuple[int, str], list[float]] = defaultdict(list)
    pilots = sa.select(
        batch_jobs.c.site_id,
        batch_jobs.c.queue,
        batch_jobs.c.state,
        batch_jobs.c.created_at,
        batch_jobs.c.start_time,
    ).where(batch_jobs.c.owner_id == owner_id, batch_jobs.c.created_at >= since)
    for row in conn.execute(pilots):
        key = (row.site_id, row.queue or "default")
        if row.start_time is not None:
            begin = row.start_time.timestamp()
            waits[key].append(QueueWaitSample(begin - row.created_at.timestamp(), begin))
        elif row.state == BatchJobState.QUEUED.value:
            queued_ages[key].append(now - row.created_at.timestamp())
    queue_waits: dict[int, dict[str, QueueWaitEstimate]] = defaultdict(dict)
    for key in set(waits) | set(queued_ages):
        if waits.get(key):
            queue_waits[key[0]][key[1]] = estimate_queue_wait(
                waits[key], now, prior_s=priors.queue_wait_s, still_queued_ages=queued_ages.get(key, ())
            )
    del site_ids
    turnarounds, dispatches = _turnarounds(conn, owner_id, since)
    return _History(now, dict(run_times), dict(queue_waits), turnarounds, dispatches)


def _live_counts(
    conn: Connection, owner_id: int, app_names: dict[int, str]
) -> tuple[dict[int, dict[tuple[str, int], int]], dict[int, dict[str, int]], dict[int, int]]:
    """Per site: the backlog by (app, priority), the running jobs by app, and the jobs launchers hold."""
    backlog: dict[int, dict[tuple[str, int], int]] = defaultdict(dict)
    for row in conn.execute(
        sa.select(jobs.c.site_id, jobs.c.app_id, jobs.c.priority, sa.func.count())
        .where(jobs.c.owner_id == owner_id, sa.text(BACKLOG_SQL[conn.dialect.name]))
        .group_by(jobs.c.site_id, jobs.c.app_id, jobs.c.priority)
    ):
        key = (app_names.get(row.app_id, "?"), row.priority)
        backlog[row.site_id][key] = backlog[row.site_id].get(key, 0) + row[3]
    running: dict[int, dict[str, int]] = defaultdict(dict)
    held: dict[int, int] = defaultdict(int)
    for row in conn.execute(
        sa.select(jobs.c.site_id, jobs.c.app_id, jobs.c.state, sa.func.count())
        .where(
            # by the owner's sessions: the few jobs launchers hold, read from the session index, not
            # the owner's whole backlog of unclaimed ones from the (owner, state) index
            jobs.c.session_id.in_(sa.select(sessions.c.id).where(sessions.c.owner_id == owner_id)),
            jobs.c.state.in_([S.RUNNING.value, *_WAITING]),
        )
        .group_by(jobs.c.site_id, jobs.c.app_id, jobs.c.state)
    ):
        held[row.site_id] += row[3]
        if row.state == S.RUNNING.value:
            name = app_names.get(row.app_id, "?")
            running[row.site_id][name] = running[row.site_id].get(name, 0) + row[3]
    return backlog, running, held


def build_snapshot(
    conn: Connection,
    owner_id: int,
    now: float,
    *,
    thresholds: HealthThresholds,
    cache: HistoryCache | None = None,
    only_site_id: int | None = None,
    priors: SitePriors | None = None,
    round_robin_cursor: int = 0,
    counts: bool = True,
) -> ServiceSnapshot:
    """The owner's sites at ``now`` (POSIX seconds); ``only_site_id`` limits it to one site (a site token).

    ``counts=False``: the sites' health, apps and pilots only — no backlog or running counts and no
    history (what the placement cycle reads to learn whether any site stopped taking work)."""
    priors = priors or SitePriors()
    site_query = sa.select(sites).where(sites.c.owner_id == owner_id).order_by(sites.c.id)
    if only_site_id is not None:
        site_query = site_query.where(sites.c.id == only_site_id)
    site_rows = conn.execute(site_query).all()
    site_ids = [row.id for row in site_rows]
    if not site_ids:
        return ServiceSnapshot(Snapshot(now=now, sites=(), round_robin_cursor=round_robin_cursor), {})
    app_rows = conn.execute(
        sa.select(
            apps.c.id, apps.c.site_id, apps.c.name, apps.c.parameters, apps.c.transfer_slots, apps.c.hooks
        )
        .where(apps.c.site_id.in_(site_ids))
        .order_by(apps.c.id)
    ).all()
    app_names = {row.id: row.name for row in app_rows}
    backlog, running, held = _live_counts(conn, owner_id, app_names) if counts else ({}, {}, {})
    slots: dict[int, int] = defaultdict(int)
    row: Any
    for row in conn.execute(
        sa.select(sessions.c.site_id, sa.func.coalesce(batch_jobs.c.num_nodes, 1))
        .select_from(sessions.outerjoin(batch_jobs, batch_jobs.c.id == sessions.c.batch_job_id))
        .where(sessions.c.owner_id == owner_id, sessions.c.expired_at.is_(None))
    ):
        slots[row.site_id] += int(row[1])
    queued: dict[int, list[QueuedPilot]] = defaultdict(list)
    for row in conn.execute(
        sa.select(
            batch_jobs.c.site_id, batch_jobs.c.num_nodes, batch_jobs.c.queue, batch_jobs.c.created_at
        ).where(
            batch_jobs.c.owner_id == owner_id,
            batch_jobs.c.state.in_([BatchJobState.PENDING_SUBMISSION.value, BatchJobState.QUEUED.value]),
        )
    ):
        queued[row.site_id].append(
            QueuedPilot(
                int(row.num_nodes), max(0.0, now - row.created_at.timestamp()), row.queue or "default"
            )
        )
    cutoff = datetime.fromtimestamp(now - TRANSFER_WINDOW_S).astimezone()
    transfer_counts: dict[int, tuple[int, int]] = {}
    for row in conn.execute(
        sa.select(transfer_items.c.site_id, transfer_items.c.state, sa.func.count())
        .where(
            transfer_items.c.owner_id == owner_id,
            transfer_items.c.state.in_([TransferState.DONE.value, TransferState.ERROR.value]),
            transfer_items.c.updated_at >= cutoff,
        )
        .group_by(transfer_items.c.site_id, transfer_items.c.state)
    ):
        failed, attempts = transfer_counts.get(row.site_id, (0, 0))
        bad = row[2] if row.state == TransferState.ERROR.value else 0
        transfer_counts[row.site_id] = (failed + bad, attempts + row[2])
    history = cache.get(owner_id, now) if cache is not None else None
    if not counts:
        history = _History(now, {}, {})
    elif history is None:
        history = _history(conn, owner_id, site_ids, now, priors)
        if cache is not None:
            cache.put(owner_id, history)

    by_site: dict[int, list[Any]] = defaultdict(list)
    for row in app_rows:
        by_site[row.site_id].append(row)
    snapshots: list[SiteSnapshot] = []
    refs: dict[str, SiteRef] = {}
    for site in site_rows:
        specs: dict[str, AppSpec] = {}
        ids: dict[str, int] = {}
        hooks: dict[str, frozenset[str]] = {}
        params: dict[str, dict[str, AppParameter]] = {}
        slot_specs: dict[str, dict[str, TransferSlot]] = {}
        for row in by_site[site.id]:
            params[row.name] = _PARAMS.validate_python(row.parameters)
            slot_specs[row.name] = _SLOTS.validate_python(row.transfer_slots)
            specs[row.name] = AppSpec(row.name, params[row.name], slot_specs[row.name])
            ids[row.name] = row.id
            hooks[row.name] = frozenset(row.hooks)
        failed, attempts = transfer_counts.get(site.id, (0, 0))
        last = _posix(site.last_heartbeat)
        figures = site_figures(site.status)
        own_priors = site_priors(figures, priors)
        health = site_health(
            HealthSignals(
                heartbeat_age_s=None if last is None else max(0.0, now - last),
                scheduler_failures=figures.scheduler_failures,
                scheduler_error=figures.scheduler_error,
                transfer_failures=failed,
                transfer_attempts=attempts,
                drain=site.drained_at is not None,
            ),
            thresholds,
        )
        age = None if last is None else max(0.0, now - last)
        silent = 0.0
        if age is not None and thresholds.heartbeat_degraded_s <= age < thresholds.heartbeat_down_s:
            silent = thresholds.heartbeat_down_s - age
        if site.drained_at is not None and site.drain_reason:
            health = type(health)(
                health.state, (f"drained by its owner: {site.drain_reason}", *health.reasons[1:])
            )
        running_slots = slots.get(site.id, 0)
        free = max(0, running_slots - held.get(site.id, 0))
        site_queued = tuple(queued.get(site.id, ()))
        new_pilot_slots = 1  # an agent that does not say its limits: assume it can ask for one more node
        if figures.max_total_nodes is not None:
            headroom = figures.max_total_nodes - running_slots - sum(p.slots for p in site_queued)
            new_pilot_slots = max(0, min(headroom, figures.max_pilot_nodes or headroom))
        run_times = {
            app_names[app_id]: est
            for app_id, est in history.run_times.get(site.id, {}).items()
            if app_id in app_names
        }
        snapshots.append(
            SiteSnapshot(
                name=site.name,
                apps=specs,
                locations=frozenset((site.locations or {}).keys()),
                health=health,
                running_slots=running_slots,
                free_slots=min(free, running_slots),
                queued_pilots=site_queued,
                new_pilot_slots=new_pilot_slots,
                backlog=tuple(
                    BacklogGroup(app, priority, count)
                    for (app, priority), count in backlog.get(site.id, {}).items()
                ),
                running=running.get(site.id, {}),
                run_times=run_times,
                queue_waits=history.queue_waits.get(site.id, {}),
                transfers=measured_transfers(figures, now, own_priors),
                priors=own_priors,
                turnaround_s=history.turnarounds.get(site.id, 0.0),
                dispatch_s=history.dispatches.get(site.id, history.turnarounds.get(site.id)),
                silent_s=silent,
            )
        )
        refs[site.name] = SiteRef(site.id, site.name, ids, hooks, params, slot_specs)
    return ServiceSnapshot(
        Snapshot(now=now, sites=tuple(snapshots), round_robin_cursor=round_robin_cursor), refs
    )
