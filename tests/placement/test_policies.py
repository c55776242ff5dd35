"""The policies on hand-built snapshots: eligibility, availability, ties, caps, batches, exploration."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest

from beambridge.placement import (
    AppSpec,
    BacklogGroup,
    HealthState,
    Outcome,
    PlacementOptions,
    QueuedPilot,
    SiteHealth,
    SitePriors,
    SiteStatus,
    Snapshot,
    WaitBasis,
    eligibility,
    place,
    place_batch,
)
from beambridge.placement.estimators import prior_queue_wait
from beambridge.schemas.placement import PlacementDecision, PlacementEstimate
from tests.placement.builders import APP, job, site

DOWN = SiteHealth(HealthState.DOWN, ("no heartbeat for 6 min",))
DRAINING = SiteHealth(HealthState.DRAINING, ("drained by its owner",))


def snapshot(*sites, **fields) -> Snapshot:  # type: ignore[no-untyped-def]
    return Snapshot(now=1000.0, sites=tuple(sites), **fields)


def test_each_ineligible_site_says_why_and_the_job_is_refused() -> None:
    no_app = replace(site("frontier"), apps={"Other": AppSpec("Other")})
    no_location = site("perlmutter", locations=frozenset({"als"}))
    decision = place(job(1), snapshot(no_app, no_location))
    assert decision.outcome is Outcome.REFUSED and decision.site is None
    reasons = decision.reasons_by_site()
    assert reasons["frontier"] == ["app 'XpcsMultiTau' is not registered at site 'frontier' (it has: Other)"]
    assert reasons["perlmutter"] == [
        "transfer 'raw': site 'perlmutter' has no location 'aps' (it has: als)",
        "transfer 'result': site 'perlmutter' has no location 'aps' (it has: als)",
    ]
    assert decision.reason.startswith("no site can run this job: frontier: app 'XpcsMultiTau'")


def test_parameters_and_slots_are_checked_against_each_sites_app() -> None:
    snap = snapshot(site("polaris"))
    bad = job(1, parameters={"frame_time": "fast", "bins": 3}, transfers={"result": "aps:/r"})
    assert eligibility(bad, snap)["polaris"] == [
        "unknown parameter 'bins' for app 'XpcsMultiTau' (it takes: fit, frame_time)",
        "parameter 'frame_time' must be float, got str",
        "app 'XpcsMultiTau' requires transfer slot 'raw'",
    ]
    assert eligibility(job(2), snap) == {"polaris": []}


def test_a_site_the_job_names_but_nobody_knows() -> None:
    decision = place(job(1, sites=("polaris", "nowhere")), snapshot(site("polaris")))
    assert decision.site == "polaris"
    [unknown] = [e for e in decision.estimates if e.site == "nowhere"]
    assert unknown.status is SiteStatus.INELIGIBLE and unknown.reasons == ("no site named 'nowhere'",)


def test_only_the_named_sites_are_considered() -> None:
    decision = place(job(1, sites=("slow",)), snapshot(site("fast", run_s=10), site("slow", run_s=500)))
    assert decision.site == "slow" and [e.site for e in decision.estimates] == ["slow"]


@pytest.mark.parametrize("policy", ["round_robin", "shortest_backlog", "fastest_finish"])
def test_all_sites_down_or_draining_defers_with_reasons(policy: str) -> None:
    decision = place(job(1), snapshot(site("a", health=DOWN), site("b", health=DRAINING)), policy)
    assert decision.outcome is Outcome.DEFERRED and decision.site is None
    assert decision.reason == (
        "no eligible site takes work now: a: down: no heartbeat for 6 min; b: draining: drained by its owner"
    )


@pytest.mark.parametrize("policy", ["round_robin", "shortest_backlog", "fastest_finish"])
def test_no_policy_places_on_a_down_or_draining_site(policy: str) -> None:
    snap = snapshot(
        site("a", run_s=1, health=DOWN), site("b", run_s=1, health=DRAINING), site("c", run_s=900)
    )
    result = place_batch([job(i) for i in range(20)], snap, policy)
    assert {d.site for d in result.decisions} == {"c"}


def test_backlog_cap_makes_a_site_unavailable_within_the_batch() -> None:
    fast = site("fast", run_s=10, slots=100, max_backlog=30)
    slow = site("slow", run_s=1000, slots=100)
    result = place_batch([job(i) for i in range(100)], snapshot(fast, slow), "fastest_finish")
    counts = Counter(d.site for d in result.decisions)
    assert counts["fast"] == 30 and counts["slow"] == 70
    last = result.decisions[-1]
    [capped] = [e for e in last.estimates if e.site == "fast"]
    assert capped.status is SiteStatus.UNAVAILABLE and capped.reasons == (
        "backlog cap reached (30 of 30 jobs)",
    )


def test_every_site_capped_defers() -> None:
    full = site("a", max_backlog=2, backlog=(BacklogGroup(APP, 0, 2),))
    decision = place(job(1), snapshot(full), "shortest_backlog")
    assert decision.outcome is Outcome.DEFERRED and "backlog cap reached (2 of 2 jobs)" in decision.reason


def test_ties_are_deterministic_and_spread_over_identical_sites() -> None:
    snap = snapshot(site("a"), site("b"), site("c"))
    firsts = [place(job(i), snap).site for i in range(60)]
    assert firsts == [place(job(i), snap).site for i in range(60)]
    assert set(firsts) == {"a", "b", "c"}
    other_seed = [place(job(i), replace(snap, seed=7)).site for i in range(60)]
    assert other_seed != firsts


def test_empty_history_uses_the_priors_and_says_so() -> None:
    decision = place(job(1), snapshot(site("new", run_s=None)))
    [estimate] = decision.estimates
    assert estimate.run_basis == "prior" and estimate.run_s == 600
    assert estimate.wait_basis is WaitBasis.FREE_SLOT


def test_fastest_finish_weighs_backlog_against_speed() -> None:
    busy_fast = site("fast", run_s=50, slots=4, free=0, backlog=(BacklogGroup(APP, 0, 40),))
    idle_slow = site("slow", run_s=200, slots=4)
    decision = place(job(1), snapshot(busy_fast, idle_slow))
    assert decision.site == "slow"
    by_site = {e.site: e for e in decision.estimates}
    assert by_site["fast"].wait_basis is WaitBasis.BACKLOG
    assert by_site["fast"].wait_s == pytest.approx((40 * 50 + 4 * 25) / 4 + 1)
    assert by_site["slow"].finish_s == pytest.approx(5 + 5 + 200 + 5 + 0.25)
    assert "fastest predicted finish" in decision.reason and "next: 'fast'" in decision.reason


def test_a_site_without_pilots_costs_a_queue_wait() -> None:
    cold = site(
        "cold", run_s=50, slots=0, new_pilot_slots=32, queue_waits={"default": prior_queue_wait(1800)}
    )
    warm = site("warm", run_s=300, slots=4, free=1)
    decision = place(job(1), snapshot(cold, warm))
    by_site = {e.site: e for e in decision.estimates}
    assert by_site["cold"].wait_basis is WaitBasis.NEW_PILOT and by_site["cold"].wait_s == pytest.approx(1801)
    assert decision.site == "warm"


def test_a_queued_pilot_is_counted_with_its_remaining_wait() -> None:
    young = site("q", run_s=50, slots=0, queued_pilots=(QueuedPilot(8, age_s=100),))
    [estimate] = place(job(1), snapshot(young)).estimates
    assert estimate.wait_basis is WaitBasis.QUEUED_PILOT
    assert estimate.wait_s == pytest.approx(600 - 100 + 1)  # prior 600 s, already 100 s in
    old = replace(young, queued_pilots=(QueuedPilot(8, age_s=2000),))
    [estimate] = place(job(1), snapshot(old)).estimates
    assert estimate.wait_s == pytest.approx(2000 + 1)  # past the median: as long again


def test_no_pilots_and_none_coming_is_unavailable() -> None:
    decision = place(job(1), snapshot(site("idle", slots=0)))
    assert decision.outcome is Outcome.DEFERRED
    assert "no pilot is running or queued, and the site will not submit one" in decision.reason


def test_slow_routes_and_queued_bytes_cost_stage_in_time() -> None:
    far = site("far", run_s=100, transfers={})
    near = site("near", run_s=100, pending_transfer_bytes={"aps": 40e9})
    by_site = {e.site: e for e in place(job(1), snapshot(far, near)).estimates}
    assert by_site["far"].stage_in_s == pytest.approx(5 + 1e9 / 200e6)
    assert by_site["near"].stage_in_s == pytest.approx(5 + 41e9 / 200e6)
    assert by_site["far"].status is SiteStatus.CHOSEN


def test_degraded_sites_pay_a_penalty() -> None:
    degraded = site("d", run_s=100, health=SiteHealth(HealthState.DEGRADED, ("last heartbeat 2 min ago",)))
    decision = place(job(1), snapshot(degraded, site("u", run_s=130)))
    assert decision.site == "u"
    by_site = {e.site: e for e in decision.estimates}
    assert by_site["d"].penalty == 1.5 and by_site["d"].health == "degraded"


def test_a_batch_spreads_instead_of_piling_onto_the_best_site() -> None:
    best = site("best", run_s=60, slots=32)
    second = site("second", run_s=90, slots=32)
    result = place_batch([job(i, input_bytes={}) for i in range(500)], snapshot(best, second))
    counts = Counter(d.site for d in result.decisions)
    # finishing together means shares proportional to speed: 500 · (1/60) / (1/60 + 1/90) = 300
    assert 270 <= counts["best"] <= 330 and counts["best"] + counts["second"] == 500
    finishes = [d.chosen.finish_s for d in result.decisions[-20:] if d.chosen is not None]
    assert max(finishes) - min(finishes) < 120  # the last jobs end about together on both sites


def test_a_batch_spreads_over_routes_as_their_queues_fill() -> None:
    snap = snapshot(site("a", slots=1000), site("b", slots=1000))
    counts = Counter(
        d.site for d in place_batch([job(i, input_bytes={"aps": 20e9}) for i in range(100)], snap).decisions
    )
    assert counts == {"a": 50, "b": 50}


def test_shortest_backlog_balances_counts() -> None:
    snap = snapshot(site("a", run_s=10), site("b", run_s=1000, backlog=(BacklogGroup(APP, 0, 10),)))
    counts = Counter(
        d.site for d in place_batch([job(i) for i in range(110)], snap, "shortest_backlog").decisions
    )
    assert counts == {"a": 60, "b": 50}


def test_round_robin_takes_turns_across_batches() -> None:
    snap = snapshot(site("a"), site("b"), site("c"))
    first = place_batch([job(i) for i in range(4)], snap, "round_robin")
    assert [d.site for d in first.decisions] == ["a", "b", "c", "a"] and first.round_robin_cursor == 4
    second = place_batch([job(9)], replace(snap, round_robin_cursor=first.round_robin_cursor), "round_robin")
    assert second.decisions[0].site == "b"


def test_higher_priority_is_placed_first_and_decisions_keep_input_order() -> None:
    snap = snapshot(site("fast", run_s=10, slots=1), site("slow", run_s=1000, slots=1))
    result = place_batch([job("low"), job("high", priority=5)], snap)
    assert [d.job for d in result.decisions] == ["low", "high"]
    assert result.placed() == {"high": "fast", "low": "fast"} or result.placed()["high"] == "fast"
    by_job = {d.job: d for d in result.decisions}
    assert by_job["high"].chosen is not None and by_job["high"].chosen.wait_basis is WaitBasis.FREE_SLOT


def test_higher_priority_jumps_the_backlog() -> None:
    busy = site("busy", run_s=10, slots=1, free=0, backlog=(BacklogGroup(APP, 0, 100),))
    low = place(job(1), snapshot(busy)).chosen
    high = place(job(2, priority=1), snapshot(busy)).chosen
    assert low is not None and high is not None and high.wait_s < low.wait_s / 50


def test_exploration_sends_a_small_share_to_a_site_without_history() -> None:
    known = site("known", run_s=100, slots=1000)
    unknown = site("unknown", run_s=None, slots=1000)
    snap = snapshot(known, unknown)
    singles = [place(job(i), snap) for i in range(2000)]
    explored = [d for d in singles if d.explored]
    assert all(d.site == "unknown" for d in explored)
    assert 0.03 < len(explored) / 2000 < 0.07
    assert "exploration: no run history" in explored[0].reason
    # within a batch, one job in flight is enough to learn from
    batch = place_batch([job(i) for i in range(2000)], snap)
    assert sum(d.explored for d in batch.decisions) == 1
    off = replace(snap, options=PlacementOptions(explore_share=0))
    assert not any(place(job(i), off).explored for i in range(200))


def test_unknown_policy_is_named() -> None:
    with pytest.raises(ValueError, match=r"unknown placement policy 'fastest' \(known: round_robin"):
        place(job(1), snapshot(site("a")), "fastest")
    with pytest.raises(ValueError, match="unknown placement policy 'x'"):
        place_batch([job(1, policy="x")], snapshot(site("a")))


def test_decisions_serialise_to_the_api_schema() -> None:
    snap = snapshot(site("a"), site("b", health=DOWN), site("c", locations=frozenset()))
    decision = place(job(1), snap)
    data = decision.to_dict()
    model = PlacementDecision.model_validate(data)
    assert model.model_dump(mode="json", exclude={"group"}) == data
    assert set(data) == set(PlacementDecision.model_fields) - {"group"}  # the service adds it
    assert set(data["estimates"][0]) == set(PlacementEstimate.model_fields)
    assert [e.status for e in model.estimates] == ["chosen", "unavailable", "ineligible"]


def test_impossible_figures_are_refused_where_they_are_made() -> None:
    with pytest.raises(ValueError, match=r"job 1: input_bytes\['aps'\] must be >= 0, got -5"):
        job(1, input_bytes={"aps": -5})
    with pytest.raises(ValueError, match="transfer_rate_bps must be > 0"):
        SitePriors(transfer_rate_bps=0)
    with pytest.raises(ValueError, match="need 0 <= free_slots <= running_slots"):
        site("a", slots=2, free=3)
    with pytest.raises(ValueError, match="same name"):
        snapshot(site("a"), site("a"))


def test_each_job_ahead_costs_its_run_plus_the_sites_turnaround() -> None:
    """A one-slot site with short runs looks quickest until each job's turnaround between runs (reports,
    acquire, start-up: measured by the service) is counted: then the four-slot site with longer runs is."""
    backlog = (BacklogGroup(APP, 0, 8),)
    small = site("small-1", run_s=1.0, slots=1, free=0, backlog=backlog, running={APP: 1})
    large = site("large-4", run_s=4.0, slots=4, free=0, backlog=backlog, running={APP: 4})
    naive = place(job(1), snapshot(small, large))
    assert naive.site == "small-1"
    slow_turns = [replace(s, turnaround_s=3.0) for s in (small, large)]
    measured = place(job(1), snapshot(*slow_turns))
    by_site = {e.site: e for e in measured.estimates}
    assert measured.site == "large-4"
    # 8 jobs ahead at (1 + 3) s on one slot, plus half a run of the busy slot, then dispatch
    assert by_site["small-1"].wait_s == pytest.approx(8 * 4.0 + 0.5 + 1.0)
    assert by_site["large-4"].wait_s == pytest.approx((8 * 7.0 + 0.5 * 4 * 4.0) / 4 + 1.0)
    with pytest.raises(ValueError, match="turnaround_s must be >= 0"):
        replace(small, turnaround_s=-1.0)


def test_a_quiet_site_counts_the_time_until_it_would_be_called_down() -> None:
    """An agent silent past the degraded threshold may be dead: a job placed there would wait until the
    site is called down and then move. Counting that, the next-quickest live site wins."""
    quiet = site("quick-but-quiet", run_s=1.0, slots=1)
    live = site("live", run_s=3.0, slots=1)
    assert place(job(1), snapshot(quiet, live)).site == "quick-but-quiet"
    decision = place(job(1), snapshot(replace(quiet, silent_s=4.0), live))
    by_site = {e.site: e for e in decision.estimates}
    assert decision.site == "live"
    assert by_site["quick-but-quiet"].wait_s == pytest.approx(1.0 + 4.0)  # dispatch, then the silence
    assert by_site["quick-but-quiet"].stage_in_s == pytest.approx(by_site["live"].stage_in_s + 4.0)
    with pytest.raises(ValueError, match="silent_s must be >= 0"):
        replace(quiet, silent_s=-1.0)
