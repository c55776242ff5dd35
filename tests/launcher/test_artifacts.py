"""A run's result artifacts go to the service before its RUN_DONE; bad ones are refused without harm."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from beambridge.apps.artifacts import ArtifactError, collect_artifacts, save_artifact
from beambridge.schemas.artifacts import MAX_ARTIFACT_BYTES, XpcsTwoTime
from beambridge.states import JobState
from tests.site.harness import System

APPS = Path(__file__).resolve().parent / "apps_artifacts.py"
E2E_APPS = Path(__file__).resolve().parents[1] / "site" / "apps_e2e.py"


def test_the_launcher_uploads_artifacts_and_reports_refusals(system: System) -> None:
    site, config = system.make_site(
        "artifacts", launcher={"idle_timeout_s": 3, "cores_per_node": 2}, elastic_queue={"enabled": False}
    )
    shutil.copy(APPS, site.apps / "artifacts.py")
    shutil.copy(E2E_APPS, site.apps / "e2e.py")  # the harness waits for these to be registered
    agent = system.start_agent(site)  # registers the apps; no pilots (elastic queue off)
    apps = system.app_ids(config.site_id)
    agent.stop()
    job = system.client.jobs.create(apps["Summarised"], "summarised", parameters={"n_q": 3})
    launcher = subprocess.run(
        [sys.executable, "-m", "beambridge", "launcher", "--site-dir", str(site.root), "--nodes", "localhost"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert launcher.returncode == 0, launcher.stdout + launcher.stderr
    [done] = system.client.jobs.filter(id=[job.id])
    assert done.state == JobState.JOB_FINISHED and done.result == 3
    assert [a.name for a in system.client.jobs.artifacts(job.id)] == ["g2"]
    g2 = system.client.jobs.artifact(job.id, "g2")
    assert g2.kind == "xpcs.g2" and len(g2.content["q"]) == 3
    [run_done] = [e for e in system.client.jobs.events(job.id) if e.to_state == JobState.RUN_DONE]
    summary = run_done.data["artifacts"]
    assert summary["uploaded"] == ["g2"]  # type: ignore[index]
    refused = summary["refused"]  # type: ignore[index]
    assert set(refused) == {"broken", "Bad Name", "huge", "endless"}, refused  # type: ignore[arg-type]
    assert "not a valid artifact" in refused["broken"]  # type: ignore[index]
    assert "artifact name" in refused["Bad Name"]  # type: ignore[index]
    assert "at most" in refused["huge"]  # type: ignore[index]
    assert "not a regular file" in refused["endless"] or "cannot be read" in refused["endless"]  # type: ignore[index]
    assert "artifact_refused" in launcher.stdout + launcher.stderr


def test_save_artifact_refuses_what_the_service_would(tmp_path: Path) -> None:
    big = XpcsTwoTime(c2=[[1.0 + 1e-12 * j + 0.12345678901 for j in range(256)]] * 256, dt_s=0.1)
    try:
        save_artifact(tmp_path, "big", big)
    except ArtifactError as exc:
        assert f"{MAX_ARTIFACT_BYTES:,}" in str(exc)
    else:
        raise AssertionError("a > 512 KiB artifact was saved")
    try:
        save_artifact(tmp_path, "../escape", XpcsTwoTime(c2=[[1.0]], dt_s=0.1))
    except ArtifactError as exc:
        assert "artifact name" in str(exc)
    else:
        raise AssertionError("a name with a path was saved")
    assert not (tmp_path.parent / "escape.json").exists()
    save_artifact(tmp_path, "small", XpcsTwoTime(c2=[[1.0]], dt_s=0.1))
    collected = collect_artifacts(tmp_path)
    assert list(collected.ready) == ["small"] and collected.refused == {}
