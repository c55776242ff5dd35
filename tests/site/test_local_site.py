"""A site on the local scheduler, end to end: agent, elastic queue, pilots, launcher, hooks."""

from __future__ import annotations

import shutil
from pathlib import Path

from beambridge.states import JobState
from tests.site.harness import System

APPS = Path(__file__).with_name("apps_e2e.py")


def test_jobs_run_and_end_as_their_hooks_decide(system: System) -> None:
    site, config = system.make_site(
        "laptop", launcher={"cores_per_node": 4, "idle_timeout_s": 5}, elastic_queue={"wall_time_min": 10}
    )
    shutil.copy(APPS, site.apps / "e2e.py")
    system.start_agent(site)
    apps = system.app_ids(config.site_id)

    specs = []
    specs += [
        {
            "app_id": apps["Hello"],
            "workdir": f"hello/{i}",
            "parameters": {"name": f"x y'{i}"},
            "node_packing_count": 4,
        }
        for i in range(5)
    ]
    specs += [
        {
            "app_id": apps["Add"],
            "workdir": f"add/{i}",
            "parameters": {"a": i, "b": 0.5},
            "node_packing_count": 4,
        }
        for i in range(5)
    ]
    specs += [
        {"app_id": apps["Fail"], "workdir": "fail/0", "parameters": {"code": 3}, "node_packing_count": 4}
    ]
    specs += [
        {
            "app_id": apps["Sleep"],
            "workdir": "sleep/0",
            "parameters": {"seconds": 30},
            "wall_time_limit_min": 0.02,
            "retry_limit": 1,
            "node_packing_count": 4,
        }
    ]
    specs += [{"app_id": apps["Retried"], "workdir": "retried/0", "retry_limit": 1, "node_packing_count": 4}]
    specs += [{"app_id": apps["Post"], "workdir": "post/0", "node_packing_count": 4}]
    specs += [
        {"app_id": apps["WhereAmI"], "workdir": "where/0", "node_packing_count": 2, "threads_per_rank": 2}
    ]
    jobs = system.client.jobs.bulk_create(specs)
    done = {job.id: job for job in system.wait_all([job.id for job in jobs], timeout_s=120)}
    by_workdir = {job.workdir: job for job in done.values()}

    for i in range(5):
        hello = by_workdir[f"hello/{i}"]
        assert hello.state == JobState.JOB_FINISHED, system.logs()
        assert (site.data / f"hello/{i}/job.out").read_text() == f"hello, x y'{i}\n"
        add = by_workdir[f"add/{i}"]
        assert add.state == JobState.JOB_FINISHED and add.result == i + 0.5
    fail = by_workdir["fail/0"]
    assert fail.state == JobState.FAILED and fail.return_code == 3 and "failing" in (fail.error or "")
    sleep = by_workdir["sleep/0"]
    assert sleep.state == JobState.FAILED
    assert (site.data / "sleep/0/starts.txt").read_text().count("start") == 2  # first run + one retry
    assert not (site.data / "sleep/0/done.txt").exists()
    retried = by_workdir["retried/0"]
    assert retried.state == JobState.JOB_FINISHED
    post = by_workdir["post/0"]
    assert post.state == JobState.JOB_FINISHED
    assert (site.data / "post/0/postprocessed.txt").read_text() == "42"
    assert not (site.data / "post/0/scratch.tmp").exists()
    where = by_workdir["where/0"].result
    assert isinstance(where, dict)
    assert (
        where["OMP_NUM_THREADS"] == "2"
        and where["cwd"] == "0"
        and len(where["BEAMBRIDGE_CPU_IDS"].split(",")) == 2
    )

    pilots = list(system.client.batch_jobs.filter(site_id=config.site_id))
    assert pilots and all(p.scheduler_id for p in pilots)
