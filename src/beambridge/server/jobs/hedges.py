"""Hedged pairs as the job lifecycle sees them: which jobs are linked, and what the winner's run does to
the other job (see :mod:`beambridge.states` for the rules, :mod:`beambridge.server.placement.hedges` for
how copies are made).

The pair is decided in the transaction that records the first ``RUN_DONE`` of either job:

* the original's run finished first: the copy is cancelled (``KILLED``; its launcher stops it);
* the copy's run finished first: the original *adopts* it — it moves to ``RUN_DONE`` at the copy's site
  with the copy's app, parameters, result and logs, its own run (if any) is stopped through
  ``run_stops``, its stage-outs move to the copy's site — and the copy ends ``KILLED`` ("adopted");
* the original ended (``FAILED``, ``KILLED``) first: the copy is cancelled; the copy failing leaves the
  original to run alone.

Both jobs are row-locked (in id order, with the rest of the batch) before either is changed, so two
launchers reporting both runs at the same moment are serialised: one wins, the other's report is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from beambridge.schemas.transfers import TransferState
from beambridge.server.db.chunks import chunked
from beambridge.server.db.tables import apps, job_placements, jobs, run_stops, transfer_items
from beambridge.states import JobState

S = JobState

RESOLVING_STATES = frozenset({S.RUN_DONE, S.RUN_ERROR, S.RUN_TIMEOUT, S.FAILED, S.KILLED})
"""Requested states that may decide a hedged pair (directly, or through the automatic steps they start)."""


@dataclass(frozen=True, slots=True)
class Link:
    """One job's side of a hedged pair: the other job, and whether this one is the original."""

    partner: int
    original: bool


def links(conn: Connection, ids: list[int]) -> dict[int, Link]:
    """The hedged pairs ``ids`` belong to, by job id."""
    found: dict[int, Link] = {}
    for chunk in chunked(sorted(set(ids))):
        query = sa.select(
            job_placements.c.job_id, job_placements.c.hedge_job_id, job_placements.c.hedge
        ).where(job_placements.c.job_id.in_(chunk), job_placements.c.hedge_job_id.is_not(None))
        found.update(
            (row.job_id, Link(int(row.hedge_job_id), bool(row.hedge))) for row in conn.execute(query)
        )
    return found


def partners(conn: Connection, ids: list[int]) -> list[int]:
    """The other jobs of the hedged pairs ``ids`` belong to."""
    return sorted({link.partner for link in links(conn, ids).values()})


@dataclass(frozen=True, slots=True)
class Adoption:
    """What the original takes from the copy whose run it adopts."""

    fields: dict[str, Any]
    site_id: int
    app_id: int


def adoption(conn: Connection, copy_id: int, copy_fields: dict[str, Any]) -> Adoption:
    """The columns the original takes over from its copy: site, app, resolved parameters, batch job, and
    the run's return code, result and error as the copy's launcher reported them."""
    row = conn.execute(
        sa.select(jobs.c.site_id, jobs.c.app_id, jobs.c.parameters, jobs.c.batch_job_id).where(
            jobs.c.id == copy_id
        )
    ).one()
    fields: dict[str, Any] = {
        "site_id": row.site_id,
        "app_id": row.app_id,
        "parameters": row.parameters,
        "batch_job_id": row.batch_job_id,
        "awaiting_placement": False,
    }
    for key in ("return_code", "result", "error"):
        if key in copy_fields:
            fields[key] = copy_fields[key]
    return Adoption(fields, int(row.site_id), int(row.app_id))


def move_to_copy_site(
    conn: Connection, original_id: int, original_session: int | None, adopted: Adoption, now: datetime
) -> None:
    """The side effects of an adoption: the original's stage-outs go to the copy's site (with that app's
    slot paths), and the launcher session that held the original is told to stop its run."""
    slots = conn.execute(sa.select(apps.c.transfer_slots).where(apps.c.id == adopted.app_id)).scalar_one()
    for slot, spec in (slots or {}).items():
        conn.execute(
            transfer_items.update()
            .where(
                transfer_items.c.job_id == original_id,
                transfer_items.c.slot == slot,
                transfer_items.c.state == TransferState.AWAITING_JOB.value,
            )
            .values(
                site_id=adopted.site_id,
                local_path=spec.get("local_path", ""),
                recursive=bool(spec.get("recursive", False)),
                updated_at=now,
            )
        )
    if original_session is not None:
        stop = {"session_id": original_session, "job_id": original_id, "created_at": now}
        exists = conn.execute(
            sa.select(run_stops.c.job_id).where(
                run_stops.c.session_id == original_session, run_stops.c.job_id == original_id
            )
        ).first()
        if exists is None:
            conn.execute(run_stops.insert().values(stop))


def stopped_runs(conn: Connection, session_id: int) -> list[int]:
    """Jobs whose run this session must stop although they live on (they adopted a hedged copy's run)."""
    return list(
        conn.execute(sa.select(run_stops.c.job_id).where(run_stops.c.session_id == session_id)).scalars()
    )
