"""fastest_finish's cost (finish + the delay imposed on later jobs), measured dispatch, and run times
sized by a numeric job parameter — on hand-built snapshots."""

from __future__ import annotations

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
    Snapshot,
    WaitBasis,
    place,
    place_batch,
)
from beambridge.placement.estimators import RunSample, RunTimeEstimate, estimate_run_time
from beambridge.placement.finish_time import SiteLoad, marginal_delay
from tests.placement.builders import APP, PARAMETERS, job
from tests.placement.builders import site as xpcs_site

DOWN = SiteHealth(HealthState.DOWN, ("no heartbeat for 6 min",))


CHARGED = PlacementOptions(marginal_weight=1.0)


def snapshot(*sites, **fields) -> Snapshot:  # type: ignore[no-untyped-def]
    """A snapshot with the imposed-delay charge on (weight 1; the default is off)."""
    fields.setdefault("options", CHARGED)
    return Snapshot(now=1000.0, sites=tuple(sites), **fields)


def site(name: str, **fields):  # type: ignore[no-untyped-def]
    """A site whose XPCS app moves no data (a job's finish is its wait plus its run)."""
    return replace(xpcs_site(name, **fields), apps={APP: AppSpec(APP, PARAMETERS)})


def local_job(key: int, **fields):  # type: ignore[no-untyped-def]
    """A job that moves no data (its finish is wait + run)."""
    fields.setdefault("transfers", {})
    fields.setdefault("input_bytes", {})
    fields.setdefault("output_bytes", {})
    return job(key, **fields)


def test_no_marginal_cost_while_the_job_finds_an_idle_slot() -> None:
    for free in (1, 2):
        load = SiteLoad(site("a", run_s=10, slots=4, free=free))
        assert marginal_delay(load, local_job(1), 10.0, 1.0, WaitBasis.FREE_SLOT) == 0.0


def test_queueing_charges_run_over_slots_per_job_waiting() -> None:
    last = SiteLoad(site("a", run_s=10, slots=4, free=0))
    assert marginal_delay(last, local_job(1), 10.0, 1.0, WaitBasis.BACKLOG) == pytest.approx(10 / 4)
    queued = SiteLoad(site("a", run_s=10, slots=4, free=0, backlog=(BacklogGroup(APP, 0, 3),)))
    # three waiting ahead plus the job itself beyond the idle slots: 4 x 10 s / 4 slots
    assert marginal_delay(queued, local_job(1), 10.0, 1.0, WaitBasis.BACKLOG) == pytest.approx(10.0)
    assert marginal_delay(queued, local_job(1), 10.0, 2.0, WaitBasis.BACKLOG) == pytest.approx(20.0)
    assert marginal_delay(queued, local_job(1), 10.0, 0.0, WaitBasis.BACKLOG) == 0.0


def test_no_marginal_cost_when_the_job_waits_for_a_pilot_that_brings_capacity() -> None:
    """A job whose wait is a queued or new pilot's: the backlog sizes the elastic queue's pilots, so
    queueing there adds capacity rather than delaying later jobs (an elastic site must get a backlog)."""
    growing = site(
        "grow", run_s=10, slots=0, queued_pilots=(QueuedPilot(4, 30.0),), backlog=(BacklogGroup(APP, 0, 6),)
    )
    decision = place(local_job(1), snapshot(growing), "fastest_finish")
    assert decision.chosen is not None and decision.chosen.wait_basis is WaitBasis.QUEUED_PILOT
    assert decision.chosen.marginal_s is None
    new = site("new", run_s=10, slots=0, new_pilot_slots=4)
    decision = place(local_job(1), snapshot(new), "fastest_finish")
    assert decision.chosen is not None and decision.chosen.wait_basis is WaitBasis.NEW_PILOT
    assert decision.chosen.marginal_s is None


def test_a_close_call_goes_to_the_idle_slot_not_the_small_fast_sites_queue() -> None:
    # fast: 1 slot, busy, one job waiting; 2 x 5 s ahead -> finish about 2.5 + 5 + 5 = 12.5 s;
    # wide: 4 idle slots, 14 s runs -> finish 15 s. Each job's own quickest is "fast", but queueing there
    # delays every job after it (2 queued x 5 s / 1 slot = 10 s).
    fast = site("fast", run_s=5, slots=1, free=0, backlog=(BacklogGroup(APP, 0, 1),))
    wide = site("wide", run_s=14, slots=4)
    snap = snapshot(fast, wide)
    decision = place(local_job(1), snap, "fastest_finish")
    assert decision.site == "wide"
    by_site = {e.site: e for e in decision.estimates}
    assert by_site["fast"].finish_s is not None and by_site["wide"].finish_s is not None
    assert by_site["fast"].finish_s < by_site["wide"].finish_s
    assert by_site["fast"].marginal_s == pytest.approx(10.0)
    assert by_site["wide"].marginal_s is None  # it finds an idle slot
    assert "imposed on later jobs" not in decision.reason
    # with the weight at 0 it is each job's own finish, as before
    alone = place(
        local_job(1), replace(snap, options=PlacementOptions(marginal_weight=0.0)), "fastest_finish"
    )
    assert alone.site == "fast"


def test_a_much_faster_site_still_wins_despite_its_queue() -> None:
    fast = site("fast", run_s=1, slots=1, free=0, backlog=(BacklogGroup(APP, 0, 1),))
    slow = site("slow", run_s=60, slots=4)
    decision = place(local_job(1), snapshot(fast, slow), "fastest_finish")
    assert decision.site == "fast" and "imposed on later jobs" in decision.reason


def test_exact_cost_ties_are_broken_by_the_seeded_hash_and_shared() -> None:
    sites = [site(name, run_s=10, slots=2, free=0) for name in ("a", "b")]
    chosen = {place(local_job(k), snapshot(*sites), "fastest_finish").site for k in range(40)}
    assert chosen == {"a", "b"}
    again = {place(local_job(k), snapshot(*sites), "fastest_finish").site for k in range(40)}
    assert again == chosen


def test_a_batch_spreads_instead_of_piling_onto_the_small_fast_site() -> None:
    fast = site("fast", run_s=5, slots=1)
    wide = site("wide", run_s=9, slots=4)
    result = place_batch([local_job(k) for k in range(6)], snapshot(fast, wide), "fastest_finish")
    placed = result.placed()
    assert sum(1 for s in placed.values() if s == "fast") <= 2
    assert sum(1 for s in placed.values() if s == "wide") >= 4


def test_cost_with_no_history_all_sites_down_and_caps() -> None:
    # no history: priors only, no queue -> no marginal cost, the quicker prior wins
    fresh = [site("a", run_s=None, slots=2), site("b", run_s=None, slots=2, free=0)]
    decision = place(local_job(1), snapshot(*fresh), "fastest_finish")
    assert decision.site == "a"
    # all down: deferred, nothing costed
    down = place(local_job(1), snapshot(site("a", health=DOWN), site("b", health=DOWN)), "fastest_finish")
    assert down.outcome is Outcome.DEFERRED and all(e.marginal_s is None for e in down.estimates)
    # a capped site is unavailable whatever its cost
    capped = site("a", run_s=1, slots=8, max_backlog=0)
    decision = place(local_job(1), snapshot(capped, site("b", run_s=50, slots=1)), "fastest_finish")
    assert decision.site == "b"


def test_the_measured_dispatch_replaces_the_prior_for_a_free_slot() -> None:
    prior = place(local_job(1), snapshot(site("a", run_s=10)), "fastest_finish").chosen
    measured = place(local_job(1), snapshot(site("a", run_s=10, dispatch_s=0.1)), "fastest_finish").chosen
    assert prior is not None and measured is not None
    assert prior.wait_basis is WaitBasis.FREE_SLOT and prior.wait_s == pytest.approx(1.0)
    assert measured.wait_s == pytest.approx(0.1)
    with pytest.raises(ValueError, match="dispatch_s"):
        site("a", dispatch_s=-1.0)


def sized_runs(per_unit: float, sizes: list[int], **other: float) -> list[RunSample]:
    return [
        RunSample(per_unit * size, at=float(i), parameters=tuple(sorted({"size": size, **other}.items())))
        for i, size in enumerate(sizes)
    ]


def test_the_run_time_follows_the_numeric_parameter_that_explains_it() -> None:
    samples = sized_runs(2.0, [1, 3, 2, 1, 3, 2, 2], seed=7.0)
    estimate = estimate_run_time(samples, 10.0, prior_s=100)
    assert estimate.size_parameter == "size" and estimate.scales_with_size
    assert estimate.predict(estimate.job_size({"size": 3}, None)) == pytest.approx(6.0)
    assert estimate.job_size({"size": True}, None) is None  # a flag is not a size
    assert estimate.job_size({}, 5e9) is None  # the model is per unit of "size", not bytes
    assert estimate.predict(None) == estimate.median_s


def test_a_parameter_unrelated_to_the_run_time_is_not_taken_for_its_size() -> None:
    samples = [
        RunSample(seconds, at=float(i), parameters=(("seed", float(seed)),))
        for i, (seconds, seed) in enumerate([(4, 1), (6, 2), (4, 3), (6, 4), (4, 5), (6, 6), (5, 7)])
    ]
    estimate = estimate_run_time(samples, 10.0, prior_s=100)
    assert estimate.size_parameter is None and not estimate.scales_with_size


def test_input_bytes_win_over_parameters_when_jobs_move_data() -> None:
    samples = [
        RunSample(2.0 * s, at=float(i), input_bytes=s * 1e9, parameters=(("size", float(s)),))
        for i, s in enumerate([1, 3, 2, 1, 3])
    ]
    estimate = estimate_run_time(samples, 10.0, prior_s=100)
    assert estimate.size_parameter is None and estimate.predict(2e9) == pytest.approx(4.0)


def test_sized_jobs_go_big_to_the_fast_site_and_batches_keep_their_sizes_apart() -> None:
    per_unit = {"fast": 1.0, "slow": 4.0}
    sites = [
        replace(
            site(name, slots=4),
            run_times={APP: RunTimeEstimate(2 * k, 1.1, 0.0, k, 20, "history", size_parameter="frame_time")},
        )
        for name, k in per_unit.items()
    ]
    big = local_job(1, parameters={"frame_time": 3.0})
    small = local_job(2, parameters={"frame_time": 1.0})
    snap = snapshot(*sites)
    [chosen_big] = [e for e in place(big, snap, "fastest_finish").estimates if e.site == "fast"]
    assert chosen_big.run_s == pytest.approx(3.0) and chosen_big.run_basis == "history_scaled"
    jobs = [local_job(k, parameters={"frame_time": float(1 + k % 3)}) for k in range(12)]
    grouped = place_batch(jobs, snap, "fastest_finish")
    single = place_batch(jobs, snap, "fastest_finish", grouped=False)
    assert grouped.decisions == single.decisions
    for decision, placed in zip(grouped.decisions, jobs, strict=True):
        assert decision.chosen is not None and decision.site is not None
        assert decision.chosen.run_s == pytest.approx(
            per_unit[decision.site] * placed.parameters["frame_time"]
        )
    [chosen_small] = [e for e in place(small, snap, "fastest_finish").estimates if e.site == "slow"]
    assert chosen_small.run_s == pytest.approx(4.0)
