"""Retrying ended jobs: ``FAILED`` or ``KILLED`` back to where a new job starts, recorded with who asked.

A retried job goes to ``AWAITING_PARENTS`` if a parent has not finished (or is being retried with it), else
to ``READY`` (it has stage-ins) or ``STAGED_IN`` (and on at once, like a new job). Its retry count starts
afresh, its last error and return code are cleared, and its transfers that must happen again (results,
and inputs that failed) are pending again. Children that failed only because it failed (they were still
waiting for it) follow it back, recursively. A job whose parent ended badly and is not being retried is
refused with that parent named: it would wait for ever.

A hedged copy is never retried (its original is: the copy's run was only ever a second try of it); a
retried original that had a copy can be hedged again, its p95 clock starting at the retry.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from beambridge.schemas.apps import TransferDirection
from beambridge.schemas.jobs import JobRetry
from beambridge.schemas.transfers import TransferState
from beambridge.server.auth.tokens import Principal
from beambridge.server.db.chunks import chunked, id_in
from beambridge.server.db.tables import (
    events,
    job_parents,
    job_placements,
    jobs,
    sites,
    transfer_items,
    users,
)
from beambridge.server.errors import ConflictError, InvalidRequestError, NotFoundError
from beambridge.server.jobs.lifecycle import Outcome, TransitionRequest, apply_transitions, lock_jobs
from beambridge.server.jobs.queries import tags_contain
from beambridge.states import RETRYABLE_STATES, JobState, initial_state

S = JobState
MAX_RETRY = 50_000
"""Most jobs one retry may send back (a selection by tag matching more is refused, not cut short)."""
_RETRYABLE = sorted(s.value for s in RETRYABLE_STATES)


def requester(conn: Connection, principal: Principal) -> str:
    """Who is asking, as events name them: the user's name (and the site, for a site token)."""
    name = conn.execute(sa.select(users.c.name).where(users.c.id == principal.user_id)).scalar_one()
    if principal.site_id is None:
        return str(name)
    site = conn.execute(sa.select(sites.c.name).where(sites.c.id == principal.site_id)).scalar_one_or_none()
    return f"{name} (site token of {site or principal.site_id})"


def _selected(conn: Connection, principal: Principal, request: JobRetry) -> tuple[list[int], list[Any]]:
    """The ids to retry, and the named jobs that do not qualify (rows with id and state)."""
    states = [s.value for s in request.state] or _RETRYABLE
    mine: list[sa.ColumnElement[bool]] = [jobs.c.owner_id == principal.user_id]
    if principal.site_id is not None:
        mine.append(jobs.c.site_id == principal.site_id)
    if not request.ids:
        query = (
            sa.select(jobs.c.id)
            .where(*mine, jobs.c.state.in_(states), jobs.c.hedge_of.is_(None))
            .order_by(jobs.c.id)
        )
        if request.tags:
            query = query.where(tags_contain(request.tags, conn.dialect.name))
        ids = list(conn.execute(query.limit(MAX_RETRY + 1)).scalars())
        if len(ids) > MAX_RETRY:
            raise InvalidRequestError(
                f"more than {MAX_RETRY:,} jobs match; narrow the retry with tags or ids (or retry in parts)"
            )
        return ids, []
    wanted = sorted(set(request.ids))
    found: dict[int, Any] = {}
    for chunk in chunked(wanted):
        query = sa.select(jobs.c.id, jobs.c.state, jobs.c.tags, jobs.c.hedge_of).where(
            id_in(jobs.c.id, chunk, conn.dialect.name), *mine
        )
        found.update((row.id, row) for row in conn.execute(query))
    missing = [job_id for job_id in wanted if job_id not in found]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise NotFoundError(f"job {missing[0]} not found{more}", ids=missing[:1000])
    chosen, skipped = [], []
    for job_id in wanted:
        row = found[job_id]
        tags = row.tags or {}
        if (
            row.state in states
            and row.hedge_of is None
            and all(tags.get(k) == v for k, v in request.tags.items())
        ):
            chosen.append(job_id)
        else:
            skipped.append(row)
    return chosen, skipped


def _skip_reason(row: Any, request: JobRetry) -> str:
    if row.hedge_of is not None:
        return f"a hedged copy of job {row.hedge_of}: retry that job (it may be hedged again)"
    if row.state not in _RETRYABLE:
        return f"{row.state}: only FAILED or KILLED jobs can be retried"
    if request.state and row.state not in request.state:
        return f"{row.state}: not among the states asked for"
    return "does not carry the tags asked for"


def _followers(conn: Connection, parent_ids: set[int], owner_id: int) -> dict[int, int]:
    """Children (recursively) that failed while waiting for one of ``parent_ids``: child → its parent."""
    followers: dict[int, int] = {}
    frontier = sorted(parent_ids)
    while frontier:
        candidates: dict[int, int] = {}
        for chunk in chunked(frontier):
            query = (
                sa.select(job_parents.c.child_id, job_parents.c.parent_id)
                .join(jobs, jobs.c.id == job_parents.c.child_id)
                .where(
                    job_parents.c.parent_id.in_(chunk),
                    jobs.c.owner_id == owner_id,
                    jobs.c.state == S.FAILED.value,
                )
            )
            for child, parent in conn.execute(query):
                if child not in parent_ids and child not in followers:
                    candidates.setdefault(child, parent)
        waited = _failed_while_waiting(conn, sorted(candidates))
        frontier = sorted(waited)
        followers.update((child, candidates[child]) for child in frontier)
    return followers


def _failed_while_waiting(conn: Connection, ids: list[int]) -> set[int]:
    """Those of ``ids`` whose last move was AWAITING_PARENTS → FAILED (a parent failed; they never ran)."""
    found: set[int] = set()
    for chunk in chunked(ids):
        last = (
            sa.select(sa.func.max(events.c.id))
            .where(events.c.job_id.in_(chunk))
            .group_by(events.c.job_id)
            .scalar_subquery()
        )
        query = sa.select(events.c.job_id).where(
            events.c.id.in_(last),
            events.c.from_state == S.AWAITING_PARENTS.value,
            events.c.to_state == S.FAILED.value,
        )
        found.update(conn.execute(query).scalars())
    return found


def _parents(conn: Connection, child_ids: list[int]) -> dict[int, list[tuple[int, str]]]:
    """Each child's parents with their states."""
    result: dict[int, list[tuple[int, str]]] = {}
    for chunk in chunked(child_ids):
        query = (
            sa.select(job_parents.c.child_id, job_parents.c.parent_id, jobs.c.state)
            .join(jobs, jobs.c.id == job_parents.c.parent_id)
            .where(job_parents.c.child_id.in_(chunk))
        )
        for child, parent, state in conn.execute(query):
            result.setdefault(child, []).append((parent, state))
    return result


def _reopen_transfers(conn: Connection, job_ids: list[int], now: datetime) -> None:
    """Results must leave again after the new run; inputs that failed are tried again (an input that
    arrived stays; one still moving is left to finish)."""
    out = transfer_items.c.direction == TransferDirection.OUT.value
    failed_in = sa.and_(~out, transfer_items.c.state == TransferState.ERROR.value)
    for chunk in chunked(job_ids):
        mine = transfer_items.c.job_id.in_(chunk)
        fresh: dict[str, Any] = {"task_id": None, "info": {}, "updated_at": now}
        conn.execute(
            transfer_items.update()
            .where(mine, out, transfer_items.c.state != TransferState.ACTIVE.value)
            .values(state=TransferState.AWAITING_JOB.value, **fresh)
        )
        conn.execute(
            transfer_items.update().where(mine, failed_in).values(state=TransferState.PENDING.value, **fresh)
        )


def _rehedge(conn: Connection, job_ids: list[int], now: datetime) -> None:
    """Retried originals whose copy ended with them may be hedged again: the link to the old copy goes,
    and the time their p95 is counted from is the retry."""
    for chunk in chunked(job_ids):
        conn.execute(
            job_placements.update()
            .where(
                job_placements.c.job_id.in_(chunk),
                job_placements.c.hedge.is_(True),
                job_placements.c.hedge_job_id.is_not(None),
            )
            .values(hedge_job_id=None, decided_at=now)
        )


def retry_jobs(
    conn: Connection, principal: Principal, request: JobRetry, now: datetime
) -> tuple[dict[str, Any], Outcome]:
    """Send the selected ended jobs back to run; the ``RetryResult`` body and what changed."""
    chosen, skipped = _selected(conn, principal, request)
    followers = _followers(conn, set(chosen), principal.user_id)
    ids = sorted({*chosen, *followers})
    if len(ids) > MAX_RETRY:
        raise InvalidRequestError(f"this retry would send back {len(ids):,} jobs (at most {MAX_RETRY:,})")
    rows = lock_jobs(conn, ids, owner_id=principal.user_id, site_id=principal.site_id)
    ids = [job_id for job_id in ids if job_id in rows and rows[job_id].state in _RETRYABLE]
    going = set(ids)
    parents = _parents(conn, ids)
    who = requester(conn, principal)
    requests: list[TransitionRequest] = []
    for job_id in ids:
        stuck = [
            (parent, state)
            for parent, state in parents.get(job_id, [])
            if state in _RETRYABLE and parent not in going
        ]
        if stuck:
            parent, state = stuck[0]
            raise ConflictError(
                f"job {job_id} cannot be retried without its parent job {parent}, which is {state}: retry "
                f"job {parent} (the children that failed because of it go back with it)",
                job=job_id,
                parent=parent,
            )
        unfinished = any(
            state != S.JOB_FINISHED.value or parent in going for parent, state in parents.get(job_id, [])
        )
        target = initial_state(has_unfinished_parents=unfinished, has_stage_ins=rows[job_id].has_stage_ins)
        data: dict[str, Any] = {"reason": f"retried by {who}", "retried_by": who}
        if job_id in followers:
            data["reason"] = f"retried by {who} with its parent job {followers[job_id]}"
        fields = {"error": None, "return_code": None, "result": None}
        requests.append(TransitionRequest(job_id, target, data, None, fields, retry=True))
    _reopen_transfers(conn, ids, now)
    _rehedge(conn, ids, now)
    outcome = apply_transitions(
        conn, requests, now=now, owner_id=principal.user_id, actor=principal.actor, locked=rows
    )
    body = {
        "count": len(ids),
        "ids": ids,
        "skipped": [
            {"id": row.id, "state": row.state, "reason": _skip_reason(row, request)} for row in skipped[:1000]
        ],
    }
    return body, outcome
