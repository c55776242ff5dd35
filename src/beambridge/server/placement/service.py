"""Placing jobs that name an app and a set of sites: at creation, when they become runnable, and away
from a site that stopped taking work.

At creation (:meth:`PlacementService.plan_creation`, inside the create transaction) every runnable job of
the request is placed in one batch on one snapshot; a job with unfinished parents is only checked for
eligibility and waits, ``awaiting_placement``, until it becomes runnable (late binding); a job no site
can run is refused with each site's reason. Every cycle (:meth:`PlacementService.cycle`) binds the
waiting jobs that became runnable and re-places the unclaimed jobs of sites that are down or draining.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from beambridge.logs import get_logger
from beambridge.placement import (
    BatchResult,
    Decision,
    EligibilityCache,
    HealthThresholds,
    Hedge,
    JobRequest,
    Outcome,
    PlacedJob,
    SiteEstimate,
    SiteStatus,
    eligibility,
    hedges,
    place_batch,
)
from beambridge.schemas.jobs import JobCreate, transfer_ref
from beambridge.schemas.transfers import TransferState
from beambridge.server.audit import PLACEMENT
from beambridge.server.auth.tokens import Principal
from beambridge.server.db.tables import events, job_placements, jobs, site_groups, sites, transfer_items
from beambridge.server.errors import InvalidRequestError
from beambridge.server.jobs.parameters import resolve_parameters
from beambridge.server.placement.snapshot import (
    WAITING_STATES,
    HistoryCache,
    ServiceSnapshot,
    build_snapshot,
)
from beambridge.server.settings import ServerSettings
from beambridge.server.wakeups import WakeKey

log = get_logger("beambridge.placement")

DeferralKey = tuple[tuple[str, str, str], ...]


@dataclass(frozen=True, slots=True)
class Plan:
    """Where a new job goes: its site and app, whether it still waits to be bound, and the decision."""

    site_id: int
    app_id: int
    awaiting: bool
    decision: Decision | None
    group: int | None = None
    """The request index of the first job of the group this one was placed with (None: alone)."""
    group_size: int = 1


@dataclass(frozen=True, slots=True)
class Wanted:
    """What a job asked placement for, resolved: eligible sites (empty: all), group, policy."""

    sites: tuple[str, ...]
    group: str | None
    policy: str | None


def decision_event_data(decision: Decision, job_id: int, kind: str, **extra: Any) -> dict[str, Any]:
    """The data of a placement event: what happened (``placed``, ``deferred``, ``re-placed``…) and why."""
    return {"placement": kind, **extra, "decision": {**decision.to_dict(), "job": job_id}}


_CANDIDATE = SiteStatus.CANDIDATE


class DecisionEvents:
    """The data of the placement events of one batch, small: each site's estimate is serialised once
    however many decisions share it (a group's non-chosen sites keep theirs until they are chosen), the
    figures at their defaults are left out, and in a group of alike jobs only the first job's event
    carries every site's estimate; the others carry the chosen site's, the runner-up's and those of
    sites that could not take the job (with their reasons), and name the candidates left out."""

    def __init__(self) -> None:
        self._dicts: dict[int, tuple[SiteEstimate, dict[str, Any]]] = {}

    def estimate(self, estimate: SiteEstimate) -> dict[str, Any]:
        """The compact JSON of ``estimate``, made once however many decisions share it."""
        entry = self._dicts.get(id(estimate))
        if entry is None or entry[0] is not estimate:
            entry = self._dicts[id(estimate)] = (estimate, estimate.to_compact_dict())
        return entry[1]

    def data(
        self,
        decision: Decision,
        job_id: int,
        kind: str,
        group: tuple[int, int] | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """The event data of ``decision`` for ``job_id``; ``group``: (first job id, jobs) of its group."""
        shown = decision.estimates
        omitted: list[str] = []
        if group is not None and group[0] != job_id:
            runner: SiteEstimate | None = None  # the best other candidate (Decision.runner_up, inlined)
            for e in shown:
                better = runner is None or (e.finish_s or 0.0) < (runner.finish_s or 0.0)
                if e.status is _CANDIDATE and e.finish_s is not None and better:
                    runner = e
            kept = []
            for e in shown:
                if e.status is not _CANDIDATE or e is runner:
                    kept.append(e)
                else:
                    omitted.append(e.site)
            shown = tuple(kept)
        body: dict[str, Any] = {
            "job": job_id,
            "policy": decision.policy,
            "outcome": decision.outcome.value,
            "site": decision.site,
            "reason": decision.reason,
            "at": decision.at,
            "explored": decision.explored,
            "estimates": [self.estimate(e) for e in shown],
        }
        if group is not None:
            body["group"] = {"jobs": group[1], "first_job": group[0], "omitted": omitted}
        return {"placement": kind, **extra, "decision": body}


class PlacementService:
    """Placement state the service keeps between requests: cached history, eligibility, cursors."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.history = HistoryCache(ttl_s=settings.placement_history_ttl_s)
        self.eligibility_cache = EligibilityCache()
        self._cursors: dict[int, int] = defaultdict(int)
        self._lock = threading.Lock()
        self._deferred: dict[int, tuple[DeferralKey, float]] = {}

    @property
    def thresholds(self) -> HealthThresholds:
        s = self.settings
        return HealthThresholds(
            heartbeat_degraded_s=s.site_degraded_after_s,
            heartbeat_down_s=s.site_down_after_s,
            scheduler_failures_degraded=s.site_scheduler_failures_degraded,
            scheduler_failures_down=max(s.site_scheduler_failures_down, s.site_scheduler_failures_degraded),
        )

    def snapshot(
        self,
        conn: Connection,
        owner_id: int,
        now: datetime,
        only_site_id: int | None = None,
        *,
        counts: bool = True,
    ) -> ServiceSnapshot:
        """The owner's sites now (``counts=False``: their health and apps only, see :func:`build_snapshot`)."""
        return build_snapshot(
            conn,
            owner_id,
            now.timestamp(),
            thresholds=self.thresholds,
            cache=self.history,
            only_site_id=only_site_id,
            round_robin_cursor=self._cursors[owner_id],
            counts=counts,
        )

    def place(
        self,
        owner_id: int,
        jobs: list[JobRequest],
        snap: ServiceSnapshot,
        avoid: dict[Any, dict[str, str]] | None = None,
    ) -> BatchResult:
        """Decisions for ``jobs`` on ``snap`` (each job's own policy, else the server default)."""
        with self._lock:
            result = place_batch(
                jobs,
                snap.snapshot,
                self.settings.placement_policy,
                avoid=avoid,
                cache=self.eligibility_cache,
            )
            self._cursors[owner_id] = result.round_robin_cursor
        return result

    def explain_deferral(
        self,
        job_id: int,
        decision: Decision,
        recorded: Callable[[], tuple[DeferralKey, float] | None] | None = None,
    ) -> bool:
        """Whether a job the cycle could not place again gets a ``deferred`` event now: when the sites'
        statuses behind it changed since its last one (a site went down, was drained, filled up…), and at
        least every ``placement_deferred_event_s`` while it waits. Remembered in memory; ``recorded`` reads
        the job's last such event when memory has nothing to say (after a restart, or another server
        process wrote it)."""
        key = deferral_key(decision.estimates)
        last = self._deferred.get(job_id)
        if last is None or last[0] != key:
            last = recorded() if recorded is not None else None
        fresh = last is not None and decision.at - last[1] < self.settings.placement_deferred_event_s
        if last is not None and last[0] == key and fresh:
            self._deferred[job_id] = last
            return False
        if len(self._deferred) >= 100_000:
            self._deferred.clear()
        self._deferred[job_id] = (key, decision.at)
        return True

    def placed(self, job_id: int) -> None:
        """The job was bound: forget its deferrals."""
        self._deferred.pop(job_id, None)

    def hedges(self, placed: list[PlacedJob], snap: ServiceSnapshot, *, max_copies: int) -> list[Hedge]:
        """The copies to make of ``placed``'s overdue hedge-flagged jobs (at most ``max_copies``)."""
        with self._lock:
            return hedges(
                placed,
                snap.snapshot,
                policy=self.settings.placement_policy,
                max_copies=max_copies,
                cache=self.eligibility_cache,
            )

    def resolve(self, conn: Connection, principal: Principal, specs: list[JobCreate]) -> list[Wanted]:
        """Each spec's eligible sites and policy (a site group's sites and policy; 422 for an unknown group)."""
        names = {spec.site_group for spec in specs if spec.site_group is not None}
        groups: dict[str, Any] = {}
        if names:
            query = sa.select(site_groups).where(
                site_groups.c.owner_id == principal.user_id, site_groups.c.name.in_(sorted(names))
            )
            groups = {row.name: row for row in conn.execute(query)}
        missing = sorted(names - groups.keys())
        if missing:
            raise InvalidRequestError(
                f"no site group named {missing[0]!r}: create it with 'beambridge site group create'"
            )
        out = []
        for spec in specs:
            group = groups.get(spec.site_group) if spec.site_group is not None else None
            sites = tuple(spec.sites or (group.sites if group is not None else ()))
            policy = spec.policy or (group.policy if group is not None else None)
            out.append(Wanted(sites, spec.site_group, policy))
        return out

    def plan_creation(
        self,
        conn: Connection,
        principal: Principal,
        specs: dict[int, JobCreate],
        wanted: dict[int, Wanted],
        waiting_for_parents: set[int],
        now: datetime,
    ) -> dict[int, Plan]:
        """Plans for the specs (by their index in the request) that name an app by name.

        Raises :class:`InvalidRequestError` (422) naming, for each job no site can run, every site's reason.
        """
        snap = self.snapshot(conn, principal.user_id, now, principal.site_id)
        requests = {
            index: JobRequest(
                key=index,
                app=spec.app or "",
                sites=wanted[index].sites,
                parameters=spec.parameters,
                transfers={slot: transfer_ref(value) for slot, value in spec.transfers.items()},
                priority=spec.priority,
                hedge=spec.hedge,
                policy=wanted[index].policy,
            )
            for index, spec in specs.items()
        }
        plans: dict[int, Plan] = {}
        problems: list[str] = []
        runnable = [requests[i] for i in specs if i not in waiting_for_parents]
        result = self.place(principal.user_id, runnable, snap) if runnable else BatchResult((), 0, ())
        sizes: dict[int, int] = defaultdict(int)
        for lead in result.groups:
            sizes[lead] += 1
        for decision, lead in zip(result.decisions, result.groups, strict=True):
            index = cast(int, decision.job)
            first = cast(int, runnable[lead].key)
            group = (first, sizes[lead]) if sizes[lead] > 1 else (None, 1)
            if decision.outcome is Outcome.REFUSED:
                problems.append(f"[{index}]: {decision.reason}")
            elif decision.outcome is Outcome.PLACED:
                assert decision.site is not None
                ref = snap.refs[decision.site]
                plans[index] = Plan(ref.id, ref.app_ids[requests[index].app], False, decision, *group)
            else:  # deferred: held at an eligible site until one takes work
                site = _first_eligible(decision)
                ref = snap.refs[site]
                plans[index] = Plan(ref.id, ref.app_ids[requests[index].app], True, decision, *group)
        for index in sorted(waiting_for_parents & specs.keys()):
            reasons = eligibility(requests[index], snap.snapshot)
            ok = [name for name, why in reasons.items() if not why]
            if not ok:
                detail = "; ".join(f"{name}: {', '.join(why)}" for name, why in reasons.items())
                problems.append(f"[{index}]: no site can run this job: {detail or 'you have no sites'}")
                continue
            ref = snap.refs[ok[0]]
            plans[index] = Plan(ref.id, ref.app_ids[requests[index].app], True, None)
        if problems:
            problems.sort(key=lambda text: int(text[1 : text.index("]")]))
            more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
            raise InvalidRequestError("; ".join(problems[:10]) + more, errors=problems[:1000])
        return plans


def _first_eligible(decision: Decision) -> str:
    for estimate in decision.estimates:
        if estimate.status.value != "ineligible":
            return estimate.site
    raise AssertionError("a deferred decision has an eligible site")


def deferral_key(estimates: Iterable[Any]) -> DeferralKey:
    """What a deferral's reasons are, for telling whether they changed: each site's status and health."""
    out = []
    for e in estimates:
        if isinstance(e, dict):
            out.append((str(e.get("site")), str(e.get("status")), str(e.get("health"))))
        else:
            out.append((e.site, e.status.value, str(e.health)))
    return tuple(out)


def last_deferral(conn: Connection, job_id: int) -> tuple[DeferralKey, float] | None:
    """The key and time of the job's newest ``deferred``/``not moved`` event, if its newest placement
    event is one."""
    query = (
        sa.select(events.c.data)
        .where(events.c.job_id == job_id, events.c.from_state == events.c.to_state)
        .order_by(events.c.id.desc())
        .limit(1)
    )
    data = conn.execute(query).scalar()
    if not isinstance(data, dict) or data.get("placement") not in ("deferred", "not moved"):
        return None
    decision = data.get("decision") or {}
    return deferral_key(decision.get("estimates") or ()), float(decision.get("at") or 0.0)


PLACEMENT_WAKE: WakeKey = ("placement", 0)
"""Notified when jobs waiting to be placed may have become runnable (their parents finished)."""


@dataclass
class CycleReport:
    """What one placement cycle did."""

    bound: list[int] = field(default_factory=list)
    replaced: list[int] = field(default_factory=list)
    hedged: list[tuple[int, int]] = field(default_factory=list)
    """(original, copy) of the hedged copies made."""
    deferred: int = 0
    wake_keys: set[WakeKey] = field(default_factory=set)


_WAITING = [state.value for state in WAITING_STATES]
_OPEN_TRANSFER = [TransferState.ACTIVE.value, TransferState.DONE.value, TransferState.ERROR.value]


_OWN = job_placements.alias("own_placement")
_GROUP = job_placements.alias("group_placement")


def _candidates(conn: Connection, owner_id: int, leaving: list[int], awaiting: bool) -> list[Any]:
    """The owner's jobs to (re-)place: those waiting to be bound that can run (if ``awaiting``: some
    wait), and the unclaimed jobs of ``leaving`` sites (no launcher holds them, no transfer of theirs has
    started). Each with what it asked placement for: its own ``job_placements`` row, else its shared
    group's (:mod:`beambridge.server.placement.shared`; its parameters are then the job's own, stored as
    given). Two queries, each on its own index: the partial index of waiting jobs, and the sites'
    (site, state) index; never the backlog of placed jobs."""
    rows: dict[int, Any] = {}
    if awaiting:
        waiting = _candidate_query(conn).where(jobs.c.id.in_(_awaiting(owner_id)), jobs.c.state.in_(_WAITING))
        rows.update((row.id, row) for row in conn.execute(waiting))
    if leaving:
        started = sa.exists().where(
            transfer_items.c.job_id == jobs.c.id, transfer_items.c.state.in_(_OPEN_TRANSFER)
        )
        unclaimed = _candidate_query(conn).where(
            jobs.c.site_id.in_(leaving),
            jobs.c.state.in_(_WAITING),
            jobs.c.owner_id == owner_id,
            jobs.c.awaiting_placement.is_(False),
            jobs.c.session_id.is_(None),
            ~started,
        )
        rows.update((row.id, row) for row in conn.execute(unclaimed))
    return [rows[job_id] for job_id in sorted(rows)][:50_000]


def _candidate_query(conn: Connection) -> sa.Select[Any]:
    """Jobs with the placement request behind them (their own row, else their group's)."""
    query = (
        sa.select(
            jobs.c.id,
            jobs.c.site_id,
            jobs.c.state,
            jobs.c.session_id,
            jobs.c.awaiting_placement,
            jobs.c.transfers,
            jobs.c.priority,
            jobs.c.placed_with,
            (_OWN.c.job_id.is_not(None)).label("own_row"),
            sa.func.coalesce(_OWN.c.app_name, _GROUP.c.app_name).label("app_name"),
            sa.func.coalesce(_OWN.c.sites, _GROUP.c.sites).label("sites"),
            sa.func.coalesce(_OWN.c.policy, _GROUP.c.policy).label("policy"),
            sa.func.coalesce(_OWN.c.hedge, _GROUP.c.hedge).label("hedge"),
            sa.func.coalesce(_OWN.c.parameters, jobs.c.parameters).label("parameters"),
            sa.func.coalesce(_OWN.c.site_group, _GROUP.c.site_group).label("site_group"),
            _OWN.c.hedge_job_id,
        )
        .select_from(
            jobs.outerjoin(_OWN, _OWN.c.job_id == jobs.c.id).outerjoin(
                _GROUP, _GROUP.c.job_id == jobs.c.placed_with
            )
        )
        .where(sa.or_(_OWN.c.job_id.is_not(None), _GROUP.c.job_id.is_not(None)))
        .order_by(jobs.c.id)
        .limit(50_000)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(of=jobs, skip_locked=True)
    return query


def _awaiting(owner_id: int) -> sa.Select[Any]:
    """The ids of the owner's jobs waiting to be placed: owner and flag only, so that the partial index
    of such jobs answers it (with the state in it too, SQLite reads the (owner, state) index instead:
    the whole backlog)."""
    return sa.select(jobs.c.id).where(jobs.c.owner_id == owner_id, jobs.c.awaiting_placement.is_(True))


def _has_awaiting(conn: Connection, owner_id: int) -> bool:
    """Whether the owner has jobs waiting to be placed."""
    return conn.execute(_awaiting(owner_id).limit(1)).first() is not None


def _owners_with_sites(conn: Connection) -> list[int]:
    """Users who have sites (only they can have jobs to place or to move)."""
    return list(conn.execute(sa.select(sites.c.owner_id).distinct().order_by(sites.c.owner_id)).scalars())


def run_cycle(service: PlacementService, conn: Connection, now: datetime) -> CycleReport:
    """Bind the waiting jobs that can run now; move the unclaimed jobs of down or draining sites.

    Runs in one write transaction: a job moves only if it is still unclaimed when it is updated (the
    update re-checks it), so a launcher acquiring it at the same moment either gets it before (and it
    stays) or never sees it at its old site.
    """
    report = CycleReport()
    for owner_id in _owners_with_sites(conn):
        # health first (cheap: no backlog counts, no history); the full snapshot only if a job moves
        health = service.snapshot(conn, owner_id, now, counts=False)
        leaving = [health.refs[s.name].id for s in health.snapshot.sites if not s.health.accepts_work]
        awaiting = _has_awaiting(conn, owner_id)
        if not leaving and not awaiting:
            continue
        rows = _candidates(conn, owner_id, leaving, awaiting)
        if not rows:
            continue
        snap = service.snapshot(conn, owner_id, now)
        names = snap.names_by_id()
        requests = [
            JobRequest(
                key=row.id,
                app=row.app_name,
                sites=tuple(row.sites),
                parameters=row.parameters,
                transfers={slot: transfer_ref(value) for slot, value in (row.transfers or {}).items()},
                priority=row.priority,
                hedge=row.hedge,
                policy=row.policy,
            )
            for row in rows
        ]
        avoid = {
            row.id: {
                names[
                    row.site_id
                ]: f"the job is leaving {names[row.site_id]!r} ({_why(snap, names[row.site_id])})"
            }
            for row in rows
            if not row.awaiting_placement and row.site_id in names
        }
        for job_id, site_id in _partner_sites(
            conn, rows
        ).items():  # never both runs of a hedged pair at one site
            if site_id in names:
                avoid.setdefault(job_id, {})[names[site_id]] = "the job's hedged pair runs here"
        by_id = {row.id: row for row in rows}
        for decision in service.place(owner_id, requests, snap, avoid).decisions:
            row = by_id[cast(int, decision.job)]
            if decision.site is None:
                report.deferred += 1
                if service.explain_deferral(row.id, decision, partial(last_deferral, conn, row.id)):
                    _deferred_event(conn, owner_id, row, decision, now)
                continue
            service.placed(row.id)
            if bind(conn, snap, owner_id, row, decision, now):
                (report.bound if row.awaiting_placement else report.replaced).append(row.id)
                report.wake_keys |= {("site", snap.site_id(decision.site)), ("owner", owner_id)}
    return report


def _deferred_event(conn: Connection, owner_id: int, row: Any, decision: Decision, now: datetime) -> None:
    """Why a job still is not placed (or not moved off a site that stopped taking work)."""
    kind = "deferred" if row.awaiting_placement else "not moved"
    _placement_event(conn, owner_id, row, row.site_id, decision_event_data(decision, row.id, kind), now)


def _placement_event(
    conn: Connection, owner_id: int, row: Any, site_id: int, data: dict[str, Any], now: datetime
) -> None:
    """A placement decision in the job's history: an event that keeps its state, by the placement actor."""
    conn.execute(
        events.insert().values(
            job_id=row.id,
            owner_id=owner_id,
            site_id=site_id,
            from_state=row.state,
            to_state=row.state,
            timestamp=now,
            data=data,
            actor=PLACEMENT,
        )
    )


def _own_placement(conn: Connection, row: Any, owner_id: int) -> None:
    """A row of its own for a job of a shared group (its group's request, its own given parameters)."""
    conn.execute(
        job_placements.insert().values(
            job_id=row.id,
            owner_id=owner_id,
            app_name=row.app_name,
            sites=list(row.sites),
            site_group=row.site_group,
            policy=row.policy,
            hedge=bool(row.hedge),
            parameters=row.parameters,
            decided_at=None,
            finish_p95_s=None,
            placements=1,
            hedge_job_id=None,
        )
    )


def _partner_sites(conn: Connection, rows: list[Any]) -> dict[int, int]:
    """For the rows of hedged pairs: the site the other job of the pair is at."""
    partner_of = {row.id: row.hedge_job_id for row in rows if row.hedge_job_id is not None}
    if not partner_of:
        return {}
    query = sa.select(jobs.c.id, jobs.c.site_id).where(jobs.c.id.in_(sorted(set(partner_of.values()))))
    site_of = {row.id: row.site_id for row in conn.execute(query)}
    return {job_id: site_of[p] for job_id, p in partner_of.items() if p in site_of}


def _why(snap: ServiceSnapshot, site: str) -> str:
    return snap.snapshot.by_name[site].health.describe()


def bind(
    conn: Connection, snap: ServiceSnapshot, owner_id: int, row: Any, decision: Decision, now: datetime
) -> bool:
    """Bind ``row``'s job to the decision's site if it is still where ``row`` saw it and unclaimed;
    records the placement event. Returns whether it moved."""
    assert decision.site is not None
    ref = snap.refs[decision.site]
    app_id = ref.app_ids[row.app_name]
    parameters, problems = resolve_parameters(row.app_name, ref.app_params[row.app_name], row.parameters)
    if problems:  # eligibility said yes: the app changed between the snapshot and now
        return False
    moved = conn.execute(
        jobs.update()
        .where(
            jobs.c.id == row.id,
            jobs.c.site_id == row.site_id,
            jobs.c.state == row.state,
            jobs.c.session_id.is_(None),
            jobs.c.awaiting_placement.is_(row.awaiting_placement),
        )
        .values(
            site_id=ref.id, app_id=app_id, parameters=parameters, awaiting_placement=False, updated_at=now
        )
    ).rowcount
    if moved != 1:
        return False
    if not row.own_row and parameters != row.parameters:
        # placed with a group whose row keeps no parameters: the job's were stored as given, and now
        # hold this site's defaults too; it keeps what it was given in a row of its own from now on
        _own_placement(conn, row, owner_id)
    slots = ref.app_slots[row.app_name]
    for slot, spec in slots.items():
        conn.execute(
            transfer_items.update()
            .where(transfer_items.c.job_id == row.id, transfer_items.c.slot == slot)
            .values(site_id=ref.id, local_path=spec.local_path, recursive=spec.recursive, updated_at=now)
        )
    chosen = decision.chosen
    conn.execute(
        job_placements.update()
        .where(job_placements.c.job_id == row.id)
        .values(
            decided_at=now,
            finish_p95_s=chosen.finish_p95_s if chosen is not None else None,
            placements=job_placements.c.placements + 1,
        )
    )
    if row.awaiting_placement:
        kind, extra = "placed", {}
    else:
        kind, extra = "re-placed", {"from_site": snap.names_by_id().get(row.site_id)}
    _placement_event(conn, owner_id, row, ref.id, decision_event_data(decision, row.id, kind, **extra), now)
    return True
