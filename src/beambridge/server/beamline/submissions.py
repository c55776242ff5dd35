"""Workflows stored by name, and submissions: one dataset through one workflow, exactly once per key.

``submit`` runs in one write transaction: it answers a known key with the submission (and jobs) made the
first time; otherwise it renders the workflow's templates for the dataset, checks every step's job, inserts
the submission row (the unique (owner, key) index settles a race between two callers) and creates the jobs
of every step that is not held, parents before children. Steps marked ``skip_unless_changed`` (and steps
after them) are held until someone — the change detector at the beamline — decides: run (create the jobs
now) or skip (recorded, and reversible: a skipped step can still be run).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.engine import Connection

from beambridge.schemas.jobs import JobCreate
from beambridge.schemas.queries import BeamlineEventQuery, SubmissionQuery, WorkflowQuery
from beambridge.schemas.workflows import (
    BeamlineEventCreate,
    StepAction,
    StepDecision,
    StepStatus,
    SubmissionCreate,
    Workflow,
)
from beambridge.server.auth.tokens import Principal
from beambridge.server.beamline.render import render_step, template_context
from beambridge.server.db.conditions import column_conditions
from beambridge.server.db.tables import apps, beamline_events, events, sites, submissions, workflows
from beambridge.server.errors import ConflictError, ForbiddenError, InvalidRequestError, NotFoundError
from beambridge.server.jobs.create import create_jobs
from beambridge.server.ownership import list_owned
from beambridge.server.placement.service import PlacementService
from beambridge.server.wakeups import WakeKey
from beambridge.states import JobState


def refuse_site_tokens(principal: Principal) -> None:
    """Workflows and submissions belong to users: a site agent's token has no business with them."""
    if principal.is_site:
        raise ForbiddenError("a site token cannot use workflows or submissions: use a user's login")


# --- workflows ---------------------------------------------------------------------------------------


def put_workflow(
    conn: Connection, principal: Principal, spec: Workflow, now: datetime
) -> tuple[dict[str, Any], bool]:
    """Store ``spec`` under its name (replacing the caller's workflow of that name); ``(row, created)``.

    Submissions already made keep the jobs they made; new ones use the new steps.
    """
    refuse_site_tokens(principal)
    body = spec.model_dump(mode="json")
    found = conn.execute(
        sa.select(workflows.c.id).where(
            workflows.c.owner_id == principal.user_id, workflows.c.name == spec.name
        )
    ).first()
    if found is not None:
        conn.execute(workflows.update().where(workflows.c.id == found.id).values(spec=body, updated_at=now))
        return get_workflow(conn, principal, found.id), False
    workflow_id = conn.execute(
        workflows.insert()
        .values(owner_id=principal.user_id, name=spec.name, spec=body, created_at=now, updated_at=now)
        .returning(workflows.c.id)
    ).scalar_one()
    return get_workflow(conn, principal, workflow_id), True


def get_workflow(conn: Connection, principal: Principal, workflow_id: int) -> dict[str, Any]:
    """One of the caller's workflows (404 otherwise)."""
    refuse_site_tokens(principal)
    row = conn.execute(
        sa.select(workflows).where(workflows.c.id == workflow_id, workflows.c.owner_id == principal.user_id)
    ).first()
    if row is None:
        raise NotFoundError(f"workflow {workflow_id} not found")
    return dict(row._mapping)


def list_workflows(
    conn: Connection, principal: Principal, query: WorkflowQuery, *, after: int | None, limit: int
) -> list[dict[str, Any]]:
    """One page of the caller's workflows matching ``query``."""
    refuse_site_tokens(principal)
    return list_owned(
        conn, workflows, principal, column_conditions(workflows, query), after=after, limit=limit
    )


def delete_workflow(conn: Connection, principal: Principal, workflow_id: int) -> None:
    """Forget a workflow (its submissions and jobs stay)."""
    get_workflow(conn, principal, workflow_id)
    conn.execute(workflows.delete().where(workflows.c.id == workflow_id))


def _workflow_by_name(conn: Connection, principal: Principal, name: str) -> Workflow:
    row = conn.execute(
        sa.select(workflows.c.spec).where(workflows.c.owner_id == principal.user_id, workflows.c.name == name)
    ).first()
    if row is None:
        raise NotFoundError(f"workflow {name!r} not found: store it first (beambridge workflow put FILE)")
    return Workflow.model_validate(row.spec)


# --- submissions -------------------------------------------------------------------------------------


def _resolve_apps(conn: Connection, principal: Principal, workflow: Workflow) -> dict[str, tuple[int, str]]:
    """Each step's (app id, site name), from the app's name and (when given) its site's name."""
    fixed = [step for step in workflow.steps if step.sites is None and step.site_group is None]
    names = sorted({step.app for step in fixed})
    query = (
        sa.select(apps.c.id, apps.c.name, sites.c.name.label("site"))
        .join(sites, sites.c.id == apps.c.site_id)
        .where(apps.c.owner_id == principal.user_id, apps.c.name.in_(names))
        .order_by(apps.c.id)
    )
    found: dict[str, list[tuple[int, str]]] = {}
    for row in conn.execute(query):
        found.setdefault(row.name, []).append((row.id, row.site))
    out: dict[str, tuple[int, str]] = {}
    for step in fixed:
        candidates = found.get(step.app, [])
        if step.site is not None:
            candidates = [c for c in candidates if c[1] == step.site]
        if not candidates:
            where = f" on site {step.site!r}" if step.site else ""
            raise NotFoundError(f"step {step.name!r}: app {step.app!r} not found{where}")
        if len(candidates) > 1:
            raise InvalidRequestError(
                f"step {step.name!r}: app {step.app!r} exists on sites "
                f"{', '.join(sorted(c[1] for c in candidates))}: name one with 'site:'"
            )
        out[step.name] = candidates[0]
    return out


def _by_key(conn: Connection, owner_id: int, key: str) -> dict[str, Any] | None:
    row = conn.execute(
        sa.select(submissions).where(submissions.c.owner_id == owner_id, submissions.c.key == key)
    ).first()
    return None if row is None else dict(row._mapping)


def _closed_now(
    conn: Connection, existing: dict[str, Any], request: SubmissionCreate, now: datetime
) -> dict[str, Any]:
    """A repeat may tell when the dataset closed, if the first submission could not (it was sent while
    the detector still wrote the file): recorded once, never changed after."""
    if existing["closed_at"] is not None or request.closed_at is None:
        return existing
    conn.execute(
        submissions.update()
        .where(submissions.c.id == existing["id"], submissions.c.closed_at.is_(None))
        .values(closed_at=request.closed_at, updated_at=now)
    )
    return {**existing, "closed_at": request.closed_at, "updated_at": now}


def submit(
    conn: Connection,
    principal: Principal,
    request: SubmissionCreate,
    now: datetime,
    placement: PlacementService | None = None,
) -> tuple[dict[str, Any], bool, set[WakeKey]]:
    """Submit one dataset; ``(submission, created, wake-ups)``; a known key answers ``created=False``
    (and records the time the dataset closed if it was not known yet)."""
    refuse_site_tokens(principal)
    existing = _by_key(conn, principal.user_id, request.key)
    if existing is not None:
        return _closed_now(conn, existing, request, now), False, set()
    workflow = _workflow_by_name(conn, principal, request.workflow)
    context = template_context(workflow, request.dataset, request.key, request.context)
    app_of = _resolve_apps(conn, principal, workflow)
    plan: dict[str, dict[str, Any]] = {}
    for step in workflow.steps:
        rendered = render_step(step, context)
        where: dict[str, Any] = (
            {"app_id": app_of[step.name][0]}
            if step.name in app_of
            else {"app": step.app, "sites": step.sites, "site_group": step.site_group}
        )
        spec = {
            **where,
            "workdir": rendered["workdir"],
            "parameters": rendered["parameters"],
            "transfers": rendered["transfers"],
            "tags": {
                **step.tags,
                "workflow": workflow.name,
                "step": step.name,
                **({"quick_look": "true"} if step.quick_look else {}),
            },
            "data": {"dataset": request.dataset},
            "priority": step.priority,
            "num_nodes": step.num_nodes,
            "ranks_per_node": step.ranks_per_node,
            "threads_per_rank": step.threads_per_rank,
            "wall_time_limit_min": step.wall_time_limit_min,
            "retry_limit": step.retry_limit,
        }
        try:
            JobCreate.model_validate(spec)
        except ValidationError as err:
            first = err.errors()[0]
            loc = ".".join(str(p) for p in first["loc"])
            raise InvalidRequestError(f"step {step.name!r}: {loc}: {first['msg']}") from None
        held_by = [p for p in step.after if plan[p]["status"] != StepStatus.SUBMITTED]
        status, reason = StepStatus.SUBMITTED, ""
        if step.skip_unless_changed:
            status, reason = StepStatus.HELD, "waits for the change detector"
        elif held_by:
            status, reason = StepStatus.HELD, f"runs after held step {held_by[0]!r}"
        plan[step.name] = {
            "status": status,
            "reason": reason,
            "job_id": None,
            "app": step.app,
            "after": list(step.after),
            "quick_look": step.quick_look,
            "gated": step.skip_unless_changed,
            "spec": spec,
        }
    row = {
        "owner_id": principal.user_id,
        "workflow": workflow.name,
        "key": request.key,
        "dataset": request.dataset,
        "source": request.source.value,
        "context": request.context,
        "steps": {},
        "job_ids": [],
        "closed_at": request.closed_at,
        "created_at": now,
        "updated_at": now,
    }
    # A concurrent submitter of the same key: PostgreSQL makes this insert wait for the other transaction
    # and then fail on the unique index; the savepoint keeps this transaction usable to read its row.
    try:
        with conn.begin_nested():
            submission_id = conn.execute(
                submissions.insert().values(row).returning(submissions.c.id)
            ).scalar_one()
    except sa.exc.IntegrityError:
        existing = _by_key(conn, principal.user_id, request.key)
        if existing is None:
            raise
        return _closed_now(conn, existing, request, now), False, set()
    wake = _create_ready_steps(conn, principal, submission_id, plan, now, placement)
    _save_plan(conn, submission_id, plan, now)
    return get_submission(conn, principal, submission_id), True, wake


def _create_ready_steps(
    conn: Connection,
    principal: Principal,
    submission_id: int,
    plan: dict[str, dict[str, Any]],
    now: datetime,
    placement: PlacementService | None,
) -> set[WakeKey]:
    """Create the jobs of steps marked submitted that have none yet, parents first."""
    wake: set[WakeKey] = set()
    for entry in plan.values():  # the plan keeps the workflow's order: parents come first
        if entry["status"] != StepStatus.SUBMITTED or entry["job_id"] is not None:
            continue
        spec = dict(entry["spec"])
        spec["tags"] = {**spec["tags"], "submission": str(submission_id)}
        spec["data"] = {**spec["data"], "submission_id": submission_id}
        spec["parent_ids"] = [plan[parent]["job_id"] for parent in entry["after"]]
        quotas = placement.settings.job_quotas if placement is not None else None
        rows, step_wake = create_jobs(
            conn, principal, [JobCreate.model_validate(spec)], now, placement, quotas=quotas
        )
        entry["job_id"] = rows[0]["id"]
        wake |= step_wake
    return wake


def _save_plan(conn: Connection, submission_id: int, plan: dict[str, dict[str, Any]], now: datetime) -> None:
    job_ids = [entry["job_id"] for entry in plan.values() if entry["job_id"] is not None]
    conn.execute(
        submissions.update()
        .where(submissions.c.id == submission_id)
        .values(steps=plan, job_ids=job_ids, updated_at=now)
    )


def decide_step(
    conn: Connection,
    principal: Principal,
    submission_id: int,
    step: str,
    decision: StepDecision,
    now: datetime,
    placement: PlacementService | None = None,
) -> tuple[dict[str, Any], set[WakeKey]]:
    """Run or skip a held step; running a skipped step undoes the skip. Both are recorded as events."""
    refuse_site_tokens(principal)
    query = sa.select(submissions).where(
        submissions.c.id == submission_id, submissions.c.owner_id == principal.user_id
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is None:
        raise NotFoundError(f"submission {submission_id} not found")
    plan: dict[str, dict[str, Any]] = {name: dict(entry) for name, entry in row.steps.items()}
    if step not in plan:
        raise NotFoundError(f"submission {submission_id} has no step {step!r} (it has: {', '.join(plan)})")
    entry = plan[step]
    wake: set[WakeKey] = set()
    if entry["status"] == StepStatus.SUBMITTED:
        if decision.action is StepAction.RUN:  # a repeat of the same decision: nothing to do
            return get_submission(conn, principal, submission_id), wake
        raise ConflictError(
            f"step {step!r} of submission {submission_id} already runs (job {entry['job_id']}): "
            "cancel the job instead"
        )
    if decision.action is StepAction.SKIP:
        if entry["status"] == StepStatus.SKIPPED:
            return get_submission(conn, principal, submission_id), wake
        for name in _with_descendants(plan, step):
            if plan[name]["status"] == StepStatus.HELD:
                plan[name]["status"] = StepStatus.SKIPPED
                plan[name]["reason"] = (
                    decision.reason if name == step else f"runs after skipped step {step!r}"
                )
                if name != step:
                    plan[name]["skipped_by"] = step
    else:
        blocked = [p for p in entry["after"] if plan[p]["status"] != StepStatus.SUBMITTED]
        if blocked:
            raise ConflictError(
                f"step {step!r} runs after {blocked[0]!r}, which is {plan[blocked[0]]['status']}: run it first"
            )
        entry["status"], entry["reason"] = StepStatus.SUBMITTED, decision.reason
        entry.pop("skipped_by", None)
        _follow_run(plan, step)
        wake = _create_ready_steps(conn, principal, submission_id, plan, now, placement)
    _save_plan(conn, submission_id, plan, now)
    record_event(
        conn,
        principal,
        BeamlineEventCreate(
            kind=f"step.{'run' if decision.action is StepAction.RUN else 'skipped'}",
            dataset=row.dataset,
            workflow=row.workflow,
            submission_id=submission_id,
            data={"step": step, "reason": decision.reason, "was": row.steps[step]["status"]},
        ),
        now,
    )
    return get_submission(conn, principal, submission_id), wake


def _follow_run(plan: dict[str, dict[str, Any]], step: str) -> None:
    """After ``step`` was run: the steps after it that were held, or skipped only because they run after
    a skipped step, follow — they run when all their parents run; a ``skip_unless_changed`` step is held
    again for its own decision; a step skipped by its own decision stays skipped."""
    for name in _with_descendants(plan, step)[1:]:
        other = plan[name]
        cascaded = other["status"] == StepStatus.SKIPPED and (
            "skipped_by" in other or str(other.get("reason", "")).startswith("runs after skipped step")
        )
        if other["status"] != StepStatus.HELD and not cascaded:
            continue
        other.pop("skipped_by", None)
        blocked = [p for p in other["after"] if plan[p]["status"] != StepStatus.SUBMITTED]
        skipped = [p for p in blocked if plan[p]["status"] == StepStatus.SKIPPED]
        if skipped:
            other["status"], other["reason"] = StepStatus.SKIPPED, f"runs after skipped step {skipped[0]!r}"
            other["skipped_by"] = skipped[0]
        elif blocked:
            other["status"], other["reason"] = StepStatus.HELD, f"runs after held step {blocked[0]!r}"
        elif other.get("gated"):
            other["status"], other["reason"] = StepStatus.HELD, "waits for the change detector"
        else:
            other["status"], other["reason"] = StepStatus.SUBMITTED, f"after {step!r} was run"


def _with_descendants(plan: dict[str, dict[str, Any]], step: str) -> list[str]:
    """``step`` and every step that runs after it, directly or not, in workflow order."""
    found = [step]
    for name, entry in plan.items():
        if any(parent in found for parent in entry["after"]) and name not in found:
            found.append(name)
    return found


def get_submission(conn: Connection, principal: Principal, submission_id: int) -> dict[str, Any]:
    """One of the caller's submissions with its latencies (404 otherwise)."""
    refuse_site_tokens(principal)
    row = conn.execute(
        sa.select(submissions).where(
            submissions.c.id == submission_id, submissions.c.owner_id == principal.user_id
        )
    ).first()
    if row is None:
        raise NotFoundError(f"submission {submission_id} not found")
    return with_latencies(conn, [dict(row._mapping)])[0]


def list_submissions(
    conn: Connection, principal: Principal, query: SubmissionQuery, *, after: int | None, limit: int
) -> list[dict[str, Any]]:
    """One page of the caller's submissions matching ``query``, oldest first, with their latencies."""
    refuse_site_tokens(principal)
    where = column_conditions(submissions, query)
    return with_latencies(conn, list_owned(conn, submissions, principal, where, after=after, limit=limit))


def with_latencies(conn: Connection, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add when (and how long after the file closed) the first and the full result arrived.

    The first result is the quick-look step's job finishing (the first step's when there is no quick
    look); the full result is the last job of the steps that run finishing, once no step is held. A
    dataset submitted while still being written counts from its close once that is known (a result
    ready before the file closed is a negative time), from its submission until then.
    """
    job_ids = sorted({job_id for row in rows for job_id in row["job_ids"]})
    finished: dict[int, datetime] = {}
    for start in range(0, len(job_ids), 1000):
        chunk = job_ids[start : start + 1000]
        query = (
            sa.select(events.c.job_id, sa.func.min(events.c.timestamp).label("at"))
            .where(events.c.job_id.in_(chunk), events.c.to_state == JobState.JOB_FINISHED.value)
            .group_by(events.c.job_id)
        )
        finished.update((r.job_id, r.at) for r in conn.execute(query))
    for row in rows:
        steps: dict[str, dict[str, Any]] = row["steps"]
        row["steps"] = {
            name: {k: v for k, v in entry.items() if k not in ("spec", "gated", "skipped_by")}
            for name, entry in steps.items()
        }
        quick = [e for e in steps.values() if e.get("quick_look")] or list(steps.values())[:1]
        first = finished.get(quick[0]["job_id"]) if quick and quick[0]["job_id"] else None
        running = [e for e in steps.values() if e["status"] == StepStatus.SUBMITTED]
        complete = all(e["status"] != StepStatus.HELD for e in steps.values()) and all(
            e["job_id"] in finished for e in running
        )
        full = max((finished[e["job_id"]] for e in running), default=None) if complete and running else None
        row["first_result_at"], row["full_result_at"] = first, full
        closed = row["closed_at"] or row["created_at"]
        row["first_result_s"] = _seconds(closed, first)
        row["full_result_s"] = _seconds(closed, full)
    return rows


def _seconds(start: datetime, end: datetime | None) -> float | None:
    if end is None:
        return None
    if start.tzinfo is None or end.tzinfo is None:
        start, end = start.replace(tzinfo=None), end.replace(tzinfo=None)
    return round((end - start).total_seconds(), 3)


# --- beamline events ---------------------------------------------------------------------------------


def record_event(
    conn: Connection, principal: Principal, event: BeamlineEventCreate, now: datetime
) -> dict[str, Any]:
    """Store one beamline event."""
    refuse_site_tokens(principal)
    if event.submission_id is not None:
        owned = conn.execute(
            sa.select(submissions.c.id).where(
                submissions.c.id == event.submission_id, submissions.c.owner_id == principal.user_id
            )
        ).first()
        if owned is None:
            raise NotFoundError(f"submission {event.submission_id} not found")
    values = {**event.model_dump(mode="json"), "owner_id": principal.user_id, "timestamp": now}
    event_id = conn.execute(
        beamline_events.insert().values(values).returning(beamline_events.c.id)
    ).scalar_one()
    return {**values, "id": event_id}


def list_events(
    conn: Connection, principal: Principal, query: BeamlineEventQuery, *, after: int | None, limit: int
) -> list[dict[str, Any]]:
    """One page of the caller's beamline events matching ``query``, oldest first."""
    refuse_site_tokens(principal)
    where = column_conditions(beamline_events, query)
    return list_owned(conn, beamline_events, principal, where, after=after, limit=limit)
