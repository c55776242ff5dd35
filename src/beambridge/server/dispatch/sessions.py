"""Launcher sessions: open, list, heartbeat, acquire, report, close, and expire after silence."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from beambridge.packing import fit_in_order
from beambridge.schemas.batch_jobs import BatchJobState
from beambridge.schemas.queries import SessionQuery
from beambridge.schemas.sessions import AcquireRequest, JobReport, SessionCreate
from beambridge.server.audit import SYSTEM, launcher_actor
from beambridge.server.auth.tokens import Principal
from beambridge.server.db.chunks import chunked, id_in
from beambridge.server.db.conditions import column_conditions
from beambridge.server.db.tables import apps, batch_jobs, jobs, run_stops, sessions, sites
from beambridge.server.errors import ConflictError, InvalidRequestError, NotFoundError
from beambridge.server.jobs import hedges
from beambridge.server.jobs.lifecycle import Outcome, TransitionRequest, apply_transitions, lock_jobs
from beambridge.server.jobs.queries import JOB_COLUMNS, tags_contain
from beambridge.server.ownership import get_owned, list_owned
from beambridge.server.wakeups import WakeKey
from beambridge.states import ALLOWED_TRANSITIONS, RUNNABLE_STATES, JobState

S = JobState
_RUNNABLE = [s.value for s in RUNNABLE_STATES]


def list_sessions(
    conn: Connection, principal: Principal, query: SessionQuery, *, after: int | None, limit: int
) -> list[dict[str, Any]]:
    """One page of the caller's sessions matching ``query``."""
    where = column_conditions(sessions, query, handled={"active"})
    if query.active is not None:
        where.append(sessions.c.expired_at.is_(None) if query.active else sessions.c.expired_at.is_not(None))
    return list_owned(conn, sessions, principal, where, after=after, limit=limit)


def get_session(conn: Connection, principal: Principal, session_id: int) -> dict[str, Any]:
    """One of the caller's sessions, expired or not (404 otherwise)."""
    return get_owned(conn, sessions, principal, session_id, "session")


def open_session(
    conn: Connection, principal: Principal, request: SessionCreate, now: datetime
) -> dict[str, Any]:
    """A new session on one of the caller's sites, tied to one of its batch jobs if given (422 if that
    batch job belongs to another site)."""
    get_owned(conn, sites, principal, request.site_id, "site")
    if request.batch_job_id is not None:
        batch = get_owned(conn, batch_jobs, principal, request.batch_job_id, "batch job")
        if batch["site_id"] != request.site_id:
            raise InvalidRequestError(
                f"batch job {request.batch_job_id} belongs to site {batch['site_id']}, not {request.site_id}"
            )
    values = {**request.model_dump(), "owner_id": principal.user_id, "created_at": now, "heartbeat_at": now}
    new_id = conn.execute(sessions.insert().values(values).returning(sessions.c.id)).scalar_one()
    return get_session(conn, principal, new_id)


def load_session(conn: Connection, principal: Principal, session_id: int, *, lock: bool = False) -> Any:
    """A session the caller owns, with its site's name (``site_name``); 404 otherwise, 409 if it has
    expired."""
    query = (
        sa.select(sessions, sites.c.name.label("site_name"))
        .join(sites, sites.c.id == sessions.c.site_id)
        .where(sessions.c.id == session_id, sessions.c.owner_id == principal.user_id)
    )
    if principal.site_id is not None:
        query = query.where(sessions.c.site_id == principal.site_id)
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update(of=sessions)
    row = conn.execute(query).first()
    if row is None:
        raise NotFoundError(f"session {session_id} not found")
    if row.expired_at is not None:
        raise ConflictError(
            f"session {session_id} expired at {row.expired_at:%Y-%m-%d %H:%M:%S} UTC; open a new session",
            expired=True,
        )
    return row


def touch(conn: Connection, session_id: int, now: datetime) -> None:
    """Record a sign of life."""
    conn.execute(sessions.update().where(sessions.c.id == session_id).values(heartbeat_at=now))


def killed_jobs(conn: Connection, session_id: int) -> list[int]:
    """Jobs this session held that were cancelled, and runs of jobs that adopted a hedged copy's run:
    the launcher must stop them."""
    query = sa.select(jobs.c.id).where(jobs.c.session_id == session_id, jobs.c.state == S.KILLED.value)
    return sorted({*conn.execute(query).scalars(), *hedges.stopped_runs(conn, session_id)})


def heartbeat(conn: Connection, principal: Principal, session_id: int, now: datetime) -> list[int]:
    """Keep a live session alive; returns the ids of its jobs cancelled meanwhile (to be killed)."""
    load_session(conn, principal, session_id)
    touch(conn, session_id, now)
    return killed_jobs(conn, session_id)


def close_session(
    conn: Connection, principal: Principal, session_id: int, now: datetime, *, unreported: bool = False
) -> Outcome:
    """End a live session: its unstarted jobs return to the pool, running ones time out. A launcher that
    could not deliver all its reports says ``unreported``: its session ends as a lost one would."""
    load_session(conn, principal, session_id, lock=True)
    reason = f"session {session_id} closed" + (" with reports it could not deliver" if unreported else "")
    return end_sessions(conn, [session_id], reason, now, lost=unreported)


def time_limit_conditions(request: AcquireRequest) -> list[sa.ColumnElement[bool]]:
    """Which wall-time limits a launcher takes: those that fit in its time left, and no limit (0) only if
    it says so; a launcher near the end of its allocation refuses jobs that might run for ever."""
    limit = jobs.c.wall_time_limit_min
    bounded = limit > 0
    if request.time_left_min is not None:
        bounded = sa.and_(bounded, limit <= request.time_left_min)
    if request.unlimited_jobs:
        return [] if request.time_left_min is None else [sa.or_(bounded, limit == 0)]
    return [bounded]


def runnable_app_ids(conn: Connection, site_id: int, advertised: dict[str, str | None]) -> list[int]:
    """The site's apps a launcher can run: those it names, with the registered version where both the
    app and the launcher know one (a launcher with another copy of an app's file does not get its jobs)."""
    if not advertised:
        return []
    rows = conn.execute(
        sa.select(apps.c.id, apps.c.name, apps.c.version).where(
            apps.c.site_id == site_id, apps.c.name.in_(list(advertised))
        )
    ).all()
    return [
        row.id
        for row in rows
        if row.version is None or advertised[row.name] is None or advertised[row.name] == row.version
    ]


def acquire(
    conn: Connection, principal: Principal, session_id: int, request: AcquireRequest, now: datetime
) -> tuple[list[dict[str, Any]], int]:
    """Lock runnable jobs that fit the launcher's free resources to the session, best priority first.

    PostgreSQL: ``FOR UPDATE SKIP LOCKED``, so concurrent launchers skip each other's candidates.
    SQLite: the caller's write transaction (``BEGIN IMMEDIATE``) already excludes other writers.
    A launcher that names the apps it can run (``request.apps``) gets jobs of those apps only.
    Returns the jobs and the session's site (whose wake-ups a long-polling caller waits for).
    """
    session = load_session(conn, principal, session_id, lock=True)
    touch(conn, session_id, now)
    query = sa.select(*JOB_COLUMNS).where(
        jobs.c.site_id == session.site_id,
        jobs.c.state.in_(_RUNNABLE),
        jobs.c.session_id.is_(None),
        jobs.c.awaiting_placement.is_(False),
    )
    if request.apps is not None:
        named = sorted(request.apps)
        if session.apps != named:  # what ``job ls`` reads to say a job's app is on no running pilot
            conn.execute(sessions.update().where(sessions.c.id == session_id).values(apps=named))
        app_ids = runnable_app_ids(conn, session.site_id, request.apps)
        if not app_ids:
            return [], int(session.site_id)
        query = query.where(jobs.c.app_id.in_(app_ids))
    if request.filter_tags:
        query = query.where(tags_contain(request.filter_tags, conn.dialect.name))
    if request.serial_only:
        query = query.where(jobs.c.num_nodes == 1, jobs.c.ranks_per_node == 1)
    query = query.where(*time_limit_conditions(request))
    if request.free_nodes is not None:
        query = query.where(jobs.c.num_nodes <= len(request.free_nodes))
    scan = request.max_jobs if request.free_nodes is None else request.max_jobs + 256
    query = query.order_by(jobs.c.priority.desc(), jobs.c.id).limit(scan)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(of=jobs, skip_locked=True)
    rows = conn.execute(query).all()
    if request.free_nodes is None:
        fitting = rows[: request.max_jobs]
    else:
        fitting = fit_in_order(rows, request.free_nodes, request.max_jobs)
    chosen = [dict(row._mapping) for row in fitting]
    ids = [row["id"] for row in chosen]
    for chunk in chunked(ids):
        conn.execute(
            jobs.update()
            .where(id_in(jobs.c.id, chunk, conn.dialect.name))
            .values(session_id=session_id, batch_job_id=session.batch_job_id, updated_at=now)
        )
    out = [
        {**row, "session_id": session_id, "batch_job_id": session.batch_job_id, "updated_at": now}
        for row in chosen
    ]
    return out, int(session.site_id)


def report(
    conn: Connection,
    principal: Principal,
    session_id: int,
    reports: list[JobReport],
    now: datetime,
    *,
    batch_id: str | None = None,
) -> Outcome:
    """Apply a launcher's state changes; all refused if any job is not held by this session.

    A batch whose ``batch_id`` is the last one this session applied was sent again after its answer was
    lost: it is answered without being applied twice (the launcher sends one batch at a time, in order).
    """
    session = load_session(conn, principal, session_id, lock=True)
    touch(conn, session_id, now)
    if batch_id is not None and session.last_report_batch == batch_id:
        return Outcome()
    if batch_id is not None:
        conn.execute(sessions.update().where(sessions.c.id == session_id).values(last_report_batch=batch_id))
    rows = lock_jobs(
        conn,
        [r.id for r in reports],
        owner_id=principal.user_id,
        site_id=principal.site_id,
        with_partners=any(r.state in hedges.RESOLVING_STATES for r in reports),
    )
    refused: list[dict[str, Any]] = []
    for item in reports:
        row = rows.get(item.id)
        if row is None:
            refused.append({"id": item.id, "reason": "no such job"})
            continue
        state = S(row.state)
        entry = {"id": item.id, "state": state, "allowed": sorted(ALLOWED_TRANSITIONS[state])}
        if row.session_id != session_id:
            holder = f"session {row.session_id}" if row.session_id else "no session"
            refused.append({**entry, "reason": f"job is held by {holder} (state {state})"})
        elif state is S.KILLED:
            refused.append({**entry, "reason": "job was killed"})
    if refused:
        first = refused[0]
        raise ConflictError(
            f"{len(refused)} report(s) refused, nothing changed; job {first['id']}: {first['reason']}",
            refused=refused[:1000],
        )
    requests = []
    for item in reports:
        fields: dict[str, Any] = {}
        if item.return_code is not None:
            fields["return_code"] = item.return_code
        if item.result is not None:
            fields["result"] = item.result
        if item.error is not None:
            fields["error"] = item.error
        requests.append(TransitionRequest(item.id, item.state, dict(item.state_data), item.at, fields))
    actor = launcher_actor(session.site_name, session_id)
    return apply_transitions(conn, requests, now=now, owner_id=principal.user_id, actor=actor, locked=rows)


def end_sessions(
    conn: Connection, session_ids: list[int], reason: str, now: datetime, *, lost: bool = True
) -> Outcome:
    """End sessions: running jobs they held time out; what they held but had not reported as started
    goes back to the pool.

    A *lost* session (silent, or its batch job ended) may have started a job in the moment before its
    RUNNING report would have gone out, so such a job may run again: its history then shows that possible
    run (``RUNNING`` marked ``unconfirmed``, then ``RUN_TIMEOUT``) and it follows the timeout path like any
    lost run. A session its launcher *closed* (after stopping its jobs and sending its reports) started
    nothing it did not report: those jobs go back as they were.
    """
    outcome = Outcome()
    if not session_ids:
        return outcome
    wake: set[WakeKey] = set()
    conn.execute(sessions.update().where(sessions.c.id.in_(session_ids)).values(expired_at=now))
    conn.execute(run_stops.delete().where(run_stops.c.session_id.in_(session_ids)))
    held = conn.execute(
        sa.select(jobs.c.id, jobs.c.site_id, jobs.c.state, jobs.c.session_id).where(
            jobs.c.session_id.in_(session_ids)
        )
    ).all()
    unreported = [row for row in held if row.state in _RUNNABLE]
    requests: list[TransitionRequest] = []
    if lost:
        for row in unreported:
            handed = {
                "reason": f"handed to launcher session {row.session_id}, which was lost before it reported "
                "the job: it may have started",
                "unconfirmed": True,
            }
            requests.append(TransitionRequest(row.id, S.RUNNING, handed))
            requests.append(TransitionRequest(row.id, S.RUN_TIMEOUT, {"reason": reason}))
    else:
        release = [row.id for row in unreported]
        for chunk in chunked(release):
            conn.execute(jobs.update().where(jobs.c.id.in_(chunk)).values(session_id=None, updated_at=now))
        wake |= {("site", row.site_id) for row in unreported}
    running = [row.id for row in held if row.state == S.RUNNING.value]
    requests += [TransitionRequest(job_id, S.RUN_TIMEOUT, {"reason": reason}) for job_id in running]
    outcome.merge(apply_transitions(conn, requests, now=now, owner_id=None, actor=SYSTEM))
    outcome.wake_keys |= wake
    return outcome


def expire_silent_sessions(
    conn: Connection, timeout_s: float, now: datetime, up_since: datetime | None = None
) -> Outcome:
    """End every session silent for longer than ``timeout_s``, or whose batch job has finished.

    Silence counts only while the service is up (``up_since``): after a restart, launchers that could not
    reach it meanwhile get ``timeout_s`` to heartbeat again before their jobs are timed out.
    """
    cutoff = now - timedelta(seconds=timeout_s)
    silent = sa.select(sessions.c.id).where(sessions.c.expired_at.is_(None), sessions.c.heartbeat_at < cutoff)
    if up_since is not None and up_since > cutoff:
        silent = silent.where(sa.false())
    finished = (
        sa.select(sessions.c.id)
        .join(batch_jobs, batch_jobs.c.id == sessions.c.batch_job_id)
        .where(sessions.c.expired_at.is_(None), batch_jobs.c.state == BatchJobState.FINISHED.value)
    )
    if conn.dialect.name == "postgresql":
        silent = silent.with_for_update(skip_locked=True)
        finished = finished.with_for_update(of=sessions, skip_locked=True)
    outcome = end_sessions(
        conn,
        list(conn.execute(silent).scalars()),
        f"launcher session expired: no heartbeat for {timeout_s:g} s",
        now,
    )
    outcome.merge(end_sessions(conn, list(conn.execute(finished).scalars()), "batch job finished", now))
    return outcome
