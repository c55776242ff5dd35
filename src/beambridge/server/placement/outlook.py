"""What ``site ls`` and the console show of each site: health, capacity, backlog, rates, and the
predicted finish of a typical job of each of its apps if it were placed now."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from beambridge.placement import JobRequest
from beambridge.placement.estimators import TransferEstimate
from beambridge.placement.finish_time import INFINITE, SiteLoad, predict_finish
from beambridge.server.auth.tokens import Principal
from beambridge.server.db.tables import events, sites
from beambridge.server.placement.service import PlacementService
from beambridge.states import JobState

RATE_WINDOW_S = 900.0


def _finite(value: float | None) -> float | None:
    return None if value is None or value == INFINITE else round(value, 3)


def site_outlook(
    conn: Connection, service: PlacementService, principal: Principal, now: datetime
) -> list[dict[str, Any]]:
    """Each of the caller's sites (a site token: its own) as placement sees it now."""
    snap = service.snapshot(conn, principal.user_id, now, principal.site_id)
    since = now - timedelta(seconds=RATE_WINDOW_S)
    finished: dict[int, int] = dict(
        conn.execute(
            sa.select(events.c.site_id, sa.func.count())
            .where(
                events.c.owner_id == principal.user_id,
                events.c.to_state == JobState.JOB_FINISHED.value,
                events.c.timestamp >= since,
            )
            .group_by(events.c.site_id)
        ).all()
    )
    ids = [ref.id for ref in snap.refs.values()]
    heartbeats = dict(
        conn.execute(sa.select(sites.c.id, sites.c.last_heartbeat).where(sites.c.id.in_(ids))).all()
    )
    out = []
    penalty = snap.snapshot.options.degraded_penalty
    for site in snap.snapshot.sites:
        ref = snap.refs[site.name]
        load = SiteLoad(site)
        outlook = []
        for app in sorted(site.apps):
            predicted = predict_finish(load, JobRequest(("typical", app), app), (), (), penalty, None)
            finite = predicted.wait_s != INFINITE and site.health.accepts_work
            outlook.append(
                {
                    "app": app,
                    "run_s": round(predicted.run_s, 3),
                    "run_basis": predicted.run_basis,
                    "wait_s": _finite(predicted.wait_s) if finite else None,
                    "wait_basis": predicted.wait_basis.value if finite and predicted.wait_basis else None,
                    "finish_s": _finite(predicted.finish_s) if finite else None,
                }
            )
        beat = heartbeats.get(ref.id)
        out.append(
            {
                "site_id": ref.id,
                "name": site.name,
                "health": site.health.state.value,
                "reasons": list(site.health.reasons),
                "accepts_work": site.health.accepts_work,
                "drained": site.health.state.value == "draining",
                "heartbeat_age_s": None
                if beat is None
                else round(max(0.0, (now - _aware(beat, now)).total_seconds()), 1),
                "running_slots": site.running_slots,
                "free_slots": site.free_slots,
                "queued_pilots": len(site.queued_pilots),
                "backlog": site.backlog_jobs,
                "running": sum(site.running.values()),
                "finished_per_min": round(finished.get(ref.id, 0) / (RATE_WINDOW_S / 60), 2),
                "new_pilot_slots": site.new_pilot_slots,
                "turnaround_s": round(site.turnaround_s, 3),
                "routes": [_route(location, site.transfer(location)) for location in sorted(site.locations)],
                "apps": outlook,
            }
        )
    return out


def _route(location: str, estimate: TransferEstimate) -> dict[str, Any]:
    return {
        "location": location,
        "rate_bps": round(estimate.rate_bps, 1),
        "overhead_s": round(estimate.overhead_s, 3),
        "basis": estimate.source,
        "samples": estimate.samples,
        "failure_rate": round(estimate.failure_rate, 4),
    }


def _aware(value: datetime, now: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=now.tzinfo)
