"""Adding (or changing) an app while a pilot runs: the pilot never takes a job it cannot run.

The defect, as a new user met it: with a pilot running, a file with a new app went into the site's
``apps/`` folder and the agent was restarted; the running pilot acquired all 40 new jobs and failed them
at once ("app Sleep is not in this site's apps folder"), and their 40 children with them. Now the pilot
tells the service which apps (and which version of each file) it can run, and reloads the folder when it
changes; the agent registers new and changed files without a restart.

Real processes throughout: a server, the site agent, the local scheduler's pilot and its launcher.
"""

from __future__ import annotations

import textwrap
import time

from beambridge.client import Client
from beambridge.site.config import SiteDir
from beambridge.states import JobState
from tests.site.harness import System, launcher_pids, wait_for

NAP = '''
from beambridge.apps.base import ApplicationDefinition


class Nap(ApplicationDefinition):
    """A short shell job (the defect's Sleep)."""

    command_template = "sleep {{ seconds }}; echo napped {{ seconds }}"


class Scale(ApplicationDefinition):
    """A Python job, run in the pilot's warm workers: they must see the new file too."""

    def run(self, x: float) -> float:
        return x * FACTOR


FACTOR = FACTOR_VALUE
'''


def _write_apps(site: SiteDir, factor: int) -> None:
    path = site.apps / "added.py"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(textwrap.dedent(NAP).replace("FACTOR_VALUE", str(factor)))
    tmp.replace(path)


def _app_id(client: Client, site_id: int, name: str) -> int:
    """The id of a registered app (waiting for the agent to register it)."""
    found: int = wait_for(
        lambda: next((app.id for app in client.apps.filter(site_id=site_id, name=name)), None),
        60,
        what=f"app {name} registered",
    )
    return found


def _registered(client: Client, site_id: int, name: str) -> str | None:
    """The version the service holds for app ``name`` of the site (None: not registered)."""
    for app in client.apps.filter(site_id=site_id, name=name):
        return app.version or "registered"
    return None


def _one_pilot_running(system: System, site: SiteDir, site_id: int) -> int:
    """Run a builtin job so that the elastic queue starts a pilot; the pilot's launcher pid."""
    noop = _app_id(system.client, site_id, "Noop")
    [warm] = system.client.jobs.bulk_create([{"app_id": noop, "workdir": "warm"}])
    [done] = system.wait_all([warm.id], timeout_s=120)
    assert done.state == JobState.JOB_FINISHED, system.logs()
    [pid] = wait_for(lambda: launcher_pids(site.root), 30, what="the pilot's launcher")
    return pid


def test_adding_an_app_while_a_pilot_runs_fails_no_job(system: System) -> None:
    site, config = system.make_site(
        "adding-apps",
        launcher={"idle_timeout_s": 300, "cores_per_node": 4, "long_poll_s": 2},
        elastic_queue={"max_nodes": 1, "max_total_nodes": 1, "max_queued_jobs": 1, "wall_time_min": 30},
    )
    agent = system.start_agent(site)
    pilot = _one_pilot_running(system, site, config.site_id)

    _write_apps(site, factor=2)
    # as the README said then: restart the agent so that it registers the new app
    agent.stop()
    system.start_agent(site)
    wait_for(lambda: _registered(system.client, config.site_id, "Scale"), 60, what="Scale registered")

    nap = _app_id(system.client, config.site_id, "Nap")
    scale = _app_id(system.client, config.site_id, "Scale")
    parents = system.client.jobs.bulk_create(
        [
            {"app_id": nap, "workdir": f"nap/{i}", "parameters": {"seconds": 0.05},
             "node_packing_count": 4}
            for i in range(40)
        ]
    )  # fmt: skip
    children = system.client.jobs.bulk_create(
        [
            {"app_id": scale, "workdir": f"scale/{i}", "parameters": {"x": i},
             "parent_ids": [parent.id], "node_packing_count": 4}
            for i, parent in enumerate(parents)
        ]
    )  # fmt: skip
    ids = [job.id for job in parents + children]
    ended = {job.id: job for job in system.wait_all(ids, timeout_s=180)}

    states = {job.state for job in ended.values()}
    assert states == {JobState.JOB_FINISHED}, (states, system.logs())
    for i, child in enumerate(children):
        assert ended[child.id].result == 2 * i
    for job_id in ids:
        for event in system.client.jobs.events(job_id):
            assert "apps folder" not in str(event.data), (job_id, event)
    assert launcher_pids(site.root) == [pilot], "the running pilot took the new app's jobs itself"
    pilot_log = "\n".join(path.read_text(errors="replace") for path in site.pilots.rglob("*.out"))
    assert "apps_reloaded" in pilot_log and "Nap" in pilot_log, pilot_log[-3000:]


def test_a_changed_app_file_runs_its_new_version_without_restarting_anything(system: System) -> None:
    site, config = system.make_site(
        "changing-apps",
        launcher={"idle_timeout_s": 300, "cores_per_node": 2, "long_poll_s": 2},
        elastic_queue={"max_nodes": 1, "max_total_nodes": 1, "max_queued_jobs": 1, "wall_time_min": 30},
        periods={"apps": 0.5},
    )
    system.start_agent(site)
    pilot = _one_pilot_running(system, site, config.site_id)

    _write_apps(site, factor=2)  # no agent restart: the agent notices the new file
    first = wait_for(lambda: _registered(system.client, config.site_id, "Scale"), 30, what="Scale registered")
    scale = _app_id(system.client, config.site_id, "Scale")
    before = system.client.jobs.bulk_create(
        [{"app_id": scale, "workdir": f"v1/{i}", "parameters": {"x": i}}
         for i in range(5)]
    )  # fmt: skip
    assert {job.result for job in system.wait_all([j.id for j in before], 120)} == {0, 2, 4, 6, 8}

    time.sleep(1.1)  # a new modification time even on coarse file systems
    _write_apps(site, factor=10)
    wait_for(
        lambda: _registered(system.client, config.site_id, "Scale") not in (None, first),
        30,
        what="the changed file registered",
    )
    after = system.client.jobs.bulk_create(
        [{"app_id": scale, "workdir": f"v2/{i}", "parameters": {"x": i}}
         for i in range(5)]
    )  # fmt: skip
    ended = system.wait_all([j.id for j in after], 120)
    assert {job.state for job in ended} == {JobState.JOB_FINISHED}, system.logs()
    assert sorted(job.result for job in ended) == [0, 10, 20, 30, 40], "an old copy of the app ran"
    assert launcher_pids(site.root) == [pilot]


def test_a_broken_edit_holds_the_apps_jobs_instead_of_failing_them(system: System) -> None:
    """A file that no longer loads: its app's new jobs wait (the site reports the error) and run once the
    file is mended, instead of failing on the pilot."""
    site, config = system.make_site(
        "broken-apps",
        launcher={"idle_timeout_s": 300, "cores_per_node": 2, "long_poll_s": 2},
        elastic_queue={"max_nodes": 1, "max_total_nodes": 1, "max_queued_jobs": 1, "wall_time_min": 30},
        periods={"apps": 0.5},
    )
    _write_apps(site, factor=3)
    system.start_agent(site)
    wait_for(lambda: _registered(system.client, config.site_id, "Scale"), 60, what="Scale registered")
    _one_pilot_running(system, site, config.site_id)

    time.sleep(1.1)
    (site.apps / "added.py").write_text("this is not python (\n")
    time.sleep(3)  # agent and pilot both notice
    scale = _app_id(system.client, config.site_id, "Scale")
    [held] = system.client.jobs.bulk_create([{"app_id": scale, "workdir": "held", "parameters": {"x": 1}}])
    time.sleep(6)
    job = system.client.jobs.get(held.id)
    assert job.state == JobState.PREPROCESSED and job.session_id is None, job
    time.sleep(1.1)
    _write_apps(site, factor=3)
    [done] = system.wait_all([held.id], 120)
    assert done.state == JobState.JOB_FINISHED and done.result == 3, system.logs()
