"""Bulk job creation: validate once, insert jobs, parents, events and transfer items in one transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydantic import TypeAdapter
from sqlalchemy.engine import Connection

from beambridge.placement import Decision
from beambridge.schemas.apps import AppHook, AppParameter, TransferDirection, TransferSlot
from beambridge.schemas.jobs import JobCreate, TransferValue, transfer_ref, transfer_sha256
from beambridge.schemas.transfers import TransferState
from beambridge.server.audit import PLACEMENT, SYSTEM
from beambridge.server.auth.tokens import Principal
from beambridge.server.db.bulk import bulk_insert
from beambridge.server.db.chunks import chunked
from beambridge.server.db.ids import reserve_ids
from beambridge.server.db.tables import apps, events, job_parents, job_placements, jobs, sites, transfer_items
from beambridge.server.errors import ConflictError, InvalidRequestError, NotFoundError
from beambridge.server.jobs import activity
from beambridge.server.jobs.parameters import check_locations, check_transfers, resolve_parameters
from beambridge.server.placement.service import DecisionEvents, PlacementService, Plan, Wanted
from beambridge.server.placement.shared import group_body
from beambridge.server.quotas import check_job_creation
from beambridge.server.wakeups import WakeKey
from beambridge.states import RUNNABLE_STATES, JobState, initial_state

S = JobState
_PARAMS = TypeAdapter(dict[str, AppParameter])
_SLOTS = TypeAdapter(dict[str, TransferSlot])


@dataclass(frozen=True)
class _AppInfo:
    id: int
    name: str
    site_id: int
    parameters: dict[str, AppParameter]
    slots: dict[str, TransferSlot]
    hooks: frozenset[str]


def _load_apps(conn: Connection, principal: Principal, app_ids: set[int]) -> dict[int, _AppInfo]:
    query = sa.select(apps).where(apps.c.id.in_(sorted(app_ids)), apps.c.owner_id == principal.user_id)
    if principal.site_id is not None:
        query = query.where(apps.c.site_id == principal.site_id)
    return {
        row.id: _AppInfo(
            row.id,
            row.name,
            row.site_id,
            _PARAMS.validate_python(row.parameters),
            _SLOTS.validate_python(row.transfer_slots),
            frozenset(row.hooks),
        )
        for row in conn.execute(query)
    }


def _load_site_locations(conn: Connection, site_ids: set[int]) -> dict[int, tuple[str, dict[str, str]]]:
    """Name and location aliases of the sites that jobs with transfers go to."""
    if not site_ids:
        return {}
    query = sa.select(sites.c.id, sites.c.name, sites.c.locations).where(sites.c.id.in_(sorted(site_ids)))
    return {row.id: (row.name, dict(row.locations or {})) for row in conn.execute(query)}


def _load_parent_states(conn: Connection, principal: Principal, parent_ids: set[int]) -> dict[int, str]:
    """The parents' states, read under a share lock on PostgreSQL.

    Without the lock, a parent finishing (or being cancelled) in a concurrent transaction is read as still
    running, while that transaction cannot see this uncommitted child to release (or fail) it: the child
    would wait forever. ``FOR SHARE`` makes the two serialise either way: a finishing transaction that holds
    the parent's row makes this read wait and then see the committed state; one that comes later waits for
    this transaction and then sees the child. Parents are locked in id order (as every job lock is), so
    the two never deadlock. SQLite's single writer serialises them already.

    A site token may name only jobs of its own site as parents.
    """
    states: dict[int, str] = {}
    for chunk in chunked(sorted(parent_ids)):
        query = (
            sa.select(jobs.c.id, jobs.c.state)
            .where(jobs.c.id.in_(chunk), jobs.c.owner_id == principal.user_id)
            .order_by(jobs.c.id)
        )
        if principal.site_id is not None:
            query = query.where(jobs.c.site_id == principal.site_id)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(read=True)
        states.update((row.id, row.state) for row in conn.execute(query))
    return states


def create_jobs(
    conn: Connection,
    principal: Principal,
    specs: list[JobCreate],
    now: datetime,
    placement: PlacementService | None = None,
    quotas: tuple[int, int] | None = None,
    hedge_of: int | None = None,
) -> tuple[list[dict[str, Any]], set[WakeKey]]:
    """Insert ``specs`` as new jobs; returns their rows (as dicts) and the wake-ups to send after commit.

    Jobs naming an app by name are placed by ``placement`` (see :mod:`beambridge.server.placement`).
    ``quotas`` (jobs per minute, jobs in the system) are checked in this transaction (429 if exceeded).
    ``hedge_of``: the jobs are hedged copies of that job (placement's hedging makes them).
    """
    by_name = {index: spec for index, spec in enumerate(specs) if spec.app is not None}
    parent_states = _load_parent_states(conn, principal, {pid for spec in specs for pid in spec.parent_ids})
    unknown_parents = sorted({pid for spec in specs for pid in spec.parent_ids} - parent_states.keys())
    if unknown_parents:
        raise NotFoundError(f"parent job {unknown_parents[0]} not found", ids=unknown_parents[:1000])
    plans: dict[int, Plan] = {}
    wanted: dict[int, Wanted] = {}
    if by_name:
        if placement is None:
            raise InvalidRequestError("this service does not place jobs: give app_id")
        wanted = dict(zip(by_name, placement.resolve(conn, principal, list(by_name.values())), strict=True))
        waiting = {
            index
            for index, spec in by_name.items()
            if any(parent_states[pid] != S.JOB_FINISHED for pid in spec.parent_ids)
        }
        plans = placement.plan_creation(conn, principal, by_name, wanted, waiting, now)
    app_of = [spec.app_id if spec.app_id is not None else plans[i].app_id for i, spec in enumerate(specs)]
    app_info = _load_apps(conn, principal, set(app_of))
    missing = sorted(set(app_of) - app_info.keys())
    if missing:
        raise NotFoundError(f"app {missing[0]} not found", ids=missing[:1000])
    site_locations = _load_site_locations(
        conn, {app_info[app_of[i]].site_id for i, spec in enumerate(specs) if spec.transfers}
    )
    problems: list[str] = []
    given_as_stored: set[int] = set()  # jobs whose stored parameters are exactly those given
    rows: list[dict[str, Any]] = []
    paths: list[list[tuple[JobState, JobState, str]]] = []
    for index, spec in enumerate(specs):
        app = app_info[app_of[index]]
        parameters, bad = resolve_parameters(app.name, app.parameters, spec.parameters)
        has_in, has_out, bad_transfers = check_transfers(app.name, app.slots, spec.transfers)
        if spec.transfers:
            bad_transfers += check_locations(site_locations[app.site_id], spec.transfers)
        problems += [f"[{index}]: {text}" for text in bad + bad_transfers]
        unfinished = False
        for pid in spec.parent_ids:
            state = parent_states[pid]
            if state in (S.FAILED, S.KILLED):
                raise ConflictError(f"[{index}]: parent job {pid} is {state}; a child of it could never run")
            elif state != S.JOB_FINISHED:
                unfinished = True
        path = _creation_path(
            initial_state(has_unfinished_parents=unfinished, has_stage_ins=has_in), app.hooks
        )
        paths.append(path)
        rows.append(
            {
                "owner_id": principal.user_id,
                "site_id": app.site_id,
                "app_id": app.id,
                "workdir": spec.workdir,
                "state": path[-1][1].value,
                "parameters": parameters,
                "tags": spec.tags,
                "data": spec.data,
                "launch_params": spec.launch_params,
                "num_nodes": spec.num_nodes,
                "ranks_per_node": spec.ranks_per_node,
                "threads_per_rank": spec.threads_per_rank,
                "gpus_per_rank": spec.gpus_per_rank,
                "node_packing_count": spec.node_packing_count,
                "wall_time_limit_min": spec.wall_time_limit_min,
                "parent_ids": spec.parent_ids,
                "transfers": {
                    slot: value if isinstance(value, str) else value.model_dump()
                    for slot, value in spec.transfers.items()
                },
                "has_stage_ins": has_in,
                "has_stage_outs": has_out,
                "retry_count": 0,
                "retry_limit": spec.retry_limit,
                "priority": spec.priority,
                "session_id": None,
                "batch_job_id": None,
                "return_code": None,
                "result": None,
                "error": None,
                "created_at": now,
                "updated_at": now,
                "awaiting_placement": index in plans and plans[index].awaiting,
                "hedge_of": hedge_of,
                "placed_with": None,
            }
        )
        if index in plans and parameters == spec.parameters:
            given_as_stored.add(index)
    if problems:
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        raise InvalidRequestError("; ".join(problems[:10]) + more, errors=problems[:1000])

    if quotas is not None:
        check_job_creation(conn, principal.user_id, len(rows), now, per_minute=quotas[0], in_system=quotas[1])
    ids = reserve_ids(conn, jobs, len(rows))
    shares = _shared_groups(plans, wanted, specs, given_as_stored)
    for index, row in enumerate(rows):
        row["id"] = ids[index]
        lead = shares.get(index)
        if lead is not None:
            row["placed_with"] = ids[lead]
    bulk_insert(conn, jobs, rows)
    wake: set[WakeKey] = set()
    event_rows: list[dict[str, Any]] = []
    parent_rows: list[dict[str, Any]] = []
    transfer_rows: list[dict[str, Any]] = []
    payloads: dict[str, dict[str, str]] = {}  # one payload object per reason: encoded once for COPY
    placement_rows: list[dict[str, Any]] = []
    decision_events = DecisionEvents()
    site_lists: dict[tuple[str, ...], list[str]] = {}  # one list per set of sites: encoded once for COPY
    tally = activity.Tally()
    group_members: dict[int, list[tuple[int, Decision]]] = {}
    group_rows: dict[int, dict[str, Any]] = {}
    for index, (job_id, row, path, spec) in enumerate(zip(ids, rows, paths, specs, strict=True)):
        experiment = activity.experiment_of(row["tags"])
        for from_state, to_state, reason in path:
            if from_state is not to_state:
                tally.change(row["owner_id"], row["site_id"], row["app_id"], experiment, to_state.value, now)
            event_rows.append(
                {
                    "job_id": job_id,
                    "owner_id": row["owner_id"],
                    "site_id": row["site_id"],
                    "from_state": from_state.value,
                    "to_state": to_state.value,
                    "timestamp": now,
                    "data": payloads.get(reason) or payloads.setdefault(reason, {"auto": reason}),
                    # the creation is the caller's; the steps the service takes at once are its own
                    "actor": principal.actor if reason == "created" else SYSTEM,
                }
            )
        parent_rows += [{"child_id": job_id, "parent_id": pid} for pid in spec.parent_ids]
        transfer_rows += _transfer_rows(job_id, row, app_info[app_of[index]].slots, spec.transfers, now)
        plan = plans.get(index)
        lead = shares.get(index)
        if lead is not None:  # one row and one event for the group, written with its first job
            assert plan is not None and plan.decision is not None
            members = group_members.setdefault(lead, [])
            members.append((job_id, plan.decision))
            if lead == index:
                placement_rows.append(
                    _placement_row(job_id, row, spec, wanted[index], list(wanted[index].sites), plan, now)
                )
                group_rows[lead] = row
        elif plan is not None:
            sites_of = site_lists.get(wanted[index].sites)
            if sites_of is None:
                sites_of = site_lists[wanted[index].sites] = list(wanted[index].sites)
            placement_rows.append(_placement_row(job_id, row, spec, wanted[index], sites_of, plan, now))
            if plan.decision is not None:
                first = ids[plan.group] if plan.group is not None else None
                event_rows.append(_placement_event(job_id, row, plan, first, now, decision_events))
                if plan.awaiting and placement is not None:  # the cycle repeats it only if reasons change
                    placement.explain_deferral(job_id, plan.decision)
        if path[-1][1] in RUNNABLE_STATES and not row["awaiting_placement"]:
            wake.add(("site", row["site_id"]))
    for lead, members in group_members.items():
        event_rows.append(_group_event(group_rows[lead], members, now, decision_events))
    bulk_insert(conn, events, event_rows)
    bulk_insert(conn, job_placements, placement_rows)
    bulk_insert(conn, job_parents, parent_rows)
    bulk_insert(conn, transfer_items, transfer_rows)
    activity.record(conn, tally)
    wake.add(("owner", principal.user_id))
    return rows, wake


def _shared_groups(
    plans: dict[int, Plan], wanted: dict[int, Wanted], specs: list[JobCreate], given_as_stored: set[int]
) -> dict[int, int]:
    """Request index → the index of the first job of its shared group (see
    :mod:`beambridge.server.placement.shared`), for the jobs placed now with alike jobs that asked for
    the same sites and policy, without hedging, whose parameters are stored as given (a re-placement
    resolves them again from the job's row). Groups of one job are left out: they keep their own rows."""
    members: dict[tuple[int, Wanted], list[int]] = {}
    for index in sorted(given_as_stored):
        plan = plans[index]
        if plan.group is None or plan.group_size < 2 or plan.awaiting or specs[index].hedge:
            continue
        members.setdefault((plan.group, wanted[index]), []).append(index)
    out: dict[int, int] = {}
    for indexes in members.values():
        if len(indexes) > 1:
            out.update(dict.fromkeys(indexes, indexes[0]))
    return out


def _group_event(
    row: dict[str, Any], members: list[tuple[int, Decision]], now: datetime, encoder: DecisionEvents
) -> dict[str, Any]:
    """The one ``placed`` event of a shared group, on its first job (``row``)."""
    lead_id, lead_decision = members[0]
    body = encoder.data(lead_decision, lead_id, "placed")
    body["decision"] = group_body(body["decision"], members, encoder.estimate)
    return _placement_event_row(lead_id, row, now, body)


def _placement_row(
    job_id: int,
    row: dict[str, Any],
    spec: JobCreate,
    wanted: Wanted,
    sites_of: list[str],
    plan: Plan,
    now: datetime,
) -> dict[str, Any]:
    chosen = plan.decision.chosen if plan.decision is not None else None
    bound = not plan.awaiting
    return {
        "job_id": job_id,
        "owner_id": row["owner_id"],
        "app_name": spec.app,
        "sites": sites_of,
        "site_group": wanted.group,
        "policy": wanted.policy,
        "hedge": spec.hedge,
        "parameters": spec.parameters,
        "decided_at": now if bound else None,
        "finish_p95_s": chosen.finish_p95_s if chosen is not None else None,
        "placements": 1 if bound else 0,
        "hedge_job_id": None,
    }


def _placement_event(
    job_id: int,
    row: dict[str, Any],
    plan: Plan,
    first: int | None,
    now: datetime,
    encoder: DecisionEvents,
) -> dict[str, Any]:
    assert plan.decision is not None
    kind = "deferred" if plan.awaiting else "placed"
    group = (first, plan.group_size) if first is not None else None
    return _placement_event_row(job_id, row, now, encoder.data(plan.decision, job_id, kind, group))


def _placement_event_row(
    job_id: int, row: dict[str, Any], now: datetime, data: dict[str, Any]
) -> dict[str, Any]:
    """A placement event of a job being created: the service's, no state change (``row`` is the job's)."""
    return {
        "job_id": job_id,
        "owner_id": row["owner_id"],
        "site_id": row["site_id"],
        "from_state": row["state"],
        "to_state": row["state"],
        "timestamp": now,
        "data": data,
        "actor": PLACEMENT,
    }


def _creation_path(first: JobState, hooks: frozenset[str]) -> list[tuple[JobState, JobState, str]]:
    path = [(S.CREATED, first, "created")]
    if first is S.STAGED_IN and AppHook.PREPROCESS not in hooks:
        path.append((S.STAGED_IN, S.PREPROCESSED, "app has no preprocess hook"))
    return path


def _transfer_rows(
    job_id: int,
    row: dict[str, Any],
    slots: dict[str, TransferSlot],
    given: dict[str, TransferValue],
    now: datetime,
) -> list[dict[str, Any]]:
    out = []
    for name, value in given.items():
        slot = slots[name]
        location, _, remote_path = transfer_ref(value).partition(":")
        out.append(
            {
                "job_id": job_id,
                "owner_id": row["owner_id"],
                "site_id": row["site_id"],
                "direction": slot.direction.value,
                "slot": name,
                "location": location,
                "remote_path": remote_path,
                "local_path": slot.local_path,
                "recursive": slot.recursive,
                "sha256": transfer_sha256(value),
                "state": (
                    TransferState.PENDING
                    if slot.direction is TransferDirection.IN
                    else TransferState.AWAITING_JOB
                ).value,
                "task_id": None,
                "info": {},
                "created_at": now,
                "updated_at": now,
            }
        )
    return out
