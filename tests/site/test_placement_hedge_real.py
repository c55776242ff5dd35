"""A hedged copy through the whole real system: two sites on this machine (local scheduler, real agents,
real pilots), a ``hedge=True`` job whose run at its first site is frozen with SIGSTOP once it started.
Past the p95 of its predicted finish the service copies it to the other site, the copy's run finishes,
the job adopts it and finishes exactly once there, and the first site's launcher is told to stop the
frozen run (its processes are gone; it never wrote its result)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import pytest

from beambridge.states import JobState
from tests.site.harness import System, wait_for

APPS = Path(__file__).with_name("apps_e2e.py")
pytestmark = pytest.mark.slow

# What the sites' configuration says to expect: Sleep runs 1 s, a pilot waits 1 s. The job sleeps 6 s, so
# it is late (past the predicted p95, about 5.5 s) while it still runs.
PRIORS = {"run_time_s": {"Sleep": 1.0}, "queue_wait_s": 1.0, "dispatch_s": 0.5}


@pytest.fixture
def system(tmp_path: Path) -> Iterator[System]:
    made = System(tmp_path, session_timeout_s=6.0, server_env={"BEAMBRIDGE_PLACEMENT_INTERVAL_S": "0.5"})
    try:
        yield made
    finally:
        made.close()


def processes_in(folder: Path) -> list[int]:
    """Pids of the live processes whose working directory is ``folder`` (the job's shell and its sleep)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if Path(os.readlink(entry / "cwd")) == folder:
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_a_frozen_run_is_overtaken_by_its_copy_and_the_job_finishes_once(system: System) -> None:
    launcher = {"cores_per_node": 1, "idle_timeout_s": 30, "prefetch": 0}
    queue = {"wall_time_min": 10, "max_total_nodes": 1}
    sites = {
        name: system.make_site(name, launcher=launcher, elastic_queue=queue, placement=PRIORS)
        for name in ("first", "second")
    }
    for site, config in sites.values():
        (site.apps / "e2e.py").write_text(APPS.read_text())
        system.start_agent(site)
        system.app_ids(config.site_id)
    wait_for(
        lambda: {s.name for s in system.client.sites.placement() if s.health == "up"} >= set(sites),
        60,
        what="both sites up",
    )
    [job] = system.client.jobs.bulk_create(
        [
            {
                "app": "Sleep",
                "sites": sorted(sites),
                "workdir": "hedged",
                "parameters": {"seconds": 6},
                "hedge": True,
            }
        ]
    )
    names = {config.site_id: name for name, (_site, config) in sites.items()}
    home = names[job.site_id]
    workdir = (sites[home][0].data / "hedged").resolve()

    def frozen() -> list[int] | None:
        pids = processes_in(workdir)
        return pids if pids and (workdir / "starts.txt").exists() else None

    pids = wait_for(frozen, 90, what="the job's run at its first site")
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        [done] = system.wait_all([job.id], timeout_s=120)
        assert done.state == JobState.JOB_FINISHED, system.logs()
        other = next(name for name in sites if name != home)
        assert names[done.site_id] == other, "the job finished where its copy ran"
        events = system.client.jobs.events(job.id)
        assert sum(1 for e in events if e.to_state == JobState.JOB_FINISHED) == 1
        [hedged] = [e.data for e in events if e.data.get("placement") == "hedged"]
        copy_id = hedged["copy"]
        assert hedged["decision"]["site"] == other
        [adopted] = [e for e in events if e.data.get("hedge") == "copy won"]
        assert adopted.from_state == JobState.RUNNING and adopted.data["copy"] == copy_id
        [copy] = system.client.jobs.filter(id=[copy_id])
        assert copy.state == JobState.KILLED and copy.tags == {"hedge_copy_of": str(job.id)}
        copy_events = system.client.jobs.events(copy_id)
        assert not any(e.to_state == JobState.JOB_FINISHED for e in copy_events)
        assert any(e.to_state == JobState.RUN_DONE for e in copy_events)
        # the copy's run wrote its result at the second site; the frozen run is stopped by its launcher
        assert (sites[other][0].data / "hedged" / "done.txt").exists()
        wait_for(lambda: not any(p in processes_in(workdir) for p in pids), 30, what="the frozen run stopped")
        assert not (workdir / "done.txt").exists()
    finally:
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
