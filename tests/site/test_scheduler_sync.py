"""Scheduler sync against a misbehaving scheduler: no definite answer, no change; the agent carries on."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from beambridge.platform.commands import CommandRunner
from beambridge.platform.schedulers.slurm import SlurmScheduler
from beambridge.schemas.batch_jobs import BatchJobState
from beambridge.site.services.scheduler_sync import SchedulerSync
from tests.site.harness import System


def _fake_tools(folder: Path, **scripts: str) -> None:
    folder.mkdir(exist_ok=True)
    for name, body in scripts.items():
        path = folder / name
        path.write_text("#!/bin/bash\n" + body + "\n")
        path.chmod(0o755)


def test_garbled_or_hanging_scheduler_changes_nothing(
    system: System, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site, config = system.make_site("flaky", "slurm", elastic_queue={"enabled": False})
    tools = tmp_path / "bin"
    _fake_tools(tools, sbatch="echo 'sbatch: garbage from a confused controller'; exit 0", squeue="sleep 30")
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ['PATH']}")
    sync = SchedulerSync(system.client, site, config, SlurmScheduler(CommandRunner(timeout_s=1)))
    pilot = system.client.batch_jobs.create(config.site_id, 1, 5)

    assert sync.run_once()  # the service survives: nothing raised out of it
    after = system.client.batch_jobs.get(pilot.id)
    assert after.state == BatchJobState.PENDING_SUBMISSION and after.scheduler_id is None
    assert (site.pilot_dir(pilot.id) / "submitting").exists()  # the next try looks the name up first

    # a pilot the scheduler knows, while squeue hangs: still no change
    system.client.batch_jobs.update(pilot.id, state="queued", scheduler_id="4242")
    (site.pilot_dir(pilot.id) / "submitting").unlink()
    assert sync.run_once()
    assert system.client.batch_jobs.get(pilot.id).state == BatchJobState.QUEUED


def test_a_refused_submission_is_recorded_with_the_reason(
    system: System, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site, config = system.make_site("strict", "slurm", elastic_queue={"enabled": False})
    tools = tmp_path / "bin"
    _fake_tools(
        tools,
        sbatch="echo 'sbatch: error: Batch job submission failed: Invalid partition name specified' >&2; exit 1",
        squeue="exit 0",
    )
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ['PATH']}")
    sync = SchedulerSync(system.client, site, config, SlurmScheduler(CommandRunner(timeout_s=5)))
    pilot = system.client.batch_jobs.create(config.site_id, 1, 5, queue="nowhere")
    assert sync.run_once()
    after = system.client.batch_jobs.get(pilot.id)
    assert after.state == BatchJobState.SUBMIT_FAILED
    assert "Invalid partition name" in after.status_info["error"]
