"""Batch jobs: the pilot allocations a site keeps in its scheduler."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from beambridge.schemas.batch_jobs import BatchJob, BatchJobCreate, BatchJobUpdate
from beambridge.schemas.common import Page
from beambridge.schemas.queries import BatchJobQuery
from beambridge.server import batch_jobs
from beambridge.server.context import utcnow
from beambridge.server.deps import Caller, Ctx
from beambridge.server.json_body import JsonRoute
from beambridge.server.routes.paging import After, IdPath, Limit, page

router = APIRouter(prefix="/batch-jobs", tags=["batch jobs"], route_class=JsonRoute)


@router.get("", response_model=Page[BatchJob])
def list_batch_jobs(
    ctx: Ctx,
    caller: Caller,
    after: After = None,
    limit: Limit = 100,
    *,
    filters: Annotated[BatchJobQuery, Query()],
) -> dict[str, Any]:
    """The caller's batch jobs, optionally of one site and in some states."""
    with ctx.db.read() as conn:
        return page(batch_jobs.list_batch_jobs(conn, caller, filters, after=after, limit=limit), limit)


@router.post("", response_model=BatchJob, status_code=201)
def create_batch_job(ctx: Ctx, caller: Caller, body: BatchJobCreate) -> dict[str, Any]:
    """Ask the site to submit a pilot allocation (its agent picks it up)."""
    with ctx.db.write() as conn:
        return batch_jobs.create_batch_job(conn, caller, body, utcnow())


@router.get("/{batch_job_id}", response_model=BatchJob)
def get_batch_job(ctx: Ctx, caller: Caller, batch_job_id: IdPath) -> dict[str, Any]:
    """One batch job."""
    with ctx.db.read() as conn:
        return batch_jobs.get_batch_job(conn, caller, batch_job_id)


@router.patch("/{batch_job_id}", response_model=BatchJob)
def update_batch_job(ctx: Ctx, caller: Caller, batch_job_id: IdPath, body: BatchJobUpdate) -> dict[str, Any]:
    """Record what the scheduler says, or ask for deletion (state ``pending_deletion``)."""
    with ctx.db.write() as conn:
        return batch_jobs.update_batch_job(conn, caller, batch_job_id, body, utcnow())


@router.delete("/{batch_job_id}", status_code=204)
def delete_batch_job(ctx: Ctx, caller: Caller, batch_job_id: IdPath) -> None:
    """Forget a batch job record (it does not cancel the allocation: set pending_deletion for that)."""
    with ctx.db.write() as conn:
        batch_jobs.delete_batch_job(conn, caller, batch_job_id)
