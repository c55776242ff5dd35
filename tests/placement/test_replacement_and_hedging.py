"""Re-placing jobs off a site that stopped taking work, and hedging jobs that run late."""

from __future__ import annotations

from beambridge.placement import (
    HealthState,
    Outcome,
    PlacedJob,
    SiteHealth,
    Snapshot,
    hedges,
    jobs_to_replace,
    replace,
)
from tests.placement.builders import job, site

DOWN = SiteHealth(HealthState.DOWN, ("no heartbeat for 6 min",))


def test_unclaimed_jobs_leave_a_down_site_claimed_ones_stay() -> None:
    snap = Snapshot(now=0, sites=(site("dead", health=DOWN), site("alive"), site("other")))
    placed = [
        PlacedJob(job(1), "dead", placed_at=-10),
        PlacedJob(job(2), "dead", placed_at=-10, claimed=True),
        PlacedJob(job(3), "alive", placed_at=-10),
        PlacedJob(job(4), "gone", placed_at=-10),
    ]
    assert [p.job.key for p in jobs_to_replace(placed, snap)] == [1, 4]
    result = replace(placed, snap)
    assert [d.job for d in result.decisions] == [1, 4]
    assert all(d.site in {"alive", "other"} for d in result.decisions)


def test_a_job_is_never_re_placed_onto_the_site_it_leaves() -> None:
    draining = site("maint", run_s=1, health=SiteHealth(HealthState.DRAINING, ("drained by its owner",)))
    snap = Snapshot(now=0, sites=(draining,))
    [decision] = replace([PlacedJob(job(1), "maint", placed_at=0)], snap).decisions
    assert decision.outcome is Outcome.DEFERRED and decision.site is None


def test_hedging_thresholds() -> None:
    snap = Snapshot(now=1000, sites=(site("slow"), site("spare"), site("third")))
    placed = [
        PlacedJob(job("late", hedge=True), "slow", placed_at=0, finish_p95_s=500),
        PlacedJob(job("on-time", hedge=True), "slow", placed_at=0, finish_p95_s=1500),
        PlacedJob(job("not-flagged"), "slow", placed_at=0, finish_p95_s=500),
        PlacedJob(job("has-copy", hedge=True), "slow", placed_at=0, finish_p95_s=500, hedged=True),
        PlacedJob(job("no-estimate", hedge=True), "slow", placed_at=0),
        PlacedJob(job("just-at-p95", hedge=True), "slow", placed_at=500, finish_p95_s=500),
    ]
    [copy] = hedges(placed, snap)
    assert copy.original.job.key == "late" and copy.overdue_s == 500
    assert copy.site in {"spare", "third"}
    [slow] = [e for e in copy.decision.estimates if e.site == "slow"]
    assert slow.reasons == ("the job already runs here",)


def test_hedging_rations_copies_most_overdue_first_and_spreads_them() -> None:
    snap = Snapshot(now=1000, sites=(site("slow"), site("a", slots=1), site("b", slots=1)))
    placed = [
        PlacedJob(job(i, hedge=True), "slow", placed_at=0, finish_p95_s=100 * (i + 1)) for i in range(5)
    ]
    copies = hedges(placed, snap, max_copies=2)
    assert [c.original.job.key for c in copies] == [0, 1]
    assert {c.site for c in copies} == {"a", "b"}  # the first copy's slot is taken into account
    assert hedges(placed, snap, max_copies=0) == []


def test_no_copy_when_no_other_site_takes_work() -> None:
    snap = Snapshot(now=1000, sites=(site("slow"), site("dead", health=DOWN)))
    assert hedges([PlacedJob(job(1, hedge=True), "slow", placed_at=0, finish_p95_s=10)], snap) == []
