"""Live updates: the caller's events as server-sent events, woken by the changes themselves.

A page opens ``/ui/live/events?after=<event id>`` (the newest event when it was rendered). The stream
reads the caller's events after its cursor whenever the service announces a change of the caller's jobs
(the same in-process / LISTEN-NOTIFY wake-ups as the long-polls; no polling), and sends them in batches:
at most one message per ``BATCH_INTERVAL_S`` and ``MAX_BATCH`` events, so at 1,000 events/s a page
receives ten messages a second and applies each in one animation frame. Each message carries the id of
its last event, so a browser that reconnects (``Last-Event-ID``) resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from beambridge.server.console.queries import reason_of
from beambridge.server.console.web import PageError, User, context_of
from beambridge.server.db.tables import events
from beambridge.server.json_body import JsonRoute

router = APIRouter(include_in_schema=False, route_class=JsonRoute)

BATCH_INTERVAL_S = 0.1
MAX_BATCH = 2000
KEEPALIVE_S = 15.0
STREAM_LIFETIME_S = 300.0
"""A stream ends after this long and the browser reconnects from its cursor (frees server slots held by
forgotten tabs; lets a rolling restart drain)."""
MAX_STREAMS_PER_USER = 16


class StreamSlots:
    """How many live streams each user has open in this process."""

    def __init__(self) -> None:
        self.open: dict[int, int] = {}

    def take(self, user_id: int) -> bool:
        if self.open.get(user_id, 0) >= MAX_STREAMS_PER_USER:
            return False
        self.open[user_id] = self.open.get(user_id, 0) + 1
        return True

    def give_back(self, user_id: int) -> None:
        left = self.open.get(user_id, 1) - 1
        if left:
            self.open[user_id] = left
        else:
            self.open.pop(user_id, None)

    @property
    def total(self) -> int:
        return sum(self.open.values())


def latest_event_id(conn: Any, user_id: int) -> int:
    """The caller's newest event id (the cursor a freshly rendered page starts from)."""
    newest = conn.execute(sa.select(sa.func.max(events.c.id)).where(events.c.owner_id == user_id)).scalar()
    return int(newest or 0)


def _stamp(value: datetime) -> str:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def read_batch(conn: Any, user_id: int, after: int, limit: int = MAX_BATCH) -> list[dict[str, Any]]:
    """The caller's events after ``after``, oldest first, as the compact dicts the pages apply."""
    statement = (
        sa.select(
            events.c.id, events.c.job_id, events.c.from_state, events.c.to_state, events.c.timestamp,
            events.c.data,
        )
        .where(events.c.owner_id == user_id, events.c.id > after)
        .order_by(events.c.id)
        .limit(limit)
    )  # fmt: skip
    return [
        {
            "id": row.id,
            "job_id": row.job_id,
            "from": row.from_state,
            "to": row.to_state,
            "at": _stamp(row.timestamp),
            "reason": reason_of(row.data),
        }
        for row in conn.execute(statement)
    ]


def _cursor(request: Request) -> int:
    raw = request.headers.get("last-event-id") or request.query_params.get("after") or "0"
    try:
        value = int(raw)
    except ValueError:
        raise PageError(422, f"cursor {raw!r} is not a whole number") from None
    if not 0 <= value < 2**63:
        raise PageError(422, "cursor out of range")
    return value


@router.get("/ui/live/events")
async def live_events(request: Request, user: User) -> StreamingResponse:
    """The caller's events from the cursor on, as ``text/event-stream``."""
    ctx = context_of(request)
    after = _cursor(request)
    slots: StreamSlots = request.app.state.console_streams
    metrics = request.app.state.metrics

    def read(cursor: int) -> list[dict[str, Any]]:
        with ctx.db.read() as conn:
            return read_batch(conn, user.user_id, cursor)

    async def stream() -> AsyncIterator[bytes]:
        # The slot is taken here, not in the handler: a generator that never starts never gives one back.
        if not slots.take(user.user_id):
            refusal = f"too many live pages open (at most {MAX_STREAMS_PER_USER}); close some tabs"
            yield b"retry: 60000\nevent: refused\ndata: %s\n\n" % orjson.dumps(refusal)
            return
        cursor = after
        metrics.console_streams.inc()
        ends_at = time.monotonic() + STREAM_LIFETIME_S
        try:
            yield b"retry: 1000\n\n"
            while time.monotonic() < ends_at:
                armed = ctx.wakeups.arm(("owner", user.user_id))
                batch = await run_in_threadpool(read, cursor)
                if batch:
                    cursor = batch[-1]["id"]
                    yield b"id: %d\nevent: events\ndata: %s\n\n" % (cursor, orjson.dumps(batch))
                    if len(batch) < MAX_BATCH:
                        await asyncio.sleep(BATCH_INTERVAL_S)  # gather what comes next into one message
                    continue
                if not await ctx.wakeups.wait(armed, min(KEEPALIVE_S, ends_at - time.monotonic())):
                    yield b": keep-alive\n\n"
        finally:
            metrics.console_streams.dec()
            slots.give_back(user.user_id)

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)
