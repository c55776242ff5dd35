"""Placement through the whole real system: three sites on this machine — two on the tests' own Slurm
(different partitions, different node counts) and one on the local scheduler — jobs submitted by app
name to all three, and a real outage in the middle of the run (the local site's agent and its pilots
killed with SIGKILL). Every job finishes exactly once, the unclaimed jobs of the dead site are re-placed,
none is stranded, and every binding of a job to a site has its placement event."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from beambridge.states import JobState
from tests.site.harness import System, launcher_pids, wait_for
from tests.slurm_cluster import SlurmCluster

APPS = Path(__file__).with_name("apps_e2e.py")
pytestmark = [pytest.mark.xdist_group("slurm"), pytest.mark.slow]
DOWN_AFTER_S = 4.0


@pytest.fixture
def partition(slurm_cluster: SlurmCluster) -> Iterator[str]:
    """A second partition of our own, over two of the cluster's nodes (removed afterwards)."""
    name = f"bbp{uuid.uuid4().hex[:6]}"
    nodes = ",".join(slurm_cluster.nodes[-2:])
    subprocess.run(
        ["scontrol", "create", f"PartitionName={name}", f"Nodes={nodes}", "MaxTime=UNLIMITED", "State=UP"],
        check=True,
        capture_output=True,
        timeout=30,
    )
    try:
        yield name
    finally:
        subprocess.run(["scontrol", "delete", f"PartitionName={name}"], capture_output=True, timeout=30)


@pytest.fixture
def placing_system(tmp_path: Path) -> Iterator[System]:
    env = {
        "BEAMBRIDGE_SITE_DEGRADED_AFTER_S": "2.5",
        "BEAMBRIDGE_SITE_DOWN_AFTER_S": str(DOWN_AFTER_S),
        "BEAMBRIDGE_PLACEMENT_INTERVAL_S": "0.5",
    }
    made = System(tmp_path, session_timeout_s=5.0, server_env=env)
    try:
        yield made
    finally:
        made.close()


def test_three_sites_an_outage_and_every_job_finishes_exactly_once(
    placing_system: System, slurm_cluster: SlurmCluster, partition: str
) -> None:
    system = placing_system
    launcher = {"cores_per_node": 2, "idle_timeout_s": 6, "prefetch": 0}
    slurm = {"job_mode": "mpi", "max_queued_jobs": 1, "wall_time_min": 10}
    sites = {
        "slurm-small": system.make_site(
            "slurm-small", "slurm", launcher={**launcher, "mpi_launcher": "srun"},
            elastic_queue={**slurm, "queue": slurm_cluster.partition, "max_nodes": 1, "max_total_nodes": 1},
        ),
        "slurm-large": system.make_site(
            "slurm-large", "slurm", launcher={**launcher, "mpi_launcher": "srun"},
            elastic_queue={**slurm, "queue": partition, "max_nodes": 2, "max_total_nodes": 2},
        ),
        "local": system.make_site(
            "local", launcher=launcher, elastic_queue={"wall_time_min": 10, "max_total_nodes": 1}
        ),
    }  # fmt: skip
    agents = {}
    for name, (site, _config) in sites.items():
        shutil.copy(APPS, site.apps / "e2e.py")
        agents[name] = system.start_agent(site)
    for _site, config in sites.values():
        system.app_ids(config.site_id)
    wait_for(
        lambda: {s.name for s in system.client.sites.placement() if s.health == "up"} >= set(sites),
        60,
        what="three sites up",
    )
    specs = [
        {"app": "Sleep", "sites": sorted(sites), "workdir": f"sleep/{i}", "parameters": {"seconds": 1}}
        for i in range(36)
    ]
    jobs = system.client.jobs.bulk_create(specs)
    assert all(not job.awaiting_placement for job in jobs)
    local_id = sites["local"][1].site_id
    at_local = {job.id for job in jobs if job.site_id == local_id}
    assert at_local, "placement sent nothing to the local site"

    # The outage: once work is flowing, the local site dies — its agent and its pilots, with SIGKILL.
    wait_for(
        lambda: system.client.jobs.filter(state=JobState.JOB_FINISHED).count() >= 3, 90, what="first jobs"
    )
    pilots = {b.id for b in system.client.batch_jobs.filter(site_id=local_id)}
    agents["local"].kill(signal.SIGKILL)
    for pid in launcher_pids(sites["local"][0].root, pilots):
        os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()

    done = system.wait_all([job.id for job in jobs], timeout_s=150, poll_s=0.5)
    assert Counter(job.state for job in done) == {JobState.JOB_FINISHED: len(jobs)}, system.logs()
    names = {config.site_id: name for name, (_site, config) in sites.items()}
    replaced = 0
    for job in done:
        events = system.client.jobs.events(job.id)
        assert sum(1 for e in events if e.to_state == JobState.JOB_FINISHED) == 1, events  # exactly once
        bindings = [e.data for e in events if e.data.get("placement") in ("placed", "re-placed")]
        assert bindings, f"job {job.id} has no placement event"
        assert bindings[-1]["decision"]["site"] == names[job.site_id]  # its site is the last decision's
        assert all(b["decision"]["estimates"] for b in bindings)
        moves = [b for b in bindings if b["placement"] == "re-placed"]
        assert all(m["from_site"] == "local" for m in moves)
        replaced += len(moves)
        if moves:
            assert job.site_id != local_id
    assert replaced >= 1, "no job was re-placed away from the dead site"
    finished_at_local = [job for job in done if job.site_id == local_id]
    assert all(job.id in at_local for job in finished_at_local)
    assert time.monotonic() - killed_at < 150
