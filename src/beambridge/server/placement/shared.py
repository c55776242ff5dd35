"""Alike jobs of one request placed together share one ``job_placements`` row and one decision event.

A bulk create by app name places runs of alike jobs (same app, sites, policy, priority, parameter shape)
as groups (``place_batch``). Writing a placement row and a decision event for each of thousands of such
jobs cost more than placing them, so a group whose jobs ask for the same thing (same sites or site group,
policy, no hedging, parameters stored as given) is written once:

* the group's first job keeps the ``job_placements`` row (app name, sites, policy) for all of them, and
  every job of the group names that job in ``jobs.placed_with``;
* one ``placed`` event on that first job carries the group's decision: the first job's decision with
  every site's estimate when the group was placed, the job ids of the group, and for each site the jobs
  it got, the estimate of the first and of the last of them (each job placed there raised its predicted
  wait) and the jobs sent there to explore it.

:func:`job_view` turns that one event into what it says about any job of the group, so a job's history
(``GET /jobs/{id}/events``, ``beambridge job show``) still names its site, policy and estimates.
A job that is re-placed later gets events of its own as before.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from beambridge.placement import Decision
from beambridge.server.audit import PLACEMENT
from beambridge.server.db.chunks import chunked
from beambridge.server.db.tables import events, job_placements, jobs

IdRanges = list[list[int]]


def id_ranges(ids: Sequence[int]) -> IdRanges:
    """Ascending ``ids`` as ``[first, last]`` runs of consecutive ids."""
    out: IdRanges = []
    for job_id in ids:
        if out and out[-1][1] + 1 == job_id:
            out[-1][1] = job_id
        else:
            out.append([job_id, job_id])
    return out


def in_ranges(ranges: Sequence[Sequence[int]], job_id: int) -> bool:
    """Whether ``job_id`` is in one of the ``[first, last]`` runs (ascending, as :func:`id_ranges` makes)."""
    at = bisect.bisect_right(ranges, job_id, key=lambda run: run[0]) - 1
    return at >= 0 and ranges[at][0] <= job_id <= ranges[at][1]


def range_ids(ranges: Sequence[Sequence[int]]) -> list[int]:
    """Every id of the runs."""
    return [job_id for first, last in ranges for job_id in range(first, last + 1)]


def group_body(
    lead_body: dict[str, Any],
    members: Sequence[tuple[int, Decision]],
    estimate: Any,
) -> dict[str, Any]:
    """The decision body of a shared group event: ``lead_body`` (the first job's decision with every
    site's estimate) plus ``group``: the jobs, and per site its jobs, first and last estimate and the jobs
    that explored it. ``members``: (job id, decision) in id order; ``estimate`` serialises an estimate."""
    per_site: dict[str, dict[str, Any]] = {}
    for job_id, decision in members:
        site = decision.site
        assert site is not None
        entry = per_site.get(site)
        if entry is None:
            entry = per_site[site] = {"ids": [], "first": decision, "last": decision, "explored": []}
        entry["ids"].append(job_id)
        entry["last"] = decision
        if decision.explored:
            entry["explored"].append(job_id)
    sites = []
    for site, entry in per_site.items():
        first, last = entry["first"].chosen, entry["last"].chosen
        sites.append(
            {
                "site": site,
                "jobs": len(entry["ids"]),
                "ids": id_ranges(entry["ids"]),
                "first": estimate(first) if first is not None else None,
                "last": estimate(last) if last is not None else None,
                "explored": entry["explored"],
            }
        )
    lead_body["group"] = {
        "jobs": len(members),
        "first_job": members[0][0],
        "omitted": [],
        "ids": id_ranges([job_id for job_id, _ in members]),
        "sites": sites,
    }
    return lead_body


def job_view(data: dict[str, Any], job_id: int) -> dict[str, Any] | None:
    """What a shared group event says about ``job_id``: the event data with the decision made that job's
    (its site chosen, the site's estimate when the group first chose it, a reason naming the group's
    spread); the data unchanged for the group's first job; None if the job is not in the group."""
    if not is_group_event(data):
        return data if data.get("decision", {}).get("job") == job_id else None
    decision = data["decision"]
    group = decision["group"]
    if decision.get("job") == job_id:
        return data
    mine = next((s for s in group["sites"] if in_ranges(s["ids"], job_id)), None)
    if mine is None:
        return None
    first, last = mine.get("first") or {}, mine.get("last") or {}
    estimates = []
    for estimate in decision["estimates"]:
        if estimate["site"] == mine["site"]:
            estimates.append({**first, "status": "chosen"})
        elif estimate.get("status") == "chosen":
            estimates.append({**estimate, "status": "candidate"})
        else:
            estimates.append(estimate)
    spread = ""
    if first.get("finish_s") is not None and last.get("finish_s") is not None:
        spread = f" (predicted finish {first['finish_s']:.1f} to {last['finish_s']:.1f} s as they filled it)"
    reason = (
        f"placed with its group: {mine['jobs']} of the {group['jobs']} alike jobs went to "
        f"{mine['site']!r}{spread}; the group's first decision: {decision['reason']}"
    )
    view = {
        **decision,
        "job": job_id,
        "site": mine["site"],
        "reason": reason,
        "explored": job_id in mine.get("explored", ()),
        "estimates": estimates,
    }
    return {**data, "decision": view}


def is_group_event(data: Any) -> bool:
    """Whether an event's data is a shared group's decision."""
    if not isinstance(data, dict):
        return False
    decision = data.get("decision")
    group = decision.get("group") if isinstance(decision, dict) else None
    return isinstance(group, dict) and "ids" in group and "sites" in group


def group_events_of(conn: Connection, lead_id: int) -> list[Any]:
    """The shared group events kept on ``lead_id`` (placement events carrying a group's job ids)."""
    query = (
        sa.select(events)
        .where(
            events.c.job_id == lead_id,
            events.c.actor == PLACEMENT,
            events.c.from_state == events.c.to_state,
        )
        .order_by(events.c.id)
    )
    return [row for row in conn.execute(query) if is_group_event(row.data)]


def hand_over(conn: Connection, doomed: set[int]) -> None:
    """Before jobs are deleted: a deleted job that holds its group's placement row and decision event
    passes them to the group's first job that stays, so the others can still be re-placed and explained."""
    leads: list[int] = []
    for chunk in chunked(sorted(doomed)):
        leads += conn.execute(
            sa.select(jobs.c.id).where(jobs.c.id.in_(chunk), jobs.c.placed_with == jobs.c.id)
        ).scalars()
    for lead in leads:
        for event in group_events_of(conn, lead):
            ids = [i for i in range_ids(event.data["decision"]["group"]["ids"]) if i not in doomed]
            staying: list[int] = []
            for chunk in chunked(ids):
                staying += conn.execute(
                    sa.select(jobs.c.id).where(jobs.c.id.in_(chunk), jobs.c.placed_with == lead)
                ).scalars()
            own: set[int] = set()  # jobs re-placed since have a row of their own: not heirs
            for chunk in chunked(sorted(staying)):
                own.update(
                    conn.execute(
                        sa.select(job_placements.c.job_id).where(job_placements.c.job_id.in_(chunk))
                    ).scalars()
                )
            heirs = [job_id for job_id in staying if job_id not in own]
            if not heirs:
                continue
            heir = min(heirs)
            for chunk in chunked(sorted(staying)):
                conn.execute(jobs.update().where(jobs.c.id.in_(chunk)).values(placed_with=heir))
            conn.execute(job_placements.update().where(job_placements.c.job_id == lead).values(job_id=heir))
            conn.execute(events.update().where(events.c.id == event.id).values(job_id=heir))
