"""The beamline end to end: a simulated beamline writes XPCS datasets frame by frame at a steady cadence,
the watcher (its own process) submits them, a local site runs them — and the watcher is killed with
SIGKILL three times along the way. Every dataset must be analysed exactly once."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from beambridge.beamline.simulator import BeamlineRun, SimulatedBeamline
from beambridge.cli.beamline_rig import BeamlineRig, xpcs_workflow
from beambridge.states import JobState
from tests.beamline.waiting import wait_until

DATASETS = 12


@pytest.mark.slow
def test_every_dataset_is_analysed_exactly_once_across_three_kills(tmp_path: Path) -> None:
    beamline = SimulatedBeamline(
        tmp_path / "detector",
        tmp_path / "cache",
        BeamlineRun(rows=32, cols=32, frames=120, cadence_s=0.7, write_s=0.2, blocks=6),
    )
    beamline.stack(2.0e6)  # simulate the speckle before the clock starts
    with BeamlineRig(tmp_path / "home") as rig:
        workflow = rig.write_workflow(xpcs_workflow(beamline.qmap, quick_frames="0:50"))
        rig.start_watcher(beamline.folder, workflow, "--settle", "0.3", "--rescan", "2")
        written: list[Path] = []
        writer = threading.Thread(
            target=lambda: written.extend(p for p, _ in beamline.datasets([2.0e6] * DATASETS)), daemon=True
        )
        writer.start()
        for kills in range(3):
            # Kill only a watcher that is up and has submitted something since it started, at a
            # different moment of its cycle each time.
            wait_until(
                lambda k=kills: rig.watcher_log.read_text().count("event=watching") == k + 1, timeout=120
            )
            submitted = len(list(rig.sdk.submissions.list(workflow="xpcs")))
            wait_until(
                lambda n=submitted: (
                    not writer.is_alive() or len(list(rig.sdk.submissions.list(workflow="xpcs"))) > n
                ),
                timeout=120,
            )
            time.sleep(0.17 * kills)
            rig.kill_watcher()
            time.sleep(0.6)  # a dataset closes while no watcher runs
            rig.start_watcher(beamline.folder, workflow, "--settle", "0.3", "--rescan", "2")
        writer.join(120)
        assert len(written) == DATASETS

        deadline = time.monotonic() + 120
        while True:
            subs = list(rig.sdk.submissions.list(workflow="xpcs"))
            if len(subs) >= DATASETS or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        per_dataset = Counter(Path(s.dataset).name for s in subs)
        assert per_dataset == Counter(p.name for p in written), "missed or duplicated datasets"

        job_ids = [job_id for s in subs for job_id in s.job_ids]
        jobs = rig.wait_for_jobs(job_ids, timeout_s=240)
        assert len(jobs) == 2 * DATASETS
        assert all(job.state is JobState.JOB_FINISHED for job in jobs), [job.error for job in jobs]
        by_dataset = Counter(str(job.data["dataset"]) for job in jobs)
        assert set(by_dataset.values()) == {2}
        for sub in rig.sdk.submissions.list(workflow="xpcs"):
            assert sub.first_result_s is not None and sub.full_result_s is not None
            assert 0 < sub.first_result_s <= sub.full_result_s
        quick = [job for job in jobs if job.tags["step"] == "quick"]
        assert all(job.result["features"]["D"] > 0 for job in quick)  # type: ignore[index]
    log = rig.watcher_log.read_text()
    assert log.count("event=watching") == 4  # one start and three restarts
