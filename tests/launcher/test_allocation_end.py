"""A launcher near the end of its allocation: it starts nothing that would not fit, then drains."""

from __future__ import annotations

import time

from beambridge.states import JobState
from tests.launcher.pilots import launch, site_without_pilots
from tests.site.harness import System, wait_for


def test_launcher_skips_jobs_too_long_for_the_allocation_and_drains_at_its_end(system: System) -> None:
    # this pilot takes jobs with no limit to its very end: the sleeper shows the drain
    site, _, apps = site_without_pilots(
        system,
        "short-allocation",
        drain_margin_s=50,
        idle_timeout_s=60,
        cores_per_node=2,
        unlimited_jobs_cutoff_min=0,
    )
    too_long, sleeper = system.client.jobs.bulk_create(
        [
            {
                "app_id": apps["Hello"],
                "workdir": "long",
                "parameters": {"name": "x"},
                "wall_time_limit_min": 5,
            },
            {"app_id": apps["Sleep"], "workdir": "sleep", "parameters": {"seconds": 120}, "retry_limit": 1},
        ]
    )
    # an allocation of 1 minute that must stop work 50 s before its end: 10 s of work
    launcher = launch(site.root, wall_time_min=1)
    try:
        wait_for(
            lambda: system.client.jobs.get(sleeper.id).state == JobState.RUNNING, 30, what="sleeper running"
        )
        started = time.monotonic()
        assert launcher.wait(timeout=40) == 0
        assert 5 < time.monotonic() - started < 15
    finally:
        if launcher.poll() is None:
            launcher.kill()
    log = (site.root / "launcher.log").read_text()
    assert "draining" in log, log
    events = system.client.jobs.events(sleeper.id)
    timeout = [e for e in events if e.to_state == JobState.RUN_TIMEOUT]
    assert timeout and timeout[0].data.get("reason") == "allocation ending"
    assert system.client.jobs.get(sleeper.id).state == JobState.RESTART_READY  # runs again in a later pilot
    assert system.client.jobs.get(too_long.id).state == JobState.PREPROCESSED  # never handed to this pilot
    assert not (site.data / "sleep/done.txt").exists()


def test_a_launcher_near_its_end_takes_only_jobs_whose_limit_fits(system: System) -> None:
    """Less than ``unlimited_jobs_cutoff_min`` before draining, a job with no limit is left for a later pilot."""
    site, _, apps = site_without_pilots(
        system, "ending-allocation", drain_margin_s=45, idle_timeout_s=60, unlimited_jobs_cutoff_min=5
    )
    unlimited, bounded = system.client.jobs.bulk_create(
        [
            {"app_id": apps["Hello"], "workdir": "unlimited", "parameters": {"name": "u"}, "priority": 9},
            {
                "app_id": apps["Hello"],
                "workdir": "bounded",
                "parameters": {"name": "b"},
                "wall_time_limit_min": 0.1,
            },
        ]
    )
    launcher = launch(site.root, wall_time_min=1)  # 15 s of work, far less than the 5 min cutoff
    try:
        assert launcher.wait(timeout=60) == 0
    finally:
        if launcher.poll() is None:
            launcher.kill()
    ran = {e.to_state for e in system.client.jobs.events(bounded.id)}
    assert JobState.RUNNING in ran and JobState.RUN_DONE in ran
    assert system.client.jobs.get(unlimited.id).state == JobState.PREPROCESSED  # never handed to this pilot
    assert not (site.data / "unlimited").exists()
