"""Failed work retried, end to end: a real server process, a local site agent running pilots, and the
``beambridge`` command a user types."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from beambridge.states import JobState
from tests.cli.conftest import RunCli
from tests.site.harness import System

APPS = Path(__file__).parents[1] / "site" / "apps_e2e.py"


@pytest.fixture
def system(tmp_path: Path, home: Path) -> Iterator[System]:
    made = System(tmp_path / "system")
    try:
        made.client.save(home / "client.json")  # what `beambridge login` leaves behind
        yield made
    finally:
        made.close()


@pytest.mark.slow
def test_failed_runs_are_retried_and_a_user_retries_the_rest(system: System, cli: RunCli) -> None:
    site, config = system.make_site(
        "laptop", launcher={"cores_per_node": 2, "idle_timeout_s": 20}, elastic_queue={"wall_time_min": 10}
    )
    shutil.copy(APPS, site.apps / "e2e.py")
    system.start_agent(site)
    apps = system.app_ids(config.site_id)
    jobs = system.client.jobs
    recovers = jobs.create(apps["Flaky"], "flaky/recovers", parameters={"succeed_on": 3}, retry_limit=3)
    gives_up = jobs.create(apps["Flaky"], "flaky/gives-up", parameters={"succeed_on": 3}, retry_limit=1)
    child = jobs.create(apps["Add"], "flaky/child", parameters={"a": 1, "b": 2}, parent_ids=[gives_up])
    fragile = jobs.create(apps["Fragile"], "fragile", parameters={"succeed_on": 2}, tags={"run": "42"})
    ids = [recovers.id, gives_up.id, child.id, fragile.id]
    done = {job.id: job for job in system.wait_all(ids, timeout_s=180)}

    runs = {job.workdir: _runs(site.data / job.workdir) for job in done.values()}
    assert done[recovers.id].state == JobState.JOB_FINISHED and done[recovers.id].result == 3, system.logs()
    assert runs["flaky/recovers"] == 3  # two failed runs, retried by the service, then success
    assert done[gives_up.id].state == JobState.FAILED and runs["flaky/gives-up"] == 2  # 1 + retry_limit 1
    assert "run 2 failed on purpose" in (done[gives_up.id].error or "")
    assert done[child.id].state == JobState.FAILED
    assert done[fragile.id].state == JobState.FAILED and runs["fragile"] == 1  # retry_on_error = False

    logs = cli("job", "logs", str(gives_up.id))  # the last run's output, uploaded by the launcher
    assert logs.code == 0 and "run 2 of 2 (RUN_ERROR" in logs.out and "run 2 of a counted app" in logs.out
    every = cli("job", "logs", str(gives_up.id), "--all", "--json")
    # job.out keeps every run's output: each run's tail ends with that run's lines
    tails = [run["stdout"].strip().splitlines()[-1] for run in json.loads(every.out)]
    assert tails == ["run 1 of a counted app", "run 2 of a counted app"]
    none = cli("job", "logs", str(child.id))
    assert none.code == 2 and "has no run output yet (it is FAILED)" in none.err
    pilot_logs = "".join(p.read_text(errors="replace") for p in site.pilots.rglob("*.out"))
    assert re.search(
        rf"job_failed job_id={gives_up.id} exit_code=1 error=.*run 2 failed on purpose", pilot_logs
    )
    retried = cli("job", "retry", str(gives_up.id), str(recovers.id))
    assert retried.code == 0, retried.err
    assert retried.out.strip() == f"retried 2 job(s): {gives_up.id}, {child.id}"  # the child followed
    assert retried.err.strip() == (
        f"job {recovers.id} not retried: JOB_FINISHED: only FAILED or KILLED jobs can be retried"
    )
    by_tag = cli("job", "retry", "--tag", "run=42", "--state", "FAILED", "--json")
    assert json.loads(by_tag.out)["ids"] == [fragile.id]
    again = {job.id: job for job in system.wait_all(ids, timeout_s=180)}
    assert again[gives_up.id].state == JobState.JOB_FINISHED and _runs(site.data / "flaky/gives-up") == 3
    assert again[child.id].state == JobState.JOB_FINISHED and again[child.id].result == 3
    assert again[fragile.id].state == JobState.JOB_FINISHED and _runs(site.data / "fragile") == 2

    history = json.loads(cli("job", "show", str(gives_up.id), "--json").out)["events"]
    [retry_event] = [e for e in history if e["from_state"] == "FAILED"]
    assert retry_event["data"]["retried_by"] == "scientist"

    nothing = cli("job", "retry", str(recovers.id))
    assert nothing.code == 1 and "not retried: JOB_FINISHED" in nothing.err
    usage = cli("job", "retry")
    assert usage.code == 2 and "name the jobs" in usage.err


def _runs(workdir: Path) -> int:
    path = workdir / "runs.txt"
    return int(path.read_text()) if path.exists() else 0
