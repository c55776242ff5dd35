"""Applying state changes to jobs: validation, automatic steps, events, and the DAG.

Every state change in the service goes through :func:`apply_transitions`, in the caller's transaction:

1. the jobs are read (row-locked on PostgreSQL) and each requested transition is checked against
   :mod:`beambridge.states` — one illegal transition refuses the whole request (409);
2. steps the site would only rubber-stamp happen at once: a hook the app does not override gets its
   default (no preprocess → ``PREPROCESSED``; no postprocess → ``POSTPROCESSED``; no stage-outs →
   ``JOB_FINISHED``; no ``handle_error`` → ``RESTART_READY`` while retries remain, unless the app says
   ``retry_on_error=False``, else ``FAILED``; no ``handle_timeout`` → ``RESTART_READY`` while retries remain);
3. rows are updated and one event per transition is inserted, in bulk, naming its actor: the one given for
   the requested changes, ``system`` for the automatic steps (:mod:`beambridge.server.audit`);
4. children whose last parent finished are released, and children of a failed or killed parent fail;
5. a hedged pair one of whose runs finished (or whose original ended) is decided in the same transaction
   (:mod:`beambridge.server.jobs.hedges`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from beambridge.schemas.apps import AppHook
from beambridge.server.audit import SYSTEM
from beambridge.server.db.bulk import bulk_insert
from beambridge.server.db.chunks import chunked, id_in
from beambridge.server.db.tables import apps, events, job_parents, job_runs, jobs
from beambridge.server.errors import ConflictError, NotFoundError
from beambridge.server.jobs import activity, hedges
from beambridge.server.wakeups import WakeKey
from beambridge.states import (
    ADOPT_TRANSITIONS,
    RETRYABLE_STATES,
    RUN_ENDED_STATES,
    RUNNABLE_STATES,
    TERMINAL_STATES,
    IllegalTransition,
    JobState,
    check_adopt,
    check_retry,
    check_transition,
    released_state,
)

JobRow = Any
"""A row of ``_LOCK_COLUMNS``, read by attribute (``row.state``)."""
S = JobState

_LOCK_COLUMNS = (
    jobs.c.id,
    jobs.c.state,
    jobs.c.owner_id,
    jobs.c.site_id,
    jobs.c.app_id,
    jobs.c.session_id,
    jobs.c.batch_job_id,
    jobs.c.retry_count,
    jobs.c.retry_limit,
    jobs.c.has_stage_ins,
    jobs.c.has_stage_outs,
    jobs.c.updated_at,
    jobs.c.awaiting_placement,
    activity.experiment_column(),
)


@dataclass
class TransitionRequest:
    """Move one job to ``state`` (if given) and set the given fields.

    ``retry`` asks for a retry's move out of ``FAILED``/``KILLED`` (see ``states.RETRY_TRANSITIONS``),
    which starts the job's retry count afresh; nothing else may leave those states.
    """

    job_id: int
    state: JobState | None = None
    data: dict[str, Any] = field(default_factory=dict)
    at: datetime | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    retry: bool = False

    @property
    def may_decide_a_hedge(self) -> bool:
        """Whether this change may decide a hedged pair (see :mod:`beambridge.server.jobs.hedges`)."""
        return self.state in hedges.RESOLVING_STATES


@dataclass
class Outcome:
    """What a batch of transitions changed."""

    job_ids: list[int] = field(default_factory=list)
    wake_keys: set[WakeKey] = field(default_factory=set)

    def merge(self, other: Outcome) -> None:
        """Fold in the outcome of a cascaded step."""
        self.job_ids.extend(other.job_ids)
        self.wake_keys |= other.wake_keys


@dataclass
class _Work:
    row: JobRow
    state: JobState
    retry_count: int
    fields: dict[str, Any] = field(default_factory=dict)
    steps: list[tuple[JobState, JobState, dict[str, Any], datetime, str]] = field(default_factory=list)


def lock_jobs(
    conn: Connection,
    ids: list[int],
    *,
    owner_id: int | None,
    site_id: int | None,
    with_partners: bool = False,
) -> dict[int, JobRow]:
    """Read jobs for changing them (row-locked, in id order, on PostgreSQL); others' jobs are absent.

    ``with_partners`` also locks, in the same id order, the other job of each hedged pair among ``ids``
    (not returned): a change that decides the pair then never waits for a lock while holding one that a
    concurrent change of the other job needs (the two would deadlock).
    """
    found: dict[int, JobRow] = {}
    wanted = set(ids)
    unique = sorted(wanted)
    postgres = conn.dialect.name == "postgresql"
    if with_partners and postgres:
        unique = sorted(wanted | set(hedges.partners(conn, unique)))
    for chunk in chunked(unique):
        query = (
            sa.select(*_LOCK_COLUMNS).where(id_in(jobs.c.id, chunk, conn.dialect.name)).order_by(jobs.c.id)
        )
        if owner_id is not None:
            query = query.where(jobs.c.owner_id == owner_id)
        if postgres:
            query = query.with_for_update()
        found.update((row.id, row) for row in conn.execute(query) if row.id in wanted)
    if site_id is not None:  # a site acts only on jobs bound to it
        found = {k: row for k, row in found.items() if row.site_id == site_id and not row.awaiting_placement}
    return found


@dataclass(frozen=True)
class AppRules:
    """What the service needs to know of an app to take the default steps itself."""

    hooks: frozenset[str] = frozenset()
    retry_on_error: bool = True


def app_rules(conn: Connection, app_ids: set[int]) -> dict[int, AppRules]:
    """The hooks each app overrides and whether it retries a failed run."""
    result: dict[int, AppRules] = {}
    for chunk in chunked(sorted(app_ids)):
        query = sa.select(apps.c.id, apps.c.hooks, apps.c.retry_on_error).where(apps.c.id.in_(chunk))
        for row in conn.execute(query):
            result[row.id] = AppRules(frozenset(row.hooks or ()), bool(row.retry_on_error))
    return result


def automatic_next(
    state: JobState,
    *,
    hooks: frozenset[str],
    has_stage_ins: bool,
    has_stage_outs: bool,
    retries_left: bool,
    retry_on_error: bool = True,
) -> tuple[JobState, str] | None:
    """The step the service takes by itself from ``state``, with its reason, or None."""
    if state is S.READY and not has_stage_ins:
        return S.STAGED_IN, "no stage-ins"
    if state is S.STAGED_IN and AppHook.PREPROCESS not in hooks:
        return S.PREPROCESSED, "app has no preprocess hook"
    if state is S.RUN_DONE and AppHook.POSTPROCESS not in hooks:
        return S.POSTPROCESSED, "app has no postprocess hook"
    if state is S.POSTPROCESSED and not has_stage_outs:
        return S.JOB_FINISHED, "no stage-outs"
    if state is S.RUN_ERROR and AppHook.HANDLE_ERROR not in hooks:
        if not retry_on_error:
            return S.FAILED, "run failed; the app does not retry failed runs (retry_on_error=False)"
        if retries_left:
            return S.RESTART_READY, "run failed; retrying"
        return S.FAILED, "run failed; retry limit reached"
    if state is S.RUN_TIMEOUT and AppHook.HANDLE_TIMEOUT not in hooks:
        if retries_left:
            return S.RESTART_READY, "timed out; retrying (default handle_timeout)"
        return S.FAILED, "timed out; retry limit reached"
    return None


def apply_transitions(
    conn: Connection,
    requests: list[TransitionRequest],
    *,
    now: datetime,
    owner_id: int | None,
    actor: str,
    site_id: int | None = None,
    locked: dict[int, JobRow] | None = None,
    tally: activity.Tally | None = None,
) -> Outcome:
    """Validate and apply ``requests`` (in order; a job may appear more than once), then cascade.

    ``actor`` is who asked (recorded on the requested changes' events; the service's own steps are
    ``system``).

    ``owner_id``/``site_id`` restrict which jobs may be touched (others count as missing, which the caller
    must have checked); ``locked`` passes rows the caller already read with :func:`lock_jobs`. The state
    changes are counted in ``activity_minutes`` once, at the end (cascaded steps pass ``tally`` down).
    """
    if not requests:
        return Outcome()
    deciding = [r.job_id for r in requests if r.may_decide_a_hedge]
    rows = (
        locked
        if locked is not None
        else lock_jobs(
            conn,
            [r.job_id for r in requests],
            owner_id=owner_id,
            site_id=site_id,
            with_partners=bool(deciding),
        )
    )
    missing = sorted({r.job_id for r in requests} - rows.keys())
    if missing:
        raise NotFoundError(
            f"job {missing[0]} not found" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""),
            ids=missing[:100],
        )
    pairs = hedges.links(conn, deciding) if deciding else {}
    others = (
        lock_jobs(conn, [link.partner for link in pairs.values()], owner_id=None, site_id=None)
        if pairs
        else {}
    )
    rules = app_rules(conn, {row.app_id for row in (*rows.values(), *others.values())})
    work: dict[int, _Work] = {}
    refused: list[dict[str, Any]] = []
    for request in requests:
        row = rows[request.job_id]
        item = work.get(request.job_id)
        if item is None:
            item = work[request.job_id] = _Work(row, S(row.state), row.retry_count)
        item.fields.update(request.fields)
        if request.state is None:
            continue
        try:
            if request.retry and item.state in RETRYABLE_STATES:
                check_retry(item.state, request.state)
            else:
                check_transition(item.state, request.state)
        except IllegalTransition as exc:
            refused.append(
                {
                    "id": request.job_id,
                    "state": exc.current,
                    "requested": exc.requested,
                    "allowed": exc.allowed,
                }
            )
            continue
        at = _event_time(request.at, row.updated_at, now)
        _step(item, request.state, request.data, at, actor)
        link = pairs.get(request.job_id)
        if link is not None and not link.original and item.state is S.RUN_DONE:
            continue  # a copy's finished run: the pair is decided below, before anything else happens to it
        _run_automatic(item, rules.get(row.app_id, AppRules()), now)
    if refused:
        first = refused[0]
        raise ConflictError(
            f"{len(refused)} illegal transition(s), nothing changed; job {first['id']} cannot move from "
            f"{first['state']} to {first['requested']} (allowed next states: "
            f"{', '.join(first['allowed']) or _terminal_note(first['state'])})",
            errors=refused[:100],
        )
    if pairs:
        _decide_pairs(conn, work, pairs, {**others, **rows}, rules, now)
    return _write(conn, work, now, tally)


def _decide_pairs(
    conn: Connection,
    work: dict[int, _Work],
    pairs: dict[int, hedges.Link],
    rows: dict[int, JobRow],
    rules: dict[int, AppRules],
    now: datetime,
) -> None:
    """Decide the hedged pairs the batch's changes touched (see :mod:`beambridge.server.jobs.hedges`)."""
    seen: set[tuple[int, int]] = set()
    for job_id, link in pairs.items():
        original, copy = (job_id, link.partner) if link.original else (link.partner, job_id)
        if (original, copy) in seen or original not in rows or copy not in rows:
            continue
        seen.add((original, copy))
        o_item = work.get(original) or _Work(
            rows[original], S(rows[original].state), rows[original].retry_count
        )
        c_item = work.get(copy) or _Work(rows[copy], S(rows[copy].state), rows[copy].retry_count)
        copy_finished = c_item.state is S.RUN_DONE and any(step[1] is S.RUN_DONE for step in c_item.steps)
        if copy_finished and o_item.state in ADOPT_TRANSITIONS:
            _adopt(conn, o_item, c_item, rules, now)
        elif copy_finished:
            reason = f"job {original} is {o_item.state}: this copy's run is not needed"
            _step(c_item, S.KILLED, {"hedge": "not needed", "job": original, "reason": reason}, now, SYSTEM)
        elif c_item.state in TERMINAL_STATES:
            continue
        elif o_item.state in RUN_ENDED_STATES:
            reason = f"hedge lost: job {original} finished its run first"
            _step(c_item, S.KILLED, {"hedge": "lost", "job": original, "reason": reason}, now, SYSTEM)
            _note_after_run(
                o_item, {"hedge": "original won", "copy": copy, "reason": f"copy {copy} cancelled"}
            )
        elif o_item.state in TERMINAL_STATES:
            reason = f"job {original} is {o_item.state}: its copy stops too"
            _step(c_item, S.KILLED, {"hedge": "ended", "job": original, "reason": reason}, now, SYSTEM)
        else:
            continue
        work.setdefault(original, o_item)
        work.setdefault(copy, c_item)


def _note_after_run(item: _Work, data: dict[str, Any]) -> None:
    """An event (``RUN_DONE`` → ``RUN_DONE``) right after the job's run finished, saying what that decided."""
    done = [i for i, step in enumerate(item.steps) if step[1] is S.RUN_DONE]
    at = item.steps[done[-1]][3] if done else item.row.updated_at
    item.steps.insert(done[-1] + 1 if done else len(item.steps), (S.RUN_DONE, S.RUN_DONE, data, at, SYSTEM))


def _adopt(conn: Connection, o_item: _Work, c_item: _Work, rules: dict[int, AppRules], now: datetime) -> None:
    """The copy's run finished first: the original takes it as its own and carries on at the copy's site."""
    original, copy = o_item.row.id, c_item.row.id
    adopted = hedges.adoption(conn, copy, c_item.fields)
    hedges.move_to_copy_site(conn, original, o_item.row.session_id, adopted, now)
    run_data = next(step[2] for step in reversed(c_item.steps) if step[1] is S.RUN_DONE)
    check_adopt(o_item.state, S.RUN_DONE)
    data = {
        "hedge": "copy won",
        "copy": copy,
        "reason": f"the run of its hedged copy {copy} finished first; this job takes it as its own",
        **{key: value for key, value in run_data.items() if key == "logs"},
    }
    if o_item.state is S.RUNNING:
        data["stopped_run"] = f"its own run at site {o_item.row.site_id} is stopped"
    _step(o_item, S.RUN_DONE, data, now, SYSTEM)
    o_item.fields.update(adopted.fields)
    killed = {"hedge": "won", "job": original, "reason": f"job {original} took this run as its own"}
    _step(c_item, S.KILLED, killed, now, SYSTEM)
    _run_automatic(o_item, rules.get(adopted.app_id, AppRules()), now)


def _terminal_note(state: JobState) -> str:
    if state in RETRYABLE_STATES:
        return "none, it is terminal; a retry sends it back to run (POST /jobs/retry, beambridge job retry)"
    return "none, it is terminal"


def _event_time(reported: datetime | None, last_change: datetime, now: datetime) -> datetime:
    """When a reported change happened: the reporter's clock, kept between the job's last change and now,
    so a skewed launcher clock can never make a job's history run backwards."""
    if reported is None:
        return now
    if last_change.tzinfo is None:  # SQLite returns naive UTC
        last_change = last_change.replace(tzinfo=now.tzinfo)
    if reported.tzinfo is None:
        reported = reported.replace(tzinfo=now.tzinfo)
    return min(max(reported, last_change), now)


def _step(item: _Work, to_state: JobState, data: dict[str, Any], at: datetime, actor: str) -> None:
    item.steps.append((item.state, to_state, data, at, actor))
    if to_state is S.RESTART_READY:
        item.retry_count += 1
    elif item.state in RETRYABLE_STATES:  # a user's retry: a fresh set of automatic retries
        item.retry_count = 0
    item.state = to_state


def _run_automatic(item: _Work, rules: AppRules, now: datetime) -> None:
    while True:
        nxt = automatic_next(
            item.state,
            hooks=rules.hooks,
            has_stage_ins=item.row.has_stage_ins,
            has_stage_outs=item.row.has_stage_outs,
            retries_left=item.retry_count < item.row.retry_limit,
            retry_on_error=rules.retry_on_error,
        )
        if nxt is None:
            return
        data: dict[str, Any] = {"auto": nxt[1]}
        if nxt[0] is S.RESTART_READY:
            data["retry"] = f"{item.retry_count + 1} of {item.row.retry_limit}"
        _step(item, nxt[0], data, now, SYSTEM)


def _write(conn: Connection, work: dict[int, _Work], now: datetime, tally: activity.Tally | None) -> Outcome:
    outcome = Outcome()
    counts = activity.Tally() if tally is None else tally
    # Rows that get the same new values (a whole batch moving to RUNNING, say) share one UPDATE … WHERE id IN.
    updates: dict[bytes, tuple[dict[str, Any], list[int]]] = {}
    event_rows: list[dict[str, Any]] = []
    finished: list[int] = []
    failed: dict[int, JobState] = {}
    for job_id, item in work.items():
        row = item.row
        params: dict[str, Any] = {"updated_at": now, **item.fields}
        if item.steps:
            params["state"] = item.state.value
            params["retry_count"] = item.retry_count
            # A job leaving RUNNING is no longer held by its session; KILLED stays linked so the
            # session's heartbeat can tell the launcher to stop it.
            params["session_id"] = item.row.session_id if item.state in (S.RUNNING, S.KILLED) else None
            for from_state, to_state, data, at, actor in item.steps:
                if from_state is not to_state:
                    counts.change(row.owner_id, item.fields.get("site_id", row.site_id), row.app_id,
                                  row.experiment, to_state.value, at)  # fmt: skip
                event_rows.append(
                    {
                        "job_id": job_id,
                        "owner_id": row.owner_id,
                        "site_id": item.fields.get("site_id", row.site_id),
                        "from_state": from_state.value,
                        "to_state": to_state.value,
                        "timestamp": at,
                        "data": data,
                        "actor": actor,
                    }
                )
            outcome.wake_keys.add(("owner", row.owner_id))
            if item.state in RUNNABLE_STATES:
                outcome.wake_keys.add(("site", item.fields.get("site_id", row.site_id)))
            elif item.state is S.JOB_FINISHED:
                finished.append(job_id)
            elif item.state in (S.FAILED, S.KILLED):
                failed[job_id] = item.state
        key = orjson.dumps(params, option=orjson.OPT_SORT_KEYS, default=str)
        updates.setdefault(key, (params, []))[1].append(job_id)
        outcome.job_ids.append(job_id)
    for values, ids in updates.values():
        for chunk in chunked(ids):
            conn.execute(jobs.update().where(id_in(jobs.c.id, chunk, conn.dialect.name)).values(values))
    bulk_insert(conn, events, event_rows)
    _record_runs(conn, work)
    if finished:
        outcome.merge(_release_children(conn, finished, now, counts))
    if failed:
        outcome.merge(_fail_children(conn, failed, now, counts))
    if tally is None:  # the outermost write: its rows stay locked until the commit, so count last
        activity.record(conn, counts)
    return outcome


def _run_start(row: JobRow, data: dict[str, Any], at: datetime) -> dict[str, Any]:
    node = data.get("node")
    slot = data.get("slot")
    return {
        "job_id": row.id, "owner_id": row.owner_id, "site_id": row.site_id, "app_id": row.app_id,
        "batch_job_id": row.batch_job_id, "node": node[:255] if isinstance(node, str) else "",
        "slot": slot if isinstance(slot, int) and not isinstance(slot, bool) and 0 <= slot < 2**31 else None,
        "started_at": at, "ended_at": None, "end_state": None,
    }  # fmt: skip


def _record_runs(conn: Connection, work: dict[int, _Work]) -> None:
    """Keep ``job_runs`` with the events: a run opens at → RUNNING (node and slot from the launcher's
    report) and closes when the job leaves RUNNING. A run opened and closed in one batch is inserted whole."""
    new: list[dict[str, Any]] = []
    closing: list[dict[str, Any]] = []
    for item in work.values():
        current: dict[str, Any] | None = None
        for from_state, to_state, data, at, _actor in item.steps:
            if to_state is S.RUNNING:
                current = _run_start(item.row, data, at)
                new.append(current)
            elif from_state is S.RUNNING:
                # a run overtaken by its hedged copy's (the job adopted that one) was stopped, not done
                end = S.KILLED.value if data.get("hedge") == "copy won" else to_state.value
                if current is not None:
                    current["ended_at"], current["end_state"] = at, end
                    current = None
                else:
                    closing.append({"run_job": item.row.id, "run_end": at, "run_state": end})
    if closing:
        conn.execute(
            job_runs.update()
            .where(job_runs.c.job_id == sa.bindparam("run_job"), job_runs.c.ended_at.is_(None))
            .values(ended_at=sa.bindparam("run_end"), end_state=sa.bindparam("run_state")),
            closing,
        )
    if new:
        conn.execute(job_runs.insert(), new)


def _waiting_children(conn: Connection, parent_ids: list[int]) -> dict[int, JobRow]:
    children: dict[int, JobRow] = {}
    for chunk in chunked(parent_ids):
        query = (
            sa.select(*_LOCK_COLUMNS, job_parents.c.parent_id)
            .join(job_parents, job_parents.c.child_id == jobs.c.id)
            .where(
                id_in(job_parents.c.parent_id, chunk, conn.dialect.name),
                jobs.c.state == S.AWAITING_PARENTS.value,
            )
            .order_by(jobs.c.id)
        )
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(of=jobs)
        for row in conn.execute(query):
            children.setdefault(row.id, row)
    return children


def _release_children(conn: Connection, finished: list[int], now: datetime, tally: activity.Tally) -> Outcome:
    children = _waiting_children(conn, finished)
    if not children:
        return Outcome()
    ready: list[int] = []
    for chunk in chunked(sorted(children)):
        parent = jobs.alias("parent")
        unfinished = sa.func.sum(sa.case((parent.c.state != S.JOB_FINISHED.value, 1), else_=0))
        query = (
            sa.select(job_parents.c.child_id)
            .join(parent, parent.c.id == job_parents.c.parent_id)
            .where(job_parents.c.child_id.in_(chunk))
            .group_by(job_parents.c.child_id)
            .having(unfinished == 0)
        )
        ready.extend(conn.execute(query).scalars())
    requests = [
        TransitionRequest(
            job_id,
            released_state(has_stage_ins=children[job_id].has_stage_ins),
            {"reason": "all parents finished"},
        )
        for job_id in sorted(ready)
    ]
    outcome = apply_transitions(
        conn, requests, now=now, owner_id=None, actor=SYSTEM, locked=children, tally=tally
    )
    if requests:  # children the service places when they can run (late binding) wait for its next cycle
        outcome.wake_keys.add(("placement", 0))
    return outcome


def _fail_children(
    conn: Connection, failed: dict[int, JobState], now: datetime, tally: activity.Tally
) -> Outcome:
    children = _waiting_children(conn, sorted(failed))
    requests = [
        TransitionRequest(
            child.id,
            S.FAILED,
            {"reason": f"parent job {child.parent_id} is {failed[child.parent_id]}"},
        )
        for child in children.values()
    ]
    return apply_transitions(
        conn, requests, now=now, owner_id=None, actor=SYSTEM, locked=children, tally=tally
    )
