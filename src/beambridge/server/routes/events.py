"""Events: the history of every job's state, with long-poll for what happens next."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from beambridge.schemas.common import Page, PositiveId
from beambridge.schemas.events import Event
from beambridge.server.context import ServerContext
from beambridge.server.db.tables import events
from beambridge.server.deps import Caller, Ctx
from beambridge.server.routes.paging import After, Limit, page
from beambridge.states import JobState

router = APIRouter(prefix="/events", tags=["events"])


@router.get("", response_model=Page[Event])
async def list_events(
    ctx: Ctx,
    caller: Caller,
    after: After = None,
    limit: Limit = 100,
    job_id: Annotated[list[PositiveId], Query(max_length=5000)] = [],  # noqa: B006
    site_id: Annotated[PositiveId | None, Query()] = None,
    from_state: Annotated[list[JobState], Query()] = [],  # noqa: B006
    to_state: Annotated[list[JobState], Query()] = [],  # noqa: B006
    since: datetime | None = None,
    until: datetime | None = None,
    wait_s: Annotated[float, Query(ge=0, le=60, description="Long-poll: wait this long for a new event")] = 0,
) -> dict[str, Any]:
    """Events in id order. With ``wait_s``, an empty page waits for the next matching event."""
    where: list[sa.ColumnElement[bool]] = [events.c.owner_id == caller.user_id]
    if caller.site_id is not None:
        where.append(events.c.site_id == caller.site_id)
    if job_id:
        where.append(events.c.job_id.in_(job_id))
    if site_id is not None:
        where.append(events.c.site_id == site_id)
    if from_state:
        where.append(events.c.from_state.in_([s.value for s in from_state]))
    if to_state:
        where.append(events.c.to_state.in_([s.value for s in to_state]))
    if since is not None:
        where.append(events.c.timestamp >= since)
    if until is not None:
        where.append(events.c.timestamp < until)
    if after is not None:
        where.append(events.c.id > after)
    query = sa.select(events).where(*where).order_by(events.c.id).limit(limit)
    deadline = time.monotonic() + wait_s
    while True:
        armed = ctx.wakeups.arm(("owner", caller.user_id))
        rows = await run_in_threadpool(_fetch, ctx, query)
        remaining = deadline - time.monotonic()
        if rows or remaining <= 0:
            return page(rows, limit)
        await ctx.wakeups.wait(armed, remaining)


@router.get("/latest")
def latest_event(ctx: Ctx, caller: Caller) -> dict[str, int]:
    """The id of the caller's newest event (0 if none): a cursor to follow events "from now on"."""
    where = [events.c.owner_id == caller.user_id]
    if caller.site_id is not None:
        where.append(events.c.site_id == caller.site_id)
    with ctx.db.read() as conn:
        newest = conn.execute(sa.select(sa.func.max(events.c.id)).where(*where)).scalar()
    return {"id": int(newest or 0)}


def _fetch(ctx: ServerContext, query: sa.Select[Any]) -> list[dict[str, Any]]:
    with ctx.db.read() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]
