"""Recovery with real signals on the local scheduler: a launcher, the agent, or the server killed mid-work."""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from beambridge.platform.schedulers.local import LocalScheduler
from beambridge.schemas.batch_jobs import BatchJobState
from beambridge.site.services.scheduler_sync import SchedulerSync, pilot_name
from beambridge.states import JobState
from tests.site.harness import System, wait_for

APPS = Path(__file__).with_name("apps_e2e.py")


def _launcher_pids(site_root: Path) -> list[int]:
    """Pids of the pilots' scripts (the launcher: pilot.sh execs it) that are still alive."""
    pids = []
    for record in (site_root / "local-scheduler").glob("*/workload.json"):
        pid = json.loads(record.read_text())["pid"]
        if not (record.parent / "result.json").exists():
            pids.append(pid)
    return pids


def _finished_events(system: System, job_id: int) -> list[str]:
    return [event.to_state for event in system.client.jobs.events(job_id)]


def test_launcher_killed_mid_job_runs_it_again_elsewhere_exactly_once(system: System) -> None:
    site, config = system.make_site("kill-launcher", launcher={"idle_timeout_s": 3})
    shutil.copy(APPS, site.apps / "e2e.py")
    system.start_agent(site)
    apps = system.app_ids(config.site_id)
    [job] = system.client.jobs.bulk_create(
        [{"app_id": apps["Sleep"], "workdir": "sleepy", "parameters": {"seconds": 4}, "retry_limit": 2}]
    )
    wait_for(lambda: system.client.jobs.get(job.id).state == JobState.RUNNING, 60, what="job running")
    wait_for(lambda: (site.data / "sleepy/starts.txt").exists(), 10, what="job started")
    [pid] = _launcher_pids(site.root)
    os.kill(pid, signal.SIGKILL)

    [final] = system.wait_all([job.id], timeout_s=120)
    assert final.state == JobState.JOB_FINISHED, system.logs()
    states = _finished_events(system, job.id)
    assert states.count(JobState.RUN_TIMEOUT) == 1 and states.count(JobState.JOB_FINISHED) == 1, states
    assert (site.data / "sleepy/starts.txt").read_text().count("start") == 2
    time.sleep(5)  # long enough for an orphan of the killed launcher to have finished too
    assert (site.data / "sleepy/done.txt").read_text().count("done") == 1  # the killed run did not go on

    def all_pilots_finished() -> bool:
        pilots = list(system.client.batch_jobs.filter(site_id=config.site_id))
        return len(pilots) >= 2 and all(p.state == BatchJobState.FINISHED for p in pilots)

    wait_for(all_pilots_finished, 30, what="both pilots finished (the second one idles out)")


def test_agent_killed_and_restarted_reattaches_without_resubmitting(system: System) -> None:
    site, config = system.make_site(
        "kill-agent",
        launcher={"idle_timeout_s": 3},
        elastic_queue={"max_queued_jobs": 1, "max_total_nodes": 1},
    )
    shutil.copy(APPS, site.apps / "e2e.py")
    agent = system.start_agent(site)
    apps = system.app_ids(config.site_id)
    jobs = system.client.jobs.bulk_create(
        [
            {
                "app_id": apps["Sleep"],
                "workdir": f"s/{i}",
                "parameters": {"seconds": 1},
                "node_packing_count": 2,
            }
            for i in range(6)
        ]
    )
    wait_for(
        lambda: any(p.scheduler_id for p in system.client.batch_jobs.filter(site_id=config.site_id)),
        60,
        what="a pilot submitted",
    )
    agent.kill(signal.SIGKILL)
    time.sleep(1)
    system.start_agent(site)
    done = system.wait_all([j.id for j in jobs], timeout_s=120)
    assert all(j.state == JobState.JOB_FINISHED for j in done), system.logs()
    for i, job in enumerate(jobs):
        events = [(e.from_state, e.to_state, e.data) for e in system.client.jobs.events(job.id)]
        assert (site.data / f"s/{i}/starts.txt").read_text().count("start") == 1, (events, system.logs())
    pilots = list(system.client.batch_jobs.filter(site_id=config.site_id))
    records = list((site.root / "local-scheduler").iterdir())
    assert len(records) == len([p for p in pilots if p.scheduler_id]), "a pilot was submitted twice"
    assert len({p.scheduler_id for p in pilots if p.scheduler_id}) == len(records)


def test_crash_between_submit_and_record_is_found_by_name(system: System) -> None:
    site, config = system.make_site("crash-submit", elastic_queue={"enabled": False})
    pilot = system.client.batch_jobs.create(config.site_id, 1, 5)
    scheduler = LocalScheduler(state_dir=site.root / "local-scheduler")
    sync = SchedulerSync(system.client, site, config, scheduler)
    folder = site.pilot_dir(pilot.id)
    folder.mkdir(parents=True)
    script = folder / "pilot.sh"
    script.write_text("#!/bin/bash\nsleep 30\n")
    from beambridge.platform.schedulers import PilotRequest

    # the crash: the scheduler took the pilot, the agent died before writing down its id
    (folder / "submitting").write_text("then")
    first = scheduler.submit(PilotRequest(script, pilot_name(config, pilot.id), 1, 5, folder))
    try:
        sync.tick()
        after = system.client.batch_jobs.get(pilot.id)
        assert after.scheduler_id == first and after.state == BatchJobState.QUEUED
        assert len(list((site.root / "local-scheduler").iterdir())) == 1
        assert (folder / "scheduler_id").read_text().strip() == first
    finally:
        scheduler.cancel(first)


@pytest.fixture
def patient_system(tmp_path: Path) -> Iterator[System]:
    """A system whose launcher sessions outlive a slow restart: the test below is about a server coming back,
    not about expiry (with the harness's 6 s, a loaded machine's late first heartbeat re-ran the job)."""
    made = System(tmp_path, session_timeout_s=30)
    try:
        yield made
    finally:
        made.close()


def test_server_restart_agents_and_launchers_carry_on(patient_system: System) -> None:
    system = patient_system
    # The launcher stays for the whole restart: one that idles out while the service is down gives up its
    # undelivered reports after report_drain_s and closes as a lost session (an explained re-run), which is
    # tests/launcher/test_unreported_close.py's case, not this one's. Under load a restart took > 20 s.
    site, config = system.make_site("restart-server", launcher={"idle_timeout_s": 120}, session_timeout_s=30)
    shutil.copy(APPS, site.apps / "e2e.py")
    system.start_agent(site)
    apps = system.app_ids(config.site_id)
    first = system.client.jobs.bulk_create(
        [{"app_id": apps["Sleep"], "workdir": "before", "parameters": {"seconds": 3}}]
    )
    wait_for(lambda: system.client.jobs.get(first[0].id).state == JobState.RUNNING, 60, what="job running")
    system.server.stop()
    time.sleep(2)
    system.server.start()
    later = system.client.jobs.bulk_create(
        [{"app_id": apps["Add"], "workdir": f"after/{i}", "parameters": {"a": i, "b": 1}} for i in range(3)]
    )
    done = system.wait_all([j.id for j in first + later], timeout_s=120)
    assert all(j.state == JobState.JOB_FINISHED for j in done), system.logs()
    assert sorted(j.result for j in done if j.workdir.startswith("after")) == [1, 2, 3]
    history = [(e.to_state, e.data) for e in system.client.jobs.events(first[0].id)]
    assert (site.data / "before/starts.txt").read_text().count("start") == 1, (history, system.logs())


HANGING_HOOK = '''
from beambridge.apps.base import ApplicationDefinition
from beambridge.states import JobState


class Hangs(ApplicationDefinition):
    """Its first postprocess never ends (a hung file system, say); the next one, after a restart, does."""

    command_template = "true"

    def postprocess(self) -> JobState:
        marker = self.workdir / "hook-started.txt"
        if not marker.exists():
            marker.write_text("1")
            import time

            time.sleep(3600)
        return JobState.POSTPROCESSED
'''


def test_sigterm_with_a_hung_hook_stops_the_agent_within_its_grace(system: System) -> None:
    """SIGTERM while a hook hangs: the agent waits ``shutdown_grace_s``, logs which hook was still running
    and where (its stack), and exits; the job keeps its state and its hook runs again under the next
    agent, exactly once to the end. (Before: the agent waited for the hook for ever, and the harness's
    SIGTERM timed out.)"""
    site, config = system.make_site("hung-hook", shutdown_grace_s=2, launcher={"idle_timeout_s": 3})
    (site.apps / "hangs.py").write_text(HANGING_HOOK)
    agent = system.start_agent(site)
    hangs = system.app_id(config.site_id, "Hangs")
    [job] = system.client.jobs.bulk_create([{"app_id": hangs, "workdir": "h"}])
    wait_for(lambda: (site.data / "h/hook-started.txt").exists(), 90, what="the hook started")
    stopped = time.monotonic()
    agent.process.send_signal(signal.SIGTERM)
    agent.process.wait(timeout=30)
    took = time.monotonic() - stopped
    log = agent.log()
    assert took < 20, (took, log[-3000:])
    assert f"event=hooks_still_running job_ids={job.id} " in log, log[-3000:]
    assert re.search(r'hangs\.py", line \d+ in postprocess', log), log[-3000:]  # where it hung
    assert system.client.jobs.get(job.id).state == JobState.RUN_DONE

    system.start_agent(site)
    [final] = system.wait_all([job.id], timeout_s=90)
    assert final.state == JobState.JOB_FINISHED, system.logs()
    states = [e.to_state for e in system.client.jobs.events(job.id)]
    assert states.count(JobState.POSTPROCESSED) == 1 and states.count(JobState.JOB_FINISHED) == 1, states


HANGS_IN_ONE_WORKDIR = '''
import time

from beambridge.apps.base import ApplicationDefinition
from beambridge.states import JobState


class HangsInOne(ApplicationDefinition):
    """Its postprocess never ends in the work directory "hang" (a hung file system, say)."""

    command_template = "true"

    def postprocess(self) -> JobState:
        if self.workdir.name == "hang":
            (self.workdir / "hook-started.txt").write_text("1")
            time.sleep(3600)
        return JobState.POSTPROCESSED
'''


def test_a_hook_past_its_time_limit_fails_its_job_and_the_others_go_on(system: System) -> None:
    """One processing thread, and its hook hangs: once it has run ``hook_timeout_s`` its job fails with
    that reason, a new thread takes the hung one's place, and the jobs queued behind it finish. (Before:
    the processing service waited for every hook of its batch, so one hung hook stopped every hook of the
    site for good.)"""
    site, config = system.make_site(
        "hook-limit", processing_threads=1, hook_timeout_s=5, launcher={"idle_timeout_s": 60}
    )
    (site.apps / "hangs_in_one.py").write_text(HANGS_IN_ONE_WORKDIR)
    system.start_agent(site)
    app = system.app_id(config.site_id, "HangsInOne")
    [hung] = system.client.jobs.bulk_create([{"app_id": app, "workdir": "hang"}])
    wait_for(lambda: (site.data / "hang/hook-started.txt").exists(), 90, what="the hook started")
    others = system.client.jobs.bulk_create([{"app_id": app, "workdir": f"ok/{i}"} for i in range(3)])
    done = system.wait_all([hung.id, *(j.id for j in others)], timeout_s=90)
    states = {j.id: j.state for j in done}
    assert states == {hung.id: JobState.FAILED, **{j.id: JobState.JOB_FINISHED for j in others}}, (
        system.logs()
    )
    failure = [e for e in system.client.jobs.events(hung.id) if e.to_state == JobState.FAILED]
    assert failure[0].data["reason"] == "postprocess did not finish within 5 s (hook_timeout_s)"
    assert "event=hook_timed_out" in system.agents[0].log()


def test_sigterm_delivered_to_a_service_thread_stops_the_agent(system: System) -> None:
    """The kernel may hand a process's SIGTERM to any of its threads; Python runs the handler in the main
    thread, which must notice. Sent here to one service thread (tgkill). Before: the main thread waited on
    its stop event without a timeout, never ran the handler, and the agent ran on (a loaded full run saw
    `site stop` time out this way, the agent's stacks showing the main thread still waiting)."""
    site, _config = system.make_site("thread-signal")
    agent = system.start_agent(site)
    wait_for(lambda: "agent_running" in agent.log(), 60, what="the agent's services running")
    pid = agent.process.pid
    threads = [int(t.name) for t in Path(f"/proc/{pid}/task").iterdir() if int(t.name) != pid]
    assert threads, "the agent runs its services on threads"
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.tgkill(pid, threads[0], signal.SIGTERM) == 0, os.strerror(ctypes.get_errno())
    agent.process.wait(timeout=20)
    assert "agent_stopped" in agent.log()
