"""The warm quick-look pilot: the elastic queue keeps one running with no backlog at all, it never exits
idle, its workers have warmed the apps up before the first job, and it takes quick looks only."""

from __future__ import annotations

import time

from beambridge.schemas.batch_jobs import BatchJobState
from beambridge.site.config import SiteDir
from beambridge.site.services.elastic_queue import QUICK_LOOK_TAGS
from beambridge.states import JobState
from tests.site.harness import System, launcher_pids, wait_for

APPS = '''
import os
from pathlib import Path

from beambridge.apps.base import ApplicationDefinition

MARKS = Path(__file__).with_name("warm-marks")


class Warmable(ApplicationDefinition):
    """Notes each process that warmed it up, and says which process ran it."""

    @classmethod
    def warm_up(cls) -> None:
        MARKS.mkdir(exist_ok=True)
        (MARKS / str(os.getpid())).write_text("warm")

    def run(self) -> dict:
        return {"pid": os.getpid()}
'''


def worker_warm_lines(site: SiteDir) -> list[str]:
    """The pilots' log lines of workers that finished warming every app up."""
    return [
        line
        for out in site.pilots.rglob("*.out")
        for line in out.read_text(errors="replace").splitlines()
        if "event=worker_warm " in line
    ]


def test_a_warm_pilot_is_kept_for_quick_looks_only(system: System) -> None:
    site, config = system.make_site(
        "beamline",
        launcher={"cores_per_node": 2, "idle_timeout_s": 2},
        # One node for the backlog's pilots: the warm pilot comes on top and must not take it.
        elastic_queue={"warm_pilot": True, "max_total_nodes": 1, "wall_time_min": 10},
    )
    (site.apps / "warmable.py").write_text(APPS)
    marks = site.apps / "warm-marks"
    system.start_agent(site)
    app_id = system.app_id(config.site_id, "Warmable")

    def warm_pilots() -> list:  # type: ignore[type-arg]
        return [
            p
            for p in system.client.batch_jobs.filter(site_id=config.site_id)
            if p.filter_tags == QUICK_LOOK_TAGS
        ]

    # With nothing to run, a warm pilot starts and both its workers warm the app up.
    wait_for(lambda: [p for p in warm_pilots() if p.state is BatchJobState.RUNNING], 90, what="a warm pilot")
    wait_for(lambda: marks.is_dir() and len(list(marks.iterdir())) == 2, 90, what="two warmed workers")
    pilot = warm_pilots()[0]
    # Each worker goes on to warm the built-in XPCS apps (their whole pipeline; numba compiles where the
    # cache is cold, which in a fresh clone at CI load took over two minutes): a job sent meanwhile waits
    # in the worker's pipe. The quick look is timed from when both say they are warm.
    wait_for(lambda: len(worker_warm_lines(site)) == 2, 420, what="both workers warm")
    time.sleep(5)  # well past the launcher's idle timeout
    assert [p.state for p in warm_pilots()] == [BatchJobState.RUNNING], "the warm pilot exited idle"
    assert len(launcher_pids(site.root, [pilot.id])) == 1
    assert len(warm_pilots()) == 1  # one, not one per tick

    quick = system.client.jobs.create(app_id=app_id, workdir="quick/0", tags=QUICK_LOOK_TAGS)
    other = system.client.jobs.create(app_id=app_id, workdir="other/0")
    done = {job.id: job for job in system.wait_all([quick.id, other.id], timeout_s=120)}
    assert {job.state for job in done.values()} == {JobState.JOB_FINISHED}, system.logs()
    warmed = {int(p.name) for p in marks.iterdir()}
    assert done[quick.id].result["pid"] in warmed  # type: ignore[index]  # a warmed worker ran it
    assert done[other.id].result["pid"] not in warmed  # type: ignore[index]  # an ordinary pilot did
    pilots = list(system.client.batch_jobs.filter(site_id=config.site_id))
    assert len(pilots) == 2 and len(warm_pilots()) == 1
