"""A launcher that stops while the service is down cannot deliver its last reports. A job it started in
that time must not run again as if it never had: the session closes as *unreported* and the job's
history shows the possible run (found by a chaos run: 15 silent re-runs after a slow server restart)."""

from __future__ import annotations

import signal
import time

from beambridge.states import JobState
from tests.launcher.pilots import launch, site_without_pilots
from tests.site.harness import System, wait_for


def test_a_job_started_while_the_service_was_down_keeps_its_run_in_history(system: System) -> None:
    site, _, apps = site_without_pilots(
        system, "unreported", idle_timeout_s=120, cores_per_node=1, prefetch=1, report_drain_s=1
    )
    first, second = system.client.jobs.bulk_create(
        [
            {"app_id": apps["Sleep"], "workdir": "first", "parameters": {"seconds": 8}, "retry_limit": 3},
            {"app_id": apps["Sleep"], "workdir": "second", "parameters": {"seconds": 300}, "retry_limit": 3},
        ]
    )
    launcher = launch(site.root, wall_time_min=30)
    try:
        before_run = {JobState.STAGED_IN, JobState.PREPROCESSED}
        # (under load the first job's RUNNING and RUN_DONE may arrive in one batch: "at least running")
        wait_for(lambda: system.client.jobs.get(first.id).state not in before_run, 120, what="first running")
        wait_for(lambda: system.client.jobs.get(second.id).session_id is not None, 120, what="second held")
        assert system.server.process is not None
        system.server.process.send_signal(signal.SIGKILL)  # the service goes down ...
        system.server.process.wait()
        # ... the first job ends and the second starts, unseen by the service
        wait_for(lambda: (site.data / "second" / "starts.txt").exists(), 60, what="second started")
        time.sleep(6)  # the reporter's retries back off to seconds apart
        launcher.send_signal(signal.SIGTERM)  # the pilot ends (drains) while its reports cannot go out ...
        system.server.start()  # ... and the service is back as it closes its session
        assert launcher.wait(timeout=90) == 0
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    states = [event.to_state for event in system.client.jobs.events(second.id)]
    assert JobState.RUNNING in states, f"the second job's run left no trace: {states}"
    assert JobState.RUN_TIMEOUT in states, states
    job = system.client.jobs.get(second.id)
    assert job.session_id is None and job.state in (JobState.RESTART_READY, JobState.RUN_TIMEOUT), job.state
    done = [event.to_state for event in system.client.jobs.events(first.id)]
    assert JobState.RUN_DONE in done or JobState.RUN_TIMEOUT in done, done  # finished, or known to have run
