"""Events: the history of every job's state, one row per transition."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from beambridge.schemas.queries import EventQuery
from beambridge.server.audit import PLACEMENT
from beambridge.server.auth.tokens import Principal
from beambridge.server.db.conditions import column_conditions, time_window
from beambridge.server.db.tables import events, jobs
from beambridge.server.errors import NotFoundError
from beambridge.server.jobs.queries import get_job, tags_contain
from beambridge.server.placement.shared import group_events_of, is_group_event, job_view


def _visible(principal: Principal) -> list[sa.ColumnElement[bool]]:
    where: list[sa.ColumnElement[bool]] = [events.c.owner_id == principal.user_id]
    if principal.site_id is not None:
        where.append(events.c.site_id == principal.site_id)
    return where


def events_query(
    principal: Principal,
    query: EventQuery,
    *,
    after: int | None,
    limit: int,
    newest_first: bool = False,
    dialect: str = "sqlite",
) -> sa.Select[Any]:
    """The statement for one page of the caller's events matching ``query``, in id order (descending if
    ``newest_first``) after ``after`` (built once, run again by a long-poll until something matches)."""
    where = _visible(principal)
    where.extend(column_conditions(events, query, handled={"since", "until", "tag", "actor"}))
    if query.actor:
        where.append(events.c.actor.startswith(query.actor, autoescape=True))
    where.extend(time_window(events.c.timestamp, query.since, query.until))
    if query.tag:
        tagged = sa.select(jobs.c.id).where(
            jobs.c.owner_id == principal.user_id, tags_contain(query.tags, dialect)
        )
        where.append(events.c.job_id.in_(tagged))
    if after is not None:
        where.append(events.c.id < after if newest_first else events.c.id > after)
    order = events.c.id.desc() if newest_first else events.c.id
    return sa.select(events).where(*where).order_by(order).limit(limit)


def read_events(conn: Connection, statement: sa.Select[Any]) -> list[dict[str, Any]]:
    """The rows of an :func:`events_query`."""
    return [dict(r._mapping) for r in conn.execute(statement)]


def latest_event_id(conn: Connection, principal: Principal) -> int:
    """The id of the caller's newest event, 0 if none."""
    newest = conn.execute(sa.select(sa.func.max(events.c.id)).where(*_visible(principal))).scalar()
    return int(newest or 0)


def job_history(conn: Connection, principal: Principal, job_id: int) -> list[dict[str, Any]]:
    """Every state change of one of the caller's jobs, oldest first (404 if the job is not theirs)."""
    if get_job(conn, principal, job_id) is None:
        raise NotFoundError(f"job {job_id} not found")
    rows = conn.execute(sa.select(events).where(events.c.job_id == job_id).order_by(events.c.id))
    out = []
    for row in rows:
        event = dict(row._mapping)
        if event["actor"] == PLACEMENT and is_group_event(event["data"]):  # a group's first job (or heir)
            event["data"] = job_view(event["data"], job_id) or event["data"]
        out.append(event)
    lead = conn.execute(sa.select(jobs.c.placed_with).where(jobs.c.id == job_id)).scalar()
    if lead is not None and lead != job_id:  # placed with a group: its decision is on the group's first job
        for row in group_events_of(conn, lead):
            data = job_view(row.data, job_id)
            if data is not None:
                out.append({**row._mapping, "job_id": job_id, "data": data})
        out.sort(key=lambda event: event["id"])
    return out
