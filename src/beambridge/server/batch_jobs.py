"""Batch jobs: the pilot allocations a site keeps in its scheduler, and the rule of their states."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from beambridge.schemas.batch_jobs import (
    BATCH_JOB_TRANSITIONS,
    BatchJobCreate,
    BatchJobState,
    BatchJobUpdate,
    can_change_batch_job,
)
from beambridge.schemas.queries import BatchJobQuery
from beambridge.server.auth.tokens import Principal
from beambridge.server.db.conditions import column_conditions
from beambridge.server.db.tables import batch_jobs, sites
from beambridge.server.errors import ConflictError
from beambridge.server.ownership import get_owned, list_owned

NOUN = "batch job"


def list_batch_jobs(
    conn: Connection, principal: Principal, query: BatchJobQuery, *, after: int | None, limit: int
) -> list[dict[str, Any]]:
    """One page of the caller's batch jobs matching ``query``."""
    where = column_conditions(batch_jobs, query)
    return list_owned(conn, batch_jobs, principal, where, after=after, limit=limit)


def get_batch_job(conn: Connection, principal: Principal, batch_job_id: int) -> dict[str, Any]:
    """One of the caller's batch jobs (404 otherwise)."""
    return get_owned(conn, batch_jobs, principal, batch_job_id, NOUN)


def create_batch_job(
    conn: Connection, principal: Principal, request: BatchJobCreate, now: datetime
) -> dict[str, Any]:
    """Record a pilot for the site to submit (``pending_submission``)."""
    get_owned(conn, sites, principal, request.site_id, "site")
    values = {
        **request.model_dump(mode="json"),
        "owner_id": principal.user_id,
        "state": BatchJobState.PENDING_SUBMISSION.value,
        "status_info": {},
        "created_at": now,
        "updated_at": now,
    }
    new_id = conn.execute(batch_jobs.insert().values(values).returning(batch_jobs.c.id)).scalar_one()
    return get_batch_job(conn, principal, new_id)


def update_batch_job(
    conn: Connection, principal: Principal, batch_job_id: int, changes: BatchJobUpdate, now: datetime
) -> dict[str, Any]:
    """Record what the scheduler says (or a request for deletion); a state change must be one the table
    :data:`~beambridge.schemas.batch_jobs.BATCH_JOB_TRANSITIONS` allows, else 409."""
    current = get_owned(conn, batch_jobs, principal, batch_job_id, NOUN, lock=True)
    values = changes.model_dump(mode="json", exclude_unset=True, exclude_none=True)
    if changes.state is not None:
        state = BatchJobState(current["state"])
        if not can_change_batch_job(state, changes.state):
            allowed = ", ".join(sorted(BATCH_JOB_TRANSITIONS[state])) or f"none ({state} is final)"
            raise ConflictError(
                f"batch job {batch_job_id} is {state}; it cannot become {changes.state} "
                f"(allowed next states: {allowed})"
            )
    for key in ("start_time", "end_time"):  # as datetimes, not the JSON strings of the dump
        if key in values:
            values[key] = getattr(changes, key)
    if values:
        conn.execute(
            batch_jobs.update().where(batch_jobs.c.id == batch_job_id).values({**values, "updated_at": now})
        )
    return get_batch_job(conn, principal, batch_job_id)


def delete_batch_job(conn: Connection, principal: Principal, batch_job_id: int) -> None:
    """Forget a batch job record (the allocation is not cancelled: ``pending_deletion`` does that)."""
    get_owned(conn, batch_jobs, principal, batch_job_id, NOUN, lock=True)
    conn.execute(batch_jobs.delete().where(batch_jobs.c.id == batch_job_id))
