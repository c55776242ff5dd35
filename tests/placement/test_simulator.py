"""The simulator: reproducible, faithful to the Balsam paper's figures, and sound under outages, drains
and hedging (every job finishes exactly once, none stranded)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from beambridge.placement.simulator import (
    Scenario,
    ScenarioError,
    SimulationResult,
    load_scenario,
    shipped_scenarios,
    simulate,
)


def small(**changes: Any) -> Scenario:
    """Two sites, a fast one and a slow one, 400 jobs in 10 minutes."""
    site = {
        "slots_per_pilot": 8,
        "max_pilots": 2,
        "min_pilots": 1,
        "start_pilots": 1,
        "queue_wait": {"median_s": 120, "sigma": 0.5},
        "apps": {"Xpcs": {"median_s": 30, "sigma": 0.2}},
        "routes": {"aps": {"rate_mbps": 300, "rate_sd_mbps": 100, "overhead_in_s": 5, "overhead_out_s": 3}},
    }
    data: dict[str, Any] = {
        "name": "small",
        "seed": 3,
        "horizon_s": 20_000,
        "sites": [
            {**site, "name": "fast"},
            {**site, "name": "slow", "apps": {"Xpcs": {"median_s": 90, "sigma": 0.2}}},
        ],
        "arrivals": [{"app": "Xpcs", "source": "aps", "rate_per_s": 0.66, "until_s": 600, "input_mb": 500}],
    }
    data.update(changes)
    return Scenario.model_validate(data)


def comparable(result: SimulationResult) -> dict[str, Any]:
    data = asdict(result)
    for timing in ("wall_s", "decision_s"):
        data.pop(timing)
    return data


@pytest.mark.parametrize("policy", ["round_robin", "shortest_backlog", "fastest_finish"])
def test_the_same_scenario_gives_the_same_result(policy: str) -> None:
    scenario = small(outages=[{"site": "fast", "start_s": 200, "end_s": 500}], explore_share=0.1)
    first = simulate(scenario, policy)
    assert first.finished == first.jobs > 350 and first.stranded == 0
    assert comparable(first) == comparable(simulate(scenario, policy))
    reseeded = simulate(scenario.model_copy(update={"seed": 4}), policy)
    assert comparable(reseeded) != comparable(first)


def test_an_outage_re_places_the_unclaimed_jobs_and_strands_none() -> None:
    scenario = small(outages=[{"site": "fast", "start_s": 150, "end_s": 3000}])
    result = simulate(scenario, "fastest_finish")
    assert result.stranded == 0 and result.finished == result.jobs
    assert result.replaced > 0
    # the dead site finishes nothing between its death (plus in-flight stage-outs) and its return
    dead = [t for t in result.finish_times["fast"] if 200 < t < 3000]
    assert dead == []


def test_a_drained_site_gets_no_new_work() -> None:
    scenario = small(drains=[{"site": "fast", "start_s": 0, "end_s": 5000}])
    result = simulate(scenario, "fastest_finish")
    assert result.finished == result.jobs and result.site_jobs["fast"] == 0


def test_all_sites_down_for_a_while_defers_then_finishes_everything() -> None:
    outages = [{"site": s, "start_s": 100, "end_s": 900} for s in ("fast", "slow")]
    result = simulate(small(outages=outages), "shortest_backlog")
    assert result.finished == result.jobs and result.stranded == 0


def test_a_site_that_never_returns_strands_only_claimed_jobs_and_runs_the_rest_elsewhere() -> None:
    result = simulate(small(outages=[{"site": "slow", "start_s": 300, "end_s": 19_000}]), "round_robin")
    assert result.finished + result.stranded == result.jobs
    assert result.stranded < 0.05 * result.jobs
    assert result.replaced > 0


def test_hedged_jobs_finish_exactly_once() -> None:
    slow_tail = {"median_s": 30, "sigma": 1.2}
    scenario = small(
        arrivals=[
            {
                "app": "Xpcs",
                "source": "aps",
                "rate_per_s": 0.3,
                "until_s": 600,
                "input_mb": 500,
                "hedge_share": 1,
            }
        ],
        sites=[
            {**small().sites[0].model_dump(), "apps": {"Xpcs": slow_tail}},
            small().sites[1].model_dump(),
        ],
    )
    result = simulate(scenario, "fastest_finish")
    assert result.hedged > 0 and 0 <= result.hedge_wins <= result.hedged
    assert result.finished == result.jobs and sum(result.site_jobs.values()) == result.jobs


def test_the_balsam_paper_scenario_reproduces_its_load_balancing_runs() -> None:
    scenario = load_scenario("balsam-paper")
    by_policy = {p: simulate(scenario, p) for p in ("round_robin", "shortest_backlog", "fastest_finish")}
    # the paper: round robin 46.3 jobs/min, shortest backlog 50.3 (+9 %)
    assert by_policy["round_robin"].jobs_per_min == pytest.approx(46.3, rel=0.1)
    assert by_policy["shortest_backlog"].jobs_per_min == pytest.approx(50.3, rel=0.1)
    assert by_policy["fastest_finish"].jobs_per_min > by_policy["shortest_backlog"].jobs_per_min
    assert all(r.stranded == 0 for r in by_policy.values())


def test_the_balsam_paper_routes_give_the_papers_single_job_latencies() -> None:
    scenario = load_scenario("balsam-paper")
    for site, paper in (("theta", 140.7), ("summit", 133.7), ("cori", 99.6)):
        one_at_a_time = Scenario.model_validate(
            {
                **scenario.model_dump(),
                "arrivals": [
                    {
                        "app": "XpcsEigen",
                        "source": "aps",
                        "sites": [site],
                        "every_s": 400,
                        "until_s": 8000,
                        "input_mb": 1000,
                        "output_mb": 50,
                    }
                ],
            }
        )
        result = simulate(one_at_a_time, "fastest_finish")
        assert result.latency_median_s == pytest.approx(paper, rel=0.08), site


def test_shipped_scenarios_load() -> None:
    assert shipped_scenarios() == ["balsam-paper", "internet-scale"]
    big = load_scenario("internet-scale")
    assert len(big.sites) == 10 and len(big.outages) >= 2 and big.drains


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- just a list", "a scenario is a mapping of fields, got list"),
        ("name: x\nhorizon_s: [", "not valid YAML"),
        ("name: x\nhorizon_s: 10\nsites: []\narrivals: []", "sites: List should have at least 1 item"),
    ],
)
def test_bad_scenario_files_are_named_clearly(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yml"
    path.write_text(text)
    with pytest.raises(ScenarioError, match=message):
        load_scenario(path)


def test_scenario_references_are_checked() -> None:
    with pytest.raises(ValueError, match=r"outages.0: unknown site 'nowhere'"):
        small(outages=[{"site": "nowhere", "start_s": 1, "end_s": 2}])
    with pytest.raises(ValueError, match=r"arrivals.0: no site runs 'Other'"):
        small(arrivals=[{"app": "Other", "source": "aps", "every_s": 1, "until_s": 5}])
    with pytest.raises(ValueError, match="exactly one of every_s"):
        small(arrivals=[{"app": "Xpcs", "source": "aps", "until_s": 5}])
    with pytest.raises(ScenarioError, match=r"cannot read scenario 'no-such-file\.yml'"):
        load_scenario("no-such-file.yml")
