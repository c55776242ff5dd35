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
from beambridge.server import events
from beambridge.server.context import ServerContext
from beambridge.server.deps import Caller, Ctx
from beambridge.server.json_body import JsonRoute
from beambridge.server.routes.paging import After, Limit, Order, page

router = APIRouter(prefix="/events", tags=["events"], route_class=JsonRoute)


@router.get("", response_model=Page[Event])
async def list_events(
    ctx: Ctx,
    caller: Caller,
    after: After = None,
    limit: Limit = 100,
    order: Order = "asc",
    *,
    filters: Annotated[EventQuery, Query()],
    wait_s: Annotated[float, Query(ge=0, le=60, description="Long-poll: wait this long for a new event")] = 0,
) -> dict[str, Any]:
    """Events in id order (``order=desc``: newest first). With ``wait_s``, an empty page waits for the next
    matching event."""
    statement = events.events_query(
        caller,
        filters,
        after=after,
        limit=limit,
        newest_first=order == "desc",
        dialect=ctx.db.engine.dialect.name,
    )
    if wait_s <= 0:
        return page(await run_in_threadpool(_read, ctx, statement), limit)
    with ctx.long_polls.hold(caller.user_id):
        deadline = time.monotonic() + wait_s
        while True:
            armed = ctx.wakeups.arm(("owner", caller.user_id))
            rows = await run_in_threadpool(_read, ctx, statement)
            remaining = deadline - time.monotonic()
            if rows or remaining <= 0:
                return page(rows, limit)
            await ctx.wakeups.wait(armed, remaining)


@router.get("/latest")
def latest_event(ctx: Ctx, caller: Caller) -> dict[str, int]:
    """The id of the caller's newest event (0 if none): a cursor to follow events "from now on"."""
    with ctx.db.read() as conn:
        return {"id": events.latest_event_id(conn, caller)}


def _read(ctx: ServerContext, statement: sa.Select[Any]) -> list[dict[str, Any]]:
    with ctx.db.read() as conn:
        return events.read_events(conn, statement)
