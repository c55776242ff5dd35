"""Events: the history of every job's state, with long-poll for what happens next."""

from __future__ import annotations

import time
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from beambridge.schemas.common import Page
from beambridge.schemas.events import Event
from beambridge.schemas.queries import EventQuery
from beambridge.server.context import ServerContext
from beambridge.server.db.conditions import time_window
from beambridge.server.db.tables import events
from beambridge.server.deps import Caller, Ctx
from beambridge.server.routes.paging import After, Limit, page

router = APIRouter(prefix="/events", tags=["events"])


@router.get("", response_model=Page[Event])
async def list_events(
    ctx: Ctx,
    caller: Caller,
    after: After = None,
    limit: Limit = 100,
    *,
    filters: Annotated[EventQuery, Query()],
    wait_s: Annotated[float, Query(ge=0, le=60, description="Long-poll: wait this long for a new event")] = 0,
) -> dict[str, Any]:
    """Events in id order. With ``wait_s``, an empty page waits for the next matching event."""
    where: list[sa.ColumnElement[bool]] = [events.c.owner_id == caller.user_id]
    if caller.site_id is not None:
        where.append(events.c.site_id == caller.site_id)
    if filters.job_id:
        where.append(events.c.job_id.in_(filters.job_id))
    if filters.site_id is not None:
        where.append(events.c.site_id == filters.site_id)
    if filters.from_state:
        where.append(events.c.from_state.in_([s.value for s in filters.from_state]))
    if filters.to_state:
        where.append(events.c.to_state.in_([s.value for s in filters.to_state]))
    where.extend(time_window(events.c.timestamp, filters.since, filters.until))
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
