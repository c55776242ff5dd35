"""Workflows (stored by name), submissions (one dataset through a workflow, once per key), beamline events."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from beambridge.schemas.common import Page
from beambridge.schemas.queries import BeamlineEventQuery, SubmissionQuery, WorkflowQuery
from beambridge.schemas.workflows import (
    BeamlineEvent,
    BeamlineEventCreate,
    StepDecision,
    Submission,
    SubmissionAnswer,
    SubmissionCreate,
    Workflow,
    WorkflowOut,
)
from beambridge.server.beamline import submissions as service
from beambridge.server.context import utcnow
from beambridge.server.deps import Caller, Ctx
from beambridge.server.json_body import JsonRoute
from beambridge.server.routes.paging import After, IdPath, Limit, page

router = APIRouter(tags=["beamline"], route_class=JsonRoute)

StepName = Annotated[str, Path(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")]


@router.post("/workflows", response_model=WorkflowOut, status_code=201)
def put_workflow(ctx: Ctx, caller: Caller, body: Workflow, response: Response) -> dict[str, Any]:
    """Store a workflow under its name: 201 when new, 200 when it replaced the one of that name."""
    with ctx.db.write() as conn:
        row, created = service.put_workflow(conn, caller, body, utcnow())
    response.status_code = 201 if created else 200
    return row


@router.get("/workflows", response_model=Page[WorkflowOut])
def list_workflows(
    ctx: Ctx,
    caller: Caller,
    after: After = None,
    limit: Limit = 100,
    *,
    filters: Annotated[WorkflowQuery, Query()],
) -> dict[str, Any]:
    """The caller's workflows (optionally the one with ``name``)."""
    with ctx.db.read() as conn:
        return page(service.list_workflows(conn, caller, filters, after=after, limit=limit), limit)


@router.get("/workflows/{workflow_id}", response_model=WorkflowOut)
def get_workflow(ctx: Ctx, caller: Caller, workflow_id: IdPath) -> dict[str, Any]:
    """One workflow."""
    with ctx.db.read() as conn:
        return service.get_workflow(conn, caller, workflow_id)


@router.delete("/workflows/{workflow_id}", status_code=204)
def delete_workflow(ctx: Ctx, caller: Caller, workflow_id: IdPath) -> None:
    """Forget a workflow; its submissions and their jobs stay."""
    with ctx.db.write() as conn:
        service.delete_workflow(conn, caller, workflow_id)


@router.post("/submissions", response_model=SubmissionAnswer, status_code=201)
def submit(ctx: Ctx, caller: Caller, body: SubmissionCreate, response: Response) -> dict[str, Any]:
    """A dataset is ready: run the workflow on it once. A repeated key answers 200 with the existing jobs.

    This is also the route for a beamline control system to say "dataset ready" over plain HTTP.
    """
    with ctx.db.write() as conn:
        row, created, wake = service.submit(conn, caller, body, utcnow(), ctx.placement)
    ctx.wakeups.notify(wake)
    response.status_code = 201 if created else 200
    return {"created": created, "submission": row}


@router.get("/submissions", response_model=Page[Submission])
def list_submissions(
    ctx: Ctx,
    caller: Caller,
    after: After = None,
    limit: Limit = 100,
    *,
    filters: Annotated[SubmissionQuery, Query()],
) -> dict[str, Any]:
    """The caller's submissions, oldest first, with the time from file closed to first and full result."""
    with ctx.db.read() as conn:
        return page(service.list_submissions(conn, caller, filters, after=after, limit=limit), limit)


@router.get("/submissions/{submission_id}", response_model=Submission)
def get_submission(ctx: Ctx, caller: Caller, submission_id: IdPath) -> dict[str, Any]:
    """One submission."""
    with ctx.db.read() as conn:
        return service.get_submission(conn, caller, submission_id)


@router.post("/submissions/{submission_id}/steps/{step}", response_model=Submission)
def decide_step(
    ctx: Ctx, caller: Caller, submission_id: IdPath, step: StepName, body: StepDecision
) -> dict[str, Any]:
    """Run or skip a held step (a skipped step can be run later: a skip is reversible)."""
    with ctx.db.write() as conn:
        row, wake = service.decide_step(conn, caller, submission_id, step, body, utcnow(), ctx.placement)
    ctx.wakeups.notify(wake)
    return row


@router.post("/beamline-events", response_model=BeamlineEvent, status_code=201)
def record_event(ctx: Ctx, caller: Caller, body: BeamlineEventCreate) -> dict[str, Any]:
    """Record something the beamline saw (a run aborted, a change detected, an alert sent)."""
    with ctx.db.write() as conn:
        return service.record_event(conn, caller, body, utcnow())


@router.get("/beamline-events", response_model=Page[BeamlineEvent])
def list_events(
    ctx: Ctx,
    caller: Caller,
    after: After = None,
    limit: Limit = 100,
    *,
    filters: Annotated[BeamlineEventQuery, Query()],
) -> dict[str, Any]:
    """The caller's beamline events, oldest first."""
    with ctx.db.read() as conn:
        return page(service.list_events(conn, caller, filters, after=after, limit=limit), limit)
