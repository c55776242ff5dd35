"""Making hedged copies: a job submitted with ``hedge=True`` that has passed the 95th percentile of its
predicted finish gets a copy on the best other site that takes work now.

Each placement cycle reads the owner's hedge-flagged jobs that have no copy and whose run has not ended,
asks :func:`beambridge.placement.hedges` which are overdue and where their copies go (at most
``placement_hedge_max_copies`` per cycle, most overdue first), and creates each copy as a job of its own:
the same workdir, parameters (as submitted), resources, transfers, priority and tags, bound to the chosen
site's app, marked ``hedge_of=<id>`` and tagged ``hedge_copy_of=<id>`` too. The two jobs name each other in ``job_placements.hedge_job_id``; what
happens when either run finishes is :mod:`beambridge.server.jobs.hedges`. Both jobs get an event: the
original ``hedged`` (with the copy's id and the decision), the copy ``placed`` (with ``copy_of``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from beambridge.logs import get_logger
from beambridge.placement import JobRequest, PlacedJob
from beambridge.placement.hedging import Hedge, overdue
from beambridge.schemas.jobs import JobCreate, transfer_ref
from beambridge.server.audit import PLACEMENT
from beambridge.server.auth.tokens import Principal
from beambridge.server.db.tables import events, job_placements, jobs
from beambridge.server.errors import ServiceError
from beambridge.server.jobs.create import create_jobs
from beambridge.server.placement.service import PlacementService, decision_event_data
from beambridge.server.placement.snapshot import ServiceSnapshot
from beambridge.server.wakeups import WakeKey
from beambridge.states import ADOPT_TRANSITIONS

log = get_logger("beambridge.placement")

HEDGEABLE = sorted(state.value for state in ADOPT_TRANSITIONS)
"""States of a job whose run has not ended: a copy can still win."""

COPY_TAG = "hedge_copy_of"
MAX_TAGS = 64
"""A job's most tags (``schemas.common.check_tags``)."""


@dataclass
class HedgeReport:
    """The copies one cycle made: (original, copy) ids."""

    copies: list[tuple[int, int]] = field(default_factory=list)
    wake_keys: set[WakeKey] = field(default_factory=set)


def _owners(conn: Connection) -> list[int]:
    query = (
        sa.select(job_placements.c.owner_id)
        .join(jobs, jobs.c.id == job_placements.c.job_id)
        .where(
            job_placements.c.hedge.is_(True),
            job_placements.c.hedge_job_id.is_(None),
            job_placements.c.finish_p95_s.is_not(None),
            jobs.c.state.in_(HEDGEABLE),
        )
        .distinct()
    )
    return list(conn.execute(query).scalars())


def _flagged(conn: Connection, owner_id: int) -> list[Any]:
    query = (
        sa.select(
            jobs.c.id,
            jobs.c.site_id,
            jobs.c.session_id,
            jobs.c.transfers,
            jobs.c.priority,
            job_placements.c.app_name,
            job_placements.c.sites,
            job_placements.c.policy,
            job_placements.c.parameters,
            job_placements.c.decided_at,
            job_placements.c.finish_p95_s,
        )
        .join(job_placements, job_placements.c.job_id == jobs.c.id)
        .where(
            jobs.c.owner_id == owner_id,
            jobs.c.awaiting_placement.is_(False),
            jobs.c.state.in_(HEDGEABLE),
            job_placements.c.hedge.is_(True),
            job_placements.c.hedge_job_id.is_(None),
            job_placements.c.decided_at.is_not(None),
            job_placements.c.finish_p95_s.is_not(None),
        )
        .order_by(jobs.c.id)
        .limit(10_000)
    )
    return list(conn.execute(query))


def _request(row: Any) -> JobRequest:
    return JobRequest(
        key=row.id,
        app=row.app_name,
        sites=tuple(row.sites),
        parameters=row.parameters,
        transfers={slot: transfer_ref(value) for slot, value in (row.transfers or {}).items()},
        priority=row.priority,
        hedge=True,
        policy=row.policy,
    )


def run_hedges(service: PlacementService, conn: Connection, now: datetime) -> HedgeReport:
    """Make the copies that are due now (see the module docstring), in the caller's write transaction."""
    report = HedgeReport()
    limit = service.settings.placement_hedge_max_copies
    for owner_id in _owners(conn):
        if len(report.copies) >= limit:
            break
        rows = _flagged(conn, owner_id)
        if not rows:
            continue
        snap = service.snapshot(conn, owner_id, now)
        names = snap.names_by_id()
        placed = [
            PlacedJob(
                _request(row),
                names.get(row.site_id, ""),
                placed_at=row.decided_at.timestamp(),
                finish_p95_s=row.finish_p95_s,
                claimed=row.session_id is not None,
            )
            for row in rows
        ]
        if not overdue(placed, snap.snapshot.now):
            continue
        due = service.hedges(placed, snap, max_copies=limit - len(report.copies))
        for hedge in due:
            original_id = cast(int, hedge.original.job.key)
            copy_id = _make_copy(conn, owner_id, original_id, hedge, snap, now)
            if copy_id is not None:
                report.copies.append((original_id, copy_id))
                report.wake_keys |= {("site", snap.site_id(hedge.site)), ("owner", owner_id)}
    return report


def _make_copy(
    conn: Connection, owner_id: int, original_id: int, hedge: Hedge, snap: ServiceSnapshot, now: datetime
) -> int | None:
    """Create the copy of ``original_id`` if it still has none and its run has not ended; its id."""
    lock = sa.select(jobs).where(jobs.c.id == original_id)
    if conn.dialect.name == "postgresql":
        lock = lock.with_for_update()
    row = conn.execute(lock).first()
    placement = conn.execute(sa.select(job_placements).where(job_placements.c.job_id == original_id)).first()
    if row is None or placement is None or row.state not in HEDGEABLE or placement.hedge_job_id is not None:
        return None
    ref = snap.refs[hedge.site]
    tags = dict(row.tags or {})  # the original's, so a launcher that takes only some tags takes the copy
    if len(tags) < MAX_TAGS or COPY_TAG in tags:  # hedge_of marks the copy in any case
        tags[COPY_TAG] = str(original_id)
    spec = JobCreate.model_validate(
        {
            "app_id": ref.app_ids[placement.app_name],
            "workdir": row.workdir,
            "parameters": placement.parameters,
            "tags": tags,
            "data": row.data,
            "launch_params": row.launch_params,
            "num_nodes": row.num_nodes,
            "ranks_per_node": row.ranks_per_node,
            "threads_per_rank": row.threads_per_rank,
            "gpus_per_rank": row.gpus_per_rank,
            "node_packing_count": row.node_packing_count,
            "wall_time_limit_min": row.wall_time_limit_min,
            "transfers": row.transfers,
            "retry_limit": row.retry_limit,
            "priority": row.priority,
        }
    )
    try:
        with conn.begin_nested():
            [created], _ = create_jobs(conn, Principal(owner_id), [spec], now, hedge_of=original_id)
    except ServiceError as exc:  # the site changed since the snapshot: try again next cycle
        log.warning("hedge_copy_refused", job_id=original_id, site=hedge.site, error=exc)
        return None
    copy_id = int(created["id"])
    chosen = hedge.decision.chosen
    conn.execute(
        job_placements.insert().values(
            job_id=copy_id,
            owner_id=owner_id,
            app_name=placement.app_name,
            sites=placement.sites,
            site_group=placement.site_group,
            policy=placement.policy,
            hedge=False,
            parameters=placement.parameters,
            decided_at=now,
            finish_p95_s=chosen.finish_p95_s if chosen is not None else None,
            placements=1,
            hedge_job_id=original_id,
        )
    )
    conn.execute(
        job_placements.update().where(job_placements.c.job_id == original_id).values(hedge_job_id=copy_id)
    )
    overdue_s = round(hedge.overdue_s, 3)
    conn.execute(
        events.insert(),
        [
            {
                "job_id": original_id,
                "owner_id": owner_id,
                "site_id": row.site_id,
                "from_state": row.state,
                "to_state": row.state,
                "timestamp": now,
                "data": decision_event_data(
                    hedge.decision, original_id, "hedged", copy=copy_id, overdue_s=overdue_s
                ),
                "actor": PLACEMENT,
            },
            {
                "job_id": copy_id,
                "owner_id": owner_id,
                "site_id": ref.id,
                "from_state": created["state"],
                "to_state": created["state"],
                "timestamp": now,
                "data": decision_event_data(hedge.decision, copy_id, "placed", copy_of=original_id),
                "actor": PLACEMENT,
            },
        ],
    )
    log.info("hedge_copy", job_id=original_id, copy_id=copy_id, site=hedge.site, overdue_s=overdue_s)
    return copy_id
