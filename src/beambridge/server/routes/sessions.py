"""Launcher sessions: open, heartbeat, acquire (long-poll), report, close."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from beambridge.schemas.common import Page
from beambridge.schemas.jobs import BulkResult, Job
from beambridge.schemas.queries import SessionQuery
from beambridge.schemas.sessions import AcquireRequest, Heartbeat, Session, SessionCreate, SessionReport
from beambridge.server.context import utcnow
from beambridge.server.deps import Caller, Ctx
from beambridge.server.dispatch import sessions as dispatch
from beambridge.server.jobs.queries import jobs_response
from beambridge.server.json_body import JsonRoute
from beambridge.server.routes.paging import After, IdPath, Limit, page

router = APIRouter(prefix="/sessions", tags=["sessions"], route_class=JsonRoute)


@router.get("", response_model=Page[Session])
def list_sessions(
    ctx: Ctx,
    caller: Caller,
    after: After = None,
    limit: Limit = 100,
    *,
    filters: Annotated[SessionQuery, Query()],
) -> dict[str, Any]:
    """The caller's sessions."""
    with ctx.db.read() as conn:
        return page(dispatch.list_sessions(conn, caller, filters, after=after, limit=limit), limit)


@router.post("", response_model=Session, status_code=201)
def open_session(ctx: Ctx, caller: Caller, body: SessionCreate) -> dict[str, Any]:
    """Open a session for a launcher."""
    with ctx.db.write() as conn:
        return dispatch.open_session(conn, caller, body, utcnow())


@router.get("/{session_id}", response_model=Session)
def get_session(ctx: Ctx, caller: Caller, session_id: IdPath) -> dict[str, Any]:
    """One session."""
    with ctx.db.read() as conn:
        return dispatch.get_session(conn, caller, session_id)


@router.post("/{session_id}/heartbeat", response_model=Heartbeat)
def heartbeat(ctx: Ctx, caller: Caller, session_id: IdPath) -> dict[str, Any]:
    """Keep the session alive; the answer lists its jobs cancelled meanwhile."""
    with ctx.db.write() as conn:
        return {
            "session_id": session_id,
            "killed_job_ids": dispatch.heartbeat(conn, caller, session_id, utcnow()),
        }


@router.post("/{session_id}/acquire", response_model=list[Job])
async def acquire(
    ctx: Ctx, caller: Caller, session_id: IdPath, body: AcquireRequest, request: Request
) -> Response:
    """Runnable jobs that fit the given resources, locked to this session.

    With ``wait_s`` > 0 and nothing to hand out, waits until a job of the site becomes runnable (woken
    by the change itself, not by polling) or the time is up, and then answers.
    """
    deadline = time.monotonic() + body.wait_s
    site_id: int | None = None
    while True:
        armed = ctx.wakeups.arm(("site", site_id)) if site_id is not None else None
        started = time.perf_counter()
        jobs, site_id = await run_in_threadpool(_acquire_once, ctx, caller, session_id, body)
        request.app.state.metrics.observe_acquire(time.perf_counter() - started, len(jobs))
        remaining = deadline - time.monotonic()
        if jobs or remaining <= 0:
            return jobs_response(jobs)
        if armed is None:  # first pass: now we know the site; arm and look once more
            continue
        await ctx.wakeups.wait(armed, remaining)
        if await request.is_disconnected():
            # Nobody would receive the jobs: leave them for the next launcher instead of locking them to
            # this session until it expires.
            return jobs_response([])


def _acquire_once(
    ctx: Ctx, caller: Caller, session_id: IdPath, body: AcquireRequest
) -> tuple[list[dict[str, Any]], int]:
    with ctx.db.write() as conn:
        return dispatch.acquire(conn, caller, session_id, body, utcnow())


@router.post("/{session_id}/report", response_model=BulkResult)
def report(ctx: Ctx, caller: Caller, session_id: IdPath, body: SessionReport) -> dict[str, Any]:
    """Apply the launcher's observed state changes, all or none."""
    with ctx.db.write() as conn:
        outcome = dispatch.report(conn, caller, session_id, body.reports, utcnow(), batch_id=body.batch_id)
    ctx.wakeups.notify(outcome.wake_keys)
    ids = sorted({r.id for r in body.reports})
    return {"count": len(ids), "ids": ids}


@router.delete("/{session_id}", status_code=204)
def close_session(
    ctx: Ctx,
    caller: Caller,
    session_id: IdPath,
    unreported: Annotated[
        bool,
        Query(
            description="The launcher could not deliver all its reports: a job it held may have started "
            "unseen, so each gets a possible run in its history (as for a lost session)"
        ),
    ] = False,
) -> None:
    """End the session: jobs it held but had not started return to the pool; running ones time out."""
    with ctx.db.write() as conn:
        outcome = dispatch.close_session(conn, caller, session_id, utcnow(), unreported=unreported)
    ctx.wakeups.notify(outcome.wake_keys)
