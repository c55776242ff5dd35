"""Data staging end to end on the local scheduler: inputs in, results out, failures named."""

from __future__ import annotations

import shutil
from pathlib import Path

from beambridge.states import JobState
from tests.site.harness import System, wait_for

APPS = Path(__file__).with_name("apps_e2e.py")


def test_jobs_with_inputs_and_outputs_stage_through_a_beamline_location(
    system: System, tmp_path: Path
) -> None:
    beamline = tmp_path / "beamline"
    (beamline / "data").mkdir(parents=True)
    for i in range(6):
        (beamline / "data" / f"A{i:03d}.dat").write_bytes(b"x" * (1000 + i))
    site, config = system.make_site(
        "staging",
        locations={"aps_dtn": {"kind": "local", "path": str(beamline)}},
        transfers={"max_files_per_task": 4},
        launcher={"idle_timeout_s": 3},
    )
    shutil.copy(APPS, site.apps / "e2e.py")
    system.start_agent(site)

    def count_app() -> int | None:
        return next(
            (a.id for a in system.client.apps.filter(site_id=config.site_id) if a.name == "Count"), None
        )

    app_id = wait_for(count_app, 60, what="the Count app")
    wait_for(
        lambda: system.client.sites.get(config.site_id).locations == {"aps_dtn": "local"},
        30,
        what="locations",
    )
    jobs = system.client.jobs.bulk_create(
        {
            "app_id": app_id,
            "workdir": f"count/{i}",
            "transfers": {"raw": f"aps_dtn:/data/A{i:03d}.dat", "result": f"aps_dtn:/results/A{i:03d}.txt"},
            "node_packing_count": 4,
        }
        for i in range(6)
    )
    missing = system.client.jobs.create(
        app_id,
        "count/missing",
        transfers={"raw": "aps_dtn:/data/nope.dat", "result": "aps_dtn:/results/nope.txt"},
    )
    done = {job.workdir: job for job in system.wait_all([j.id for j in jobs] + [missing.id], timeout_s=120)}
    for i in range(6):
        job = done[f"count/{i}"]
        assert job.state == JobState.JOB_FINISHED, system.logs()
        assert (beamline / "results" / f"A{i:03d}.txt").read_text().strip() == str(1000 + i)
        states = [e.to_state for e in system.client.jobs.events(job.id)]
        assert (
            states.index(JobState.STAGED_IN)
            < states.index(JobState.RUNNING)
            < states.index(JobState.STAGED_OUT)
        )
    staged = next(e for e in system.client.jobs.events(jobs[0].id) if e.to_state == JobState.STAGED_IN)
    [figures] = staged.data["transfers"]
    assert figures["files"] >= 1 and figures["bytes"] >= 1000 and "rate_mb_s" in figures
    inputs = {item.task_id for item in system.client.transfers.filter(site_id=config.site_id, direction="in")}
    assert len(inputs) <= 4  # batched: 7 inputs in tasks of at most 4 (the failing one may retry)
    failed = done["count/missing"]
    assert failed.state == JobState.FAILED
    assert "nope.dat" in (failed.error or "") and "not_found" in (failed.error or "")
    assert not list((beamline / "results").glob("nope*"))
