"""Batch jobs: the pilot allocations a site keeps in its scheduler."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from beambridge.schemas.batch_jobs import (
    BATCH_JOB_FINAL_STATES,
    BatchJob,
    BatchJobCreate,
    BatchJobState,
    BatchJobUpdate,
)
from beambridge.schemas.common import Page
from beambridge.schemas.queries import BatchJobQuery
from beambridge.server.context import utcnow
from beambridge.server.db.tables import batch_jobs, sites
from beambridge.server.deps import Caller, Ctx
from beambridge.server.errors import ConflictError
from beambridge.server.ownership import get_owned, list_owned
from beambridge.server.routes.paging import After, IdPath, Limit, page

router = APIRouter(prefix="/batch-jobs", tags=["batch jobs"])


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
    where = []
    if filters.site_id is not None:
        where.append(batch_jobs.c.site_id == filters.site_id)
    if filters.state:
        where.append(batch_jobs.c.state.in_([s.value for s in filters.state]))
    with ctx.db.read() as conn:
        return page(list_owned(conn, batch_jobs, caller, where, after=after, limit=limit), limit)


@router.post("", response_model=BatchJob, status_code=201)
def create_batch_job(ctx: Ctx, caller: Caller, body: BatchJobCreate) -> dict[str, Any]:
    """Ask the site to submit a pilot allocation (its agent picks it up)."""
    now = utcnow()
    with ctx.db.write() as conn:
        get_owned(conn, sites, caller, body.site_id, "site")
        values = {
            **body.model_dump(mode="json"),
            "owner_id": caller.user_id,
            "state": BatchJobState.PENDING_SUBMISSION.value,
            "status_info": {},
            "created_at": now,
            "updated_at": now,
        }
        new_id = conn.execute(batch_jobs.insert().values(values).returning(batch_jobs.c.id)).scalar_one()
        return get_owned(conn, batch_jobs, caller, new_id, "batch job")


@router.get("/{batch_job_id}", response_model=BatchJob)
def get_batch_job(ctx: Ctx, caller: Caller, batch_job_id: IdPath) -> dict[str, Any]:
    """One batch job."""
    with ctx.db.read() as conn:
        return get_owned(conn, batch_jobs, caller, batch_job_id, "batch job")


@router.patch("/{batch_job_id}", response_model=BatchJob)
def update_batch_job(ctx: Ctx, caller: Caller, batch_job_id: IdPath, body: BatchJobUpdate) -> dict[str, Any]:
    """Record what the scheduler says, or ask for deletion (state ``pending_deletion``)."""
    with ctx.db.write() as conn:
        current = get_owned(conn, batch_jobs, caller, batch_job_id, "batch job", lock=True)
        values = body.model_dump(mode="json", exclude_unset=True, exclude_none=True)
        final = BatchJobState(current["state"]) in BATCH_JOB_FINAL_STATES
        if final and values.get("state", current["state"]) != current["state"]:
            raise ConflictError(
                f"batch job {batch_job_id} is {current['state']}; it cannot become {values['state']}"
            )
        for key in ("start_time", "end_time"):
            if key in values:
                values[key] = getattr(body, key)
        if values:
            conn.execute(
                batch_jobs.update()
                .where(batch_jobs.c.id == batch_job_id)
                .values({**values, "updated_at": utcnow()})
            )
        return get_owned(conn, batch_jobs, caller, batch_job_id, "batch job")


@router.delete("/{batch_job_id}", status_code=204)
def delete_batch_job(ctx: Ctx, caller: Caller, batch_job_id: IdPath) -> None:
    """Forget a batch job record (it does not cancel the allocation: set pending_deletion for that)."""
    with ctx.db.write() as conn:
        get_owned(conn, batch_jobs, caller, batch_job_id, "batch job", lock=True)
        conn.execute(batch_jobs.delete().where(batch_jobs.c.id == batch_job_id))
