"""Cancelling and deleting jobs."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from beambridge.server import audit
from beambridge.server.auth.tokens import Principal
from beambridge.server.db.chunks import chunked, id_in
from beambridge.server.db.tables import events, job_parents, jobs
from beambridge.server.errors import ConflictError, NotFoundError
from beambridge.server.jobs.lifecycle import Outcome, TransitionRequest, apply_transitions, lock_jobs
from beambridge.server.placement.shared import hand_over
from beambridge.states import TERMINAL_STATES, JobState

_TERMINAL = {s.value for s in TERMINAL_STATES}


def _require_all(found: set[int], wanted: list[int]) -> None:
    missing = sorted(set(wanted) - found)
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise NotFoundError(f"job {missing[0]} not found{more}", ids=missing[:1000])


def cancel_jobs(conn: Connection, principal: Principal, ids: list[int], now: datetime) -> Outcome:
    """Move every listed job that has not ended to ``KILLED``; jobs already ended are left as they are."""
    rows = lock_jobs(conn, ids, owner_id=principal.user_id, site_id=principal.site_id)
    _require_all(set(rows), ids)
    requests = [
        TransitionRequest(row.id, JobState.KILLED, {"reason": "cancelled by user"})
        for row in rows.values()
        if row.state not in _TERMINAL
    ]
    return apply_transitions(
        conn, requests, now=now, owner_id=principal.user_id, actor=principal.actor, locked=rows
    )


def delete_jobs(conn: Connection, principal: Principal, ids: list[int], now: datetime) -> int:
    """Delete jobs with their events and transfer items.

    Refused (409) if a job still has a child that has not ended and is not deleted with it: that child
    would wait forever for a parent that no longer exists.
    """
    rows = lock_jobs(conn, ids, owner_id=principal.user_id, site_id=principal.site_id)
    _require_all(set(rows), ids)
    doomed = set(rows)
    for chunk in chunked(sorted(doomed)):
        orphans = conn.execute(
            sa.select(job_parents.c.parent_id, jobs.c.id, jobs.c.state)
            .join(jobs, jobs.c.id == job_parents.c.child_id)
            .where(job_parents.c.parent_id.in_(chunk), jobs.c.state.not_in(_TERMINAL))
        ).all()
        orphans = [o for o in orphans if o.id not in doomed]
        if orphans:
            first = orphans[0]
            raise ConflictError(
                f"job {first.parent_id} has unfinished child job {first.id} ({first.state}); "
                "cancel or delete the children first, or delete them together",
                children=[o.id for o in orphans[:1000]],
            )
    hand_over(conn, doomed)  # a group's shared placement row and event stay with the jobs that stay
    for chunk in chunked(sorted(doomed)):
        conn.execute(events.delete().where(id_in(events.c.job_id, chunk, conn.dialect.name)))
        conn.execute(jobs.delete().where(id_in(jobs.c.id, chunk, conn.dialect.name)))
    # their history goes with them: what is left says who deleted them
    ordered = sorted(doomed)
    target = f"job {ordered[0]}" if len(ordered) == 1 else f"{len(ordered)} jobs"
    audit.record(
        conn,
        owner_id=principal.user_id,
        actor=principal.actor,
        action="job.delete",
        target=target,
        now=now,
        data={"ids": ordered[:1000], "count": len(ordered)},
    )
    return len(doomed)


def delete_events_of_app(conn: Connection, app_id: int) -> None:
    """The event log has no foreign keys: remove the events of an app's jobs before the app goes."""
    conn.execute(
        events.delete().where(events.c.job_id.in_(sa.select(jobs.c.id).where(jobs.c.app_id == app_id)))
    )


def delete_events_of_site(conn: Connection, site_id: int) -> None:
    """The event log has no foreign keys: remove a site's events before the site goes."""
    conn.execute(events.delete().where(events.c.site_id == site_id))
