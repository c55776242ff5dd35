"""A site on the real Slurm the tests start: 200 mixed jobs, the elastic queue, and kill -9 recovery."""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from beambridge.schemas.batch_jobs import BatchJobState
from beambridge.states import JobState
from tests.site.harness import System, launcher_pids, wait_for
from tests.slurm_cluster import SlurmCluster

APPS = Path(__file__).with_name("apps_e2e.py")
pytestmark = [pytest.mark.xdist_group("slurm"), pytest.mark.slow]


def _slurm_site(system: System, cluster: SlurmCluster, name: str, **elastic: object):
    site, config = system.make_site(
        name,
        "slurm",
        launcher={"cores_per_node": 8, "idle_timeout_s": 4, "mpi_launcher": "srun", "prefetch": 32},
        elastic_queue={
            "queue": cluster.partition,
            "job_mode": "mpi",
            "max_nodes": 2,
            "max_total_nodes": 4,
            "max_queued_jobs": 2,
            "wall_time_min": 10,
            **elastic,
        },
    )
    shutil.copy(APPS, site.apps / "e2e.py")
    return site, config


def test_200_mixed_jobs_end_as_their_hooks_decide_and_the_queue_follows_the_backlog(
    system: System, slurm_cluster: SlurmCluster
) -> None:
    site, config = _slurm_site(system, slurm_cluster, "slurm-e2e")
    system.start_agent(site)
    apps = system.app_ids(config.site_id)
    specs: list[dict[str, object]] = []
    specs += [
        {
            "app_id": apps["Hello"],
            "workdir": f"hello/{i}",
            "parameters": {"name": str(i)},
            "node_packing_count": 8,
        }
        for i in range(100)
    ]
    specs += [
        {
            "app_id": apps["Add"],
            "workdir": f"add/{i}",
            "parameters": {"a": i, "b": 1},
            "node_packing_count": 8,
        }
        for i in range(50)
    ]
    specs += [
        {"app_id": apps["Fail"], "workdir": f"fail/{i}", "parameters": {"code": 3}, "node_packing_count": 8}
        for i in range(15)
    ]
    specs += [
        {
            "app_id": apps["Sleep"],
            "workdir": f"timeout/{i}",
            "parameters": {"seconds": 60},
            "wall_time_limit_min": 0.03,
            "retry_limit": 0,
            "node_packing_count": 8,
        }
        for i in range(5)
    ]
    specs += [
        {"app_id": apps["Retried"], "workdir": f"retried/{i}", "retry_limit": 1, "node_packing_count": 8}
        for i in range(10)
    ]
    specs += [
        {"app_id": apps["MpiRanks"], "workdir": f"mpi/{i}", "num_nodes": 2, "ranks_per_node": 2}
        for i in range(20)
    ]
    assert len(specs) == 200
    jobs = system.client.jobs.bulk_create(specs)
    done = {job.workdir: job for job in system.wait_all([j.id for j in jobs], timeout_s=420, poll_s=1)}

    states = Counter(job.state for job in done.values())
    expected = {JobState.JOB_FINISHED: 100 + 50 + 10 + 20, JobState.FAILED: 15 + 5}
    assert states == expected, (states, system.logs())
    assert all(done[f"add/{i}"].result == i + 1 for i in range(50))
    assert all(done[f"fail/{i}"].return_code == 3 for i in range(15))
    for i in range(20):
        lines = (site.data / f"mpi/{i}/ranks.txt").read_text().split()
        ranks = sorted(line for line in lines if line.startswith("rank="))
        nodes = {line for line in lines if line.startswith("node=")}
        assert ranks == ["rank=0", "rank=1", "rank=2", "rank=3"], lines
        assert len(nodes) == 2, lines  # two different Slurm nodes

    pilots = list(system.client.batch_jobs.filter(site_id=config.site_id))
    assert pilots and all(p.scheduler_id for p in pilots), pilots
    assert sum(p.num_nodes for p in pilots if p.state != BatchJobState.FINISHED) <= 4

    def settled() -> bool:
        active = list(
            system.client.batch_jobs.filter(
                site_id=config.site_id,
                state=[
                    BatchJobState.PENDING_SUBMISSION,
                    BatchJobState.QUEUED,
                    BatchJobState.RUNNING,
                    BatchJobState.PENDING_DELETION,
                ],
            )
        )
        return not active

    wait_for(settled, 90, what="pilots idle out and none are asked for")
    count = len(list(system.client.batch_jobs.filter(site_id=config.site_id)))
    time.sleep(3)  # several elastic-queue periods with an empty backlog
    assert len(list(system.client.batch_jobs.filter(site_id=config.site_id))) == count


def test_launcher_killed_on_slurm_job_runs_again_exactly_once(
    system: System, slurm_cluster: SlurmCluster
) -> None:
    site, config = _slurm_site(
        system, slurm_cluster, "slurm-kill", max_queued_jobs=1, max_total_nodes=1, max_nodes=1
    )
    system.start_agent(site)
    apps = system.app_ids(config.site_id)
    [job] = system.client.jobs.bulk_create(
        [{"app_id": apps["Sleep"], "workdir": "sleepy", "parameters": {"seconds": 5}, "retry_limit": 2}]
    )
    wait_for(lambda: system.client.jobs.get(job.id).state == JobState.RUNNING, 120, what="job running")
    wait_for(lambda: (site.data / "sleepy/starts.txt").exists(), 20, what="job started")
    running = system.client.jobs.get(job.id)
    assert running.batch_job_id is not None
    [pid] = wait_for(
        lambda: launcher_pids(site.root, [running.batch_job_id]), 20, what="the launcher process"
    )  # type: ignore[arg-type]
    os.kill(pid, signal.SIGKILL)
    [final] = system.wait_all([job.id], timeout_s=180)
    assert final.state == JobState.JOB_FINISHED, system.logs()
    states = [e.to_state for e in system.client.jobs.events(job.id)]
    assert states.count(JobState.RUN_TIMEOUT) == 1 and states.count(JobState.JOB_FINISHED) == 1, states
    assert (site.data / "sleepy/starts.txt").read_text().count("start") == 2
    time.sleep(6)
    assert (site.data / "sleepy/done.txt").read_text().count("done") == 1


def test_agent_killed_on_slurm_reattaches_to_its_pilots(system: System, slurm_cluster: SlurmCluster) -> None:
    site, config = _slurm_site(
        system, slurm_cluster, "slurm-agent", max_queued_jobs=1, max_total_nodes=1, max_nodes=1
    )
    agent = system.start_agent(site)
    apps = system.app_ids(config.site_id)
    jobs = system.client.jobs.bulk_create(
        [
            {
                "app_id": apps["Sleep"],
                "workdir": f"s/{i}",
                "parameters": {"seconds": 1},
                "node_packing_count": 4,
            }
            for i in range(12)
        ]
    )
    wait_for(
        lambda: any(p.scheduler_id for p in system.client.batch_jobs.filter(site_id=config.site_id)),
        60,
        what="a pilot submitted",
    )
    agent.kill(signal.SIGKILL)
    time.sleep(2)
    system.start_agent(site)
    done = system.wait_all([j.id for j in jobs], timeout_s=180)
    assert all(j.state == JobState.JOB_FINISHED for j in done), system.logs()
    for i in range(12):
        assert (site.data / f"s/{i}/starts.txt").read_text().count("start") == 1
    pilots = [p for p in system.client.batch_jobs.filter(site_id=config.site_id) if p.scheduler_id]
    recorded = {
        (d / "scheduler_id").read_text().strip()
        for d in site.pilots.iterdir()
        if (d / "scheduler_id").exists()
    }
    assert recorded == {p.scheduler_id for p in pilots}, "a pilot was submitted twice or lost"


def test_jobs_with_inputs_and_outputs_stage_through_a_slurm_site(
    system: System, slurm_cluster: SlurmCluster, tmp_path: Path
) -> None:
    beamline = tmp_path / "beamline"
    (beamline / "data").mkdir(parents=True)
    for i in range(4):
        (beamline / "data" / f"A{i}.dat").write_bytes(b"y" * (500 + i))
    site, config = system.make_site(
        "slurm-staging",
        "slurm",
        locations={"aps_dtn": {"kind": "local", "path": str(beamline), "link": False}},
        launcher={"cores_per_node": 8, "idle_timeout_s": 4, "mpi_launcher": "srun"},
        elastic_queue={
            "queue": slurm_cluster.partition,
            "max_nodes": 1,
            "max_total_nodes": 1,
            "wall_time_min": 10,
        },
    )
    shutil.copy(APPS, site.apps / "e2e.py")
    system.start_agent(site)
    apps = system.app_ids(config.site_id)
    wait_for(lambda: "aps_dtn" in system.client.sites.get(config.site_id).locations, 30, what="locations")
    jobs = system.client.jobs.bulk_create(
        {
            "app_id": apps["Count"],
            "workdir": f"count/{i}",
            "transfers": {"raw": f"aps_dtn:/data/A{i}.dat", "result": f"aps_dtn:/results/A{i}.txt"},
            "node_packing_count": 4,
        }
        for i in range(4)
    )
    done = system.wait_all([j.id for j in jobs], timeout_s=180)
    assert all(job.state == JobState.JOB_FINISHED for job in done), system.logs()
    for i in range(4):
        assert (beamline / "results" / f"A{i}.txt").read_text().strip() == str(500 + i)
    pilots = list(system.client.batch_jobs.filter(site_id=config.site_id))
    assert pilots and all(p.scheduler_id for p in pilots)
