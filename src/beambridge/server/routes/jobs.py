"""Jobs: bulk create, filter, update, cancel, delete, and each job's history."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response

from beambridge.schemas.common import MAX_BULK_SIZE, Page, PositiveId
from beambridge.schemas.events import Event
from beambridge.schemas.jobs import (
    TAG_KEY_PATTERN,
    BulkResult,
    Job,
    JobBulkUpdate,
    JobCreate,
    JobIds,
    JobRetry,
    JobSummary,
    JobUpdate,
    RetryResult,
)
from beambridge.schemas.queries import JobQuery
from beambridge.server import events
from beambridge.server.auth.tokens import Principal
from beambridge.server.context import ServerContext, utcnow
from beambridge.server.deps import Caller, Ctx
from beambridge.server.errors import NotFoundError
from beambridge.server.jobs.create import create_jobs
from beambridge.server.jobs.queries import (
    count_jobs,
    get_job,
    get_job_statement,
    job_response,
    jobs_page_response,
    jobs_response,
    list_jobs,
    summarize_jobs,
)
from beambridge.server.jobs.removal import cancel_jobs, delete_jobs
from beambridge.server.jobs.retry import retry_jobs
from beambridge.server.jobs.updates import update_jobs
from beambridge.server.json_body import JsonRoute
from beambridge.server.routes.paging import After, Limit, Order

router = APIRouter(prefix="/jobs", tags=["jobs"], route_class=JsonRoute)


Filters = Annotated[JobQuery, Query()]
"""The job filters, read from the query string (each field of ``JobQuery`` is one parameter)."""


@router.get("", response_model=Page[Job])
def list_jobs_route(
    ctx: Ctx,
    caller: Caller,
    after: After = None,
    limit: Limit = 100,
    order: Order = "asc",
    *,
    filters: Filters,
) -> Response:
    """Jobs matching every given filter, in id order (``order=desc``: newest first), one page at a time."""
    newest_first = order == "desc"
    with ctx.db.read() as conn:
        rows = list_jobs(conn, caller, filters, after=after, limit=limit, newest_first=newest_first)
    return jobs_page_response(rows, limit)


@router.get("/count")
def count_jobs_route(ctx: Ctx, caller: Caller, filters: Filters) -> dict[str, int]:
    """How many jobs match the filters."""
    with ctx.db.read() as conn:
        return {"count": count_jobs(conn, caller, filters)}


@router.get("/summary", response_model=JobSummary)
def summarize_jobs_route(
    ctx: Ctx,
    caller: Caller,
    filters: Filters,
    by_tag: Annotated[
        str | None,
        Query(pattern=TAG_KEY_PATTERN, description="Count per value of this tag (jobs without it: null)"),
    ] = None,
    max_groups: Annotated[int, Query(ge=1, le=10_000, description="At most this many groups")] = 1000,
) -> dict[str, Any]:
    """Counts by state of the jobs matching the filters, per value of one tag if asked (newest first)."""
    with ctx.db.read() as conn:
        return summarize_jobs(conn, caller, filters, by_tag=by_tag, max_groups=max_groups)


@router.post("", response_model=list[Job], status_code=201)
def create_jobs_route(
    ctx: Ctx, caller: Caller, body: Annotated[list[JobCreate], Body(min_length=1, max_length=MAX_BULK_SIZE)]
) -> Response:
    """Create jobs in bulk (up to 50,000 per call), all or none."""
    with ctx.db.write() as conn:
        rows, wake = create_jobs(conn, caller, body, utcnow(), ctx.placement, quotas=ctx.settings.job_quotas)
    ctx.wakeups.notify(wake)
    # The rows were built from validated input, so they are serialised as they are: validating thousands
    # of them again as `Job` would cost more than the insert.
    return jobs_response(rows, status_code=201)


@router.patch("", response_model=BulkResult)
def update_jobs_route(
    ctx: Ctx,
    caller: Caller,
    body: Annotated[list[JobBulkUpdate], Body(min_length=1, max_length=MAX_BULK_SIZE)],
) -> dict[str, Any]:
    """Update jobs in bulk, all or none; state changes are validated and recorded as events."""
    return _apply_updates(ctx, caller, [(item.id, item) for item in body])


def _apply_updates(
    ctx: ServerContext, caller: Principal, updates: list[tuple[int, JobUpdate]]
) -> dict[str, Any]:
    with ctx.db.write() as conn:
        outcome = update_jobs(conn, caller, updates, utcnow())
    ctx.wakeups.notify(outcome.wake_keys)
    ids = sorted(set(outcome.job_ids))
    return {"count": len(ids), "ids": ids}


@router.post("/cancel", response_model=BulkResult)
def cancel_jobs_route(ctx: Ctx, caller: Caller, body: JobIds) -> dict[str, Any]:
    """Cancel jobs (→ KILLED); jobs that already ended are left alone and not counted."""
    with ctx.db.write() as conn:
        outcome = cancel_jobs(conn, caller, body.ids, utcnow())
    ctx.wakeups.notify(outcome.wake_keys)
    killed = sorted(set(outcome.job_ids) & set(body.ids))
    return {"count": len(killed), "ids": killed}


@router.post("/retry", response_model=RetryResult)
def retry_jobs_route(ctx: Ctx, caller: Caller, body: JobRetry) -> dict[str, Any]:
    """Send FAILED or KILLED jobs back to run (by ids, tags and/or state), each with an event naming who
    asked; children that failed because of them go back with them. All or none."""
    with ctx.db.write() as conn:
        result, outcome = retry_jobs(conn, caller, body, utcnow())
    ctx.wakeups.notify(outcome.wake_keys)
    return result


@router.post("/delete", response_model=BulkResult)
def delete_jobs_route(ctx: Ctx, caller: Caller, body: JobIds) -> dict[str, Any]:
    """Delete jobs with their history, all or none."""
    with ctx.db.write() as conn:
        count = delete_jobs(conn, caller, body.ids, utcnow())
    return {"count": count, "ids": sorted(set(body.ids))}


@router.get("/{job_id}", response_model=Job)
async def get_job_route(ctx: Ctx, caller: Caller, job_id: PositiveId) -> Response:
    """One job."""
    job = await ctx.reader.first(*get_job_statement(caller, job_id))
    if job is None:
        raise NotFoundError(f"job {job_id} not found")
    return job_response(job)


@router.patch("/{job_id}", response_model=Job)
def update_job_route(ctx: Ctx, caller: Caller, job_id: PositiveId, body: JobUpdate) -> Response:
    """Update one job."""
    _apply_updates(ctx, caller, [(job_id, body)])
    with ctx.db.read() as conn:
        job = get_job(conn, caller, job_id)
    if job is None:  # deleted meanwhile
        raise NotFoundError(f"job {job_id} not found")
    return job_response(job)


@router.delete("/{job_id}", status_code=204)
def delete_job_route(ctx: Ctx, caller: Caller, job_id: PositiveId) -> None:
    """Delete one job with its history."""
    with ctx.db.write() as conn:
        delete_jobs(conn, caller, [job_id], utcnow())


@router.get("/{job_id}/events", response_model=list[Event])
def job_events(ctx: Ctx, caller: Caller, job_id: PositiveId) -> list[dict[str, Any]]:
    """Every state change of one job, oldest first."""
    with ctx.db.read() as conn:
        return events.job_history(conn, caller, job_id)
