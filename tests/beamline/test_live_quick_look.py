"""Quick looks while the detector writes: the watcher (``--live``, its own process, killed with SIGKILL three
times) submits each SWMR-written dataset as its first frame lands, the quick look follows the file and the
result is there moments after the last frame — every dataset exactly once. An acquisition that stops half
way fails alone, with a reason that names it."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from beambridge.apps.quicklook import features
from beambridge.beamline.simulator import BeamlineRun, SimulatedBeamline
from beambridge.cli.beamline_rig import BeamlineRig, xpcs_workflow
from beambridge.states import JobState
from beambridge.xpcs.io.live import SwmrFrameWriter
from beambridge.xpcs.pipeline import run_multitau
from tests.beamline.waiting import wait_until

DATASETS = 10
FRAMES = 120


@pytest.mark.slow
def test_live_quick_looks_follow_the_detector_exactly_once_across_kills(tmp_path: Path) -> None:
    run = BeamlineRun(rows=32, cols=32, frames=FRAMES, cadence_s=1.5, write_s=1.2, blocks=12, swmr=True)
    beamline = SimulatedBeamline(tmp_path / "detector", tmp_path / "cache", run)
    beamline.stack(2.0e6)
    with BeamlineRig(tmp_path / "home") as rig:
        spec = xpcs_workflow(beamline.qmap, quick_frames="0:", follow_timeout=3.0)
        spec["steps"][0]["retry_limit"] = 0
        workflow = rig.write_workflow(spec)
        watch = ("--settle", "0.3", "--rescan", "2", "--live")
        rig.start_watcher(beamline.folder, workflow, *watch)
        written: list[Path] = []
        writer = threading.Thread(
            target=lambda: written.extend(p for p, _ in beamline.datasets([2.0e6] * DATASETS)), daemon=True
        )
        writer.start()

        def early() -> int:
            """Submissions made before their file's last frame was written."""
            count = 0
            for sub in rig.sdk.submissions.list(workflow="xpcs"):
                last = beamline.last_frame_at.get(Path(sub.dataset))
                count += last is None or sub.created_at.timestamp() < last
            return count

        for kills in range(3):
            wait_until(lambda k=kills: rig.watcher_log.read_text().count("event=watching") == k + 1, 120)
            # Kill only a watcher that has submitted a dataset while the detector wrote it.
            seen = early()
            wait_until(lambda n=seen: not writer.is_alive() or early() > n, 120)
            time.sleep(0.23 * kills)  # mid-acquisition, at a different moment each time
            rig.kill_watcher()
            time.sleep(0.4)
            rig.start_watcher(beamline.folder, workflow, *watch)
        writer.join(120)
        # An acquisition that stops after 30 of its 120 frames (the writer crashed; its file stays).
        stopped = beamline.folder / "scan_stopped.h5"
        with SwmrFrameWriter(stopped, (32, 32), FRAMES, run.frame_time) as partial:
            partial.append(beamline.stack(2.0e6)[:30])
        wanted = Counter([p.name for p in written] + [stopped.name])

        def closed() -> list:  # type: ignore[type-arg]
            subs = list(rig.sdk.submissions.list(workflow="xpcs"))
            return subs if len(subs) >= len(wanted) and all(s.closed_at for s in subs) else []

        wait_until(lambda: bool(closed()), 120)
        subs = closed()
        assert Counter(Path(s.dataset).name for s in subs) == wanted, "missed or duplicated datasets"
        assert all(s.key.startswith("live:") and s.context["live"] is True for s in subs)
        jobs = {job.id: job for job in rig.wait_for_jobs([j for s in subs for j in s.job_ids], 240)}
        # Read the submissions again now that their jobs are done: the list above was taken when the last
        # file closed, possibly before a quick look had finished (its first_result_s was still None).
        subs = list(rig.sdk.submissions.list(workflow="xpcs"))
    by_name = {Path(s.dataset).name: s for s in subs}
    bad = jobs[by_name.pop(stopped.name).steps["quick"].job_id or 0]
    assert bad.state is JobState.FAILED and "stalled: 30 of 120 frames" in (bad.error or ""), bad.error
    # Submitted while the detector wrote (a watcher was up), and followed: the quick look has every frame
    # and the same g2 as correlating the finished file.
    last_frame = {name: beamline.last_frame_at[beamline.folder / name] for name in by_name}
    early = [s for name, s in by_name.items() if s.created_at.timestamp() < last_frame[name]]
    # How many depends on how fast a restarted watcher comes up (seconds on a loaded machine): at least one
    # shows that a dataset is submitted while written and that its quick look follows it to the last frame.
    assert early, "no watcher submitted a dataset while the detector wrote it"
    offline = tmp_path / "offline.hdf"
    first = written[0]
    run_multitau(str(first), str(beamline.qmap), str(offline), frame_time=run.frame_time)
    for name, sub in by_name.items():
        quick = jobs[sub.steps["quick"].job_id or 0]
        full = jobs[sub.steps["full"].job_id or 0]
        assert quick.state is JobState.JOB_FINISHED and full.state is JobState.JOB_FINISHED, name
        assert quick.result["frames"] == FRAMES  # type: ignore[index]
        assert sub.first_result_s is not None and sub.closed_at is not None
    followed = jobs[by_name[first.name].steps["quick"].job_id or 0].result
    assert followed["features"] == features(str(offline))  # type: ignore[index]
