"""The figures of the overview, sites and weather pages, computed in the database where they are big.

Everything is scoped to the caller (``owner_id``) and bounded: stage times look at the newest
``STAGE_SAMPLE`` jobs of the scope, throughput and failures at a time window, the weather plot at the runs
of a window (aggregated to pixels on the server, see :mod:`beambridge.server.console.weather`).

Throughput, failure counts and the site cards' hourly figures are sums over ``activity_minutes`` (per-minute
counts of state changes written with the events, :mod:`beambridge.server.jobs.activity`) whenever the
scope is one it is keyed by: all the caller's jobs, or those of some sites, apps and one experiment tag.
Any other scope (another tag, a state, a time filter) reads the window's events of the scope's jobs.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from beambridge.schemas.queries import JobQuery
from beambridge.server.auth.tokens import Principal
from beambridge.server.console.queries import reason_of
from beambridge.server.db.chunks import id_in
from beambridge.server.db.tables import activity_minutes, batch_jobs, events, jobs, sites
from beambridge.server.jobs.activity import EXPERIMENT_TAG, experiment_is, minute_of
from beambridge.server.jobs.queries import job_conditions
from beambridge.states import JobState

S = JobState
FUNNEL: list[tuple[str, tuple[JobState, ...]]] = [
    ("submitted", (S.CREATED, S.AWAITING_PARENTS, S.READY)),
    ("staged in", (S.STAGED_IN,)),
    ("queued", (S.PREPROCESSED, S.RESTART_READY)),
    ("running", (S.RUNNING,)),
    ("staging out", (S.RUN_DONE, S.POSTPROCESSED, S.STAGED_OUT)),
    ("finished", (S.JOB_FINISHED,)),
    ("failed", (S.FAILED, S.RUN_ERROR, S.RUN_TIMEOUT)),
    ("killed", (S.KILLED,)),
]
STAGES = [
    ("stage in", S.CREATED, S.STAGED_IN),
    ("run delay", S.STAGED_IN, S.RUNNING),
    ("run", S.RUNNING, S.RUN_DONE),
    ("stage out", S.RUN_DONE, S.JOB_FINISHED),
]
"""Balsam's breakdown: (name, state the stage starts at, state it ends at); the first time each was
reached counts (``CREATED`` is the job's creation)."""
STAGE_SAMPLE = 2000
REASON_SAMPLE = 500
REASON_WINDOW = 5000
"""The failures banner's commonest reasons come from the scope's newest ``REASON_SAMPLE`` failures among the
newest ``REASON_WINDOW`` of the caller's failures in the last hour."""
FAILED_STATES = (S.FAILED, S.RUN_ERROR, S.RUN_TIMEOUT)
FAILED = [s.value for s in FAILED_STATES]
HEALTHY_HEARTBEAT_S = 120
STALE_HEARTBEAT_S = 600


def _utc(value: datetime | str | None) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):  # SQLite may hand back aggregates of times as text
        value = datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


@dataclass
class Overview:
    """What the overview page shows."""

    funnel: list[tuple[str, int]]
    total: int
    stages: list[dict[str, Any]]
    throughput: dict[str, list[float]]
    bucket_s: int
    window_start: datetime
    failures_recent: int
    top_reasons: list[tuple[str, int]] = field(default_factory=list)


def overview(
    conn: Connection, principal: Principal, query: JobQuery, now: datetime, hours: float
) -> Overview:
    """Funnel, stage times, throughput per site and recent failures of the caller's jobs in ``query``."""
    scope = Scope(query, principal, conn.dialect.name)
    by_state = sa.select(jobs.c.state, sa.func.count()).where(*scope.where).group_by(jobs.c.state)
    counts = {state: int(n) for state, n in conn.execute(by_state)}
    funnel = [(name, sum(counts.get(state.value, 0) for state in states)) for name, states in FUNNEL]
    since = window_start(now, hours)
    return Overview(
        funnel=funnel,
        total=sum(n for _, n in funnel),
        stages=_stage_times(conn, scope.where),
        **_throughput(conn, scope, since, now),
        window_start=since,
        **_failures(conn, scope, window_start(now, 1.0)),
    )


@dataclass
class Throughput:
    """What the throughput page shows: finished jobs per minute per site over a window, stage times."""

    throughput: dict[str, list[float]]
    bucket_s: int
    window_start: datetime
    stages: list[dict[str, Any]]
    finished: int


def throughput(
    conn: Connection, principal: Principal, query: JobQuery, now: datetime, hours: float
) -> Throughput:
    """Jobs finished per minute by site over the last ``hours``, and the stage latencies (median, p95)."""
    scope = Scope(query, principal, conn.dialect.name)
    since = window_start(now, hours)
    figures = _throughput(conn, scope, since, now)
    per_minute = 60.0 / figures["bucket_s"]
    finished = round(sum(sum(v) for v in figures["throughput"].values()) / per_minute)
    return Throughput(
        **figures, window_start=since, stages=_stage_times(conn, scope.where), finished=finished
    )


def _stage_times(conn: Connection, where: list[sa.ColumnElement[bool]]) -> list[dict[str, Any]]:
    sample = (
        sa.select(jobs.c.id, jobs.c.created_at).where(*where).order_by(jobs.c.id.desc()).limit(STAGE_SAMPLE)
    )
    sample_cte = sample.cte("sample")
    firsts = [
        sa.func.min(sa.case((events.c.to_state == state.value, events.c.timestamp))).label(state.value)
        for state in (S.STAGED_IN, S.RUNNING, S.RUN_DONE, S.JOB_FINISHED)
    ]
    statement = (
        sa.select(sample_cte.c.id, sample_cte.c.created_at, *firsts)
        .join(events, events.c.job_id == sample_cte.c.id)
        .group_by(sample_cte.c.id, sample_cte.c.created_at)
    )
    rows = conn.execute(statement).all()
    out = []
    for name, start, end in STAGES:
        durations = []
        for row in rows:
            begin = _utc(row.created_at) if start is S.CREATED else _utc(getattr(row, start.value))
            finish = _utc(getattr(row, end.value))
            if begin is not None and finish is not None and finish >= begin:
                durations.append((finish - begin).total_seconds())
        values = np.array(durations)
        out.append({
            "name": name,
            "count": len(durations),
            "median": float(np.median(values)) if len(values) else None,
            "p95": float(np.percentile(values, 95)) if len(values) else None,
        })  # fmt: skip
    return out


def window_start(now: datetime, hours: float) -> datetime:
    """The start of a window of ``hours`` ending now, on a whole minute (the counts' resolution)."""
    return minute_of(now - timedelta(hours=hours))


class Scope:
    """Which of the caller's jobs a figure counts: the job conditions, and the same scope as conditions
    on ``activity_minutes`` when it is keyed by it (``activity`` is ``None`` otherwise).

    One experiment (the query's only tag is ``experiment``) is matched by the tag's value, not by tag
    containment: ``ix_jobs_experiment`` (PostgreSQL: ``owner_id, tags ->> 'experiment', id``) then finds
    its jobs newest first, so the stage-time sample reads 2,000 index entries instead of walking the
    primary key back past every other experiment's jobs."""

    def __init__(self, query: JobQuery, principal: Principal, dialect: str) -> None:
        given = set(query.model_dump(exclude_defaults=True))
        self.everything = not given
        self.principal = principal
        experiment = query.tags.get(EXPERIMENT_TAG) if set(query.tags) == {EXPERIMENT_TAG} else None
        if experiment:
            self.where = job_conditions(query.model_copy(update={"tag": []}), principal, dialect)
            self.where.append(experiment_is(experiment, dialect))
        else:
            self.where = job_conditions(query, principal, dialect)
        a = activity_minutes.c
        tags = query.tags
        self.activity: list[sa.ColumnElement[bool]] | None = None
        if given <= {"site_id", "app_id", "tag"} and set(tags) <= {EXPERIMENT_TAG} and all(tags.values()):
            self.activity = [a.owner_id == principal.user_id]
            if principal.site_id is not None:
                self.activity.append(a.site_id == principal.site_id)
            if query.site_id:
                self.activity.append(a.site_id.in_(query.site_id))
            if query.app_id:
                self.activity.append(a.app_id.in_(query.app_id))
            if tags:
                self.activity.append(a.experiment == tags[EXPERIMENT_TAG])

    def events(self) -> list[sa.ColumnElement[bool]]:
        """Conditions on ``events`` for the caller's events of the scope's jobs."""
        own = [events.c.owner_id == self.principal.user_id]
        if self.everything:
            return own
        return [*own, events.c.job_id.in_(sa.select(jobs.c.id).where(*self.where))]


def _seconds_since(conn: Connection, column: Any, since: datetime) -> Any:
    if conn.dialect.name == "postgresql":  # date_part is double precision; extract() would be numeric
        return sa.func.date_part("epoch", column) - since.timestamp()
    return (sa.func.julianday(column) - sa.func.julianday(since.isoformat())) * 86400.0


def _throughput(conn: Connection, scope: Scope, since: datetime, now: datetime) -> dict[str, Any]:
    """Jobs finished per bucket (one minute for an hour; wider for longer windows), per site."""
    span = (now - since).total_seconds()
    bucket_s = 60 if span <= 3 * 3600 + 60 else 600 if span <= 48 * 3600 + 60 else 3600
    buckets = int(np.ceil(span / bucket_s))
    a = activity_minutes.c
    statement: sa.Select[Any]
    if scope.activity is not None:  # a few rows a minute, however many jobs finished
        # minutes sit on whole multiples of 60 s from ``since``; the second keeps SQLite's julianday
        # rounding (59.99999…) from moving a minute into the bucket before
        bucket = sa.cast(sa.func.floor((_seconds_since(conn, a.minute, since) + 1) / bucket_s), sa.Integer)
        statement = (
            sa.select(a.site_id, bucket.label("bucket"), sa.func.sum(a.count))
            .where(*scope.activity, a.to_state == S.JOB_FINISHED.value, a.minute >= since)
            .group_by(a.site_id, bucket)
        )
    else:  # counted per (site, bucket) in the database: a few hundred rows back
        bucket = sa.cast(
            sa.func.floor(_seconds_since(conn, events.c.timestamp, since) / bucket_s), sa.Integer
        )
        statement = (
            sa.select(events.c.site_id, bucket.label("bucket"), sa.func.count())
            .where(*scope.events(), events.c.to_state == S.JOB_FINISHED.value, events.c.timestamp >= since)
            .group_by(events.c.site_id, bucket)
        )
    names = dict(
        conn.execute(
            sa.select(sites.c.id, sites.c.name).where(sites.c.owner_id == scope.principal.user_id)
        ).all()
    )
    series: dict[str, np.ndarray] = {}
    for site_id, index, count in conn.execute(statement):
        if index is not None and 0 <= int(index) < buckets:
            name = str(names.get(site_id, site_id))
            series.setdefault(name, np.zeros(buckets))[int(index)] += int(count)
    per_minute = 60.0 / bucket_s
    return {
        "throughput": {k: (v * per_minute).round(2).tolist() for k, v in sorted(series.items())},
        "bucket_s": bucket_s,
    }


def _failures(conn: Connection, scope: Scope, since: datetime) -> dict[str, Any]:
    """How many times jobs failed (or erred, or timed out) since ``since``, and the three commonest reasons
    (the event's reason, else the last line of the job's error) of the newest (see ``REASON_SAMPLE``)."""
    a = activity_minutes.c
    if scope.activity is not None:
        count = conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(a.count), 0)).where(
                *scope.activity, a.to_state.in_(FAILED), a.minute >= since
            )
        ).scalar_one()
    else:
        count = conn.execute(
            sa.select(sa.func.count()).where(
                *scope.events(), events.c.to_state.in_(FAILED), events.c.timestamp >= since
            )
        ).scalar_one()
    # The newest failures of the hour, then those of the scope's jobs among them (looked up by id: a join
    # on the scope's conditions could read every job of the scope), then the reasons of the newest of those.
    newest = conn.execute(
        sa.select(events.c.id, events.c.job_id)
        .where(
            events.c.owner_id == scope.principal.user_id,
            events.c.to_state.in_(FAILED),
            events.c.timestamp >= since,
        )
        .order_by(events.c.timestamp.desc(), events.c.id.desc())
        .limit(REASON_WINDOW)
    ).all()
    errors: dict[int, str | None] = {}  # the scope's jobs among them, with their error text
    picked: dict[int, int] = {}  # event id -> job id: each job's newest failure, newest first
    taken: set[int] = set()
    for start in range(0, len(newest), REASON_SAMPLE):  # a slice at a time: most scopes fill up early
        part = newest[start : start + REASON_SAMPLE]
        found = sa.select(jobs.c.id, jobs.c.error).where(
            id_in(jobs.c.id, sorted({job_id for _, job_id in part}), conn.dialect.name), *scope.where
        )
        errors.update((job_id, error) for job_id, error in conn.execute(found))
        for event_id, job_id in part:
            if job_id in errors and job_id not in taken and len(picked) < REASON_SAMPLE:
                picked[event_id] = job_id
                taken.add(job_id)
        if len(picked) >= REASON_SAMPLE:
            break
    data = dict(
        conn.execute(
            sa.select(events.c.id, events.c.data).where(id_in(events.c.id, list(picked), conn.dialect.name))
        ).all()
    ) if picked else {}  # fmt: skip
    reasons: Counter[str] = Counter()
    for event_id, job_id in picked.items():
        text = (reason_of(data.get(event_id)) or errors[job_id] or "").strip()
        reasons[text.splitlines()[-1][:160] if text else "no reason given"] += 1
    return {"failures_recent": int(count), "top_reasons": reasons.most_common(3)}


def site_cards(conn: Connection, principal: Principal, now: datetime) -> list[dict[str, Any]]:
    """One card per site: health light, heartbeat age, pilots, backlog, jobs finished in the last hour."""
    owned = sites.c.owner_id == principal.user_id
    rows = conn.execute(
        sa.select(sites.c.id, sites.c.name, sites.c.last_heartbeat, sites.c.status)
        .where(owned)
        .order_by(sites.c.name)
    ).all()
    pilots: dict[tuple[int, str], int] = {
        (r.site_id, r.state): int(r.n)
        for r in conn.execute(
            sa.select(batch_jobs.c.site_id, batch_jobs.c.state, sa.func.count().label("n"))
            .where(batch_jobs.c.owner_id == principal.user_id, batch_jobs.c.state.in_(["queued", "running"]))
            .group_by(batch_jobs.c.site_id, batch_jobs.c.state)
        )
    }
    waiting = [s.value for s in (S.READY, S.STAGED_IN, S.PREPROCESSED, S.RESTART_READY)]
    backlog: dict[int, int] = dict(
        conn.execute(
            sa.select(jobs.c.site_id, sa.func.count())
            .where(jobs.c.owner_id == principal.user_id, jobs.c.state.in_(waiting))
            .group_by(jobs.c.site_id)
        ).all()
    )
    running: dict[int, int] = dict(
        conn.execute(
            sa.select(jobs.c.site_id, sa.func.count())
            .where(jobs.c.owner_id == principal.user_id, jobs.c.state == S.RUNNING.value)
            .group_by(jobs.c.site_id)
        ).all()
    )
    a = activity_minutes.c
    per_hour: Counter[int] = Counter()
    failed_hour: Counter[int] = Counter()
    for site_id, state, n in conn.execute(
        sa.select(a.site_id, a.to_state, sa.func.sum(a.count))
        .where(
            a.owner_id == principal.user_id,
            a.to_state.in_([S.JOB_FINISHED.value, *FAILED]),
            a.minute >= window_start(now, 1.0),
        )
        .group_by(a.site_id, a.to_state)
    ):
        (per_hour if state == S.JOB_FINISHED.value else failed_hour)[site_id] += int(n)
    cards = []
    for row in rows:
        beat = _utc(row.last_heartbeat)
        age = (now - beat).total_seconds() if beat is not None else None
        health = (row.status or {}).get("health") if isinstance(row.status, dict) else None
        if isinstance(health, dict):
            health = health.get("state")
        if health in ("down", "draining"):
            light = "bad" if health == "down" else "warn"
        elif age is None:
            light = "unknown"
        else:
            light = "ok" if age <= HEALTHY_HEARTBEAT_S else "warn" if age <= STALE_HEARTBEAT_S else "bad"
        cards.append({
            "id": row.id, "name": row.name, "light": light, "health": health, "heartbeat_age": age,
            "pilots_queued": pilots.get((row.id, "queued"), 0),
            "pilots_running": pilots.get((row.id, "running"), 0),
            "backlog": int(backlog.get(row.id, 0)), "running": int(running.get(row.id, 0)),
            "finished_hour": int(per_hour.get(row.id, 0)), "failed_hour": int(failed_hour.get(row.id, 0)),
        })  # fmt: skip
    return cards
