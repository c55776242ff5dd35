"""The XPCS apps leave the console's artifacts: g2 curves with per-bin fits and D, two-time maps."""

from __future__ import annotations

from pathlib import Path

import pytest

from beambridge.apps.artifacts import collect_artifacts
from beambridge.apps.xpcs import XpcsSimulate, XpcsTwoTime
from beambridge.schemas.artifacts import MAX_TWOTIME
from beambridge.schemas.artifacts import XpcsG2 as G2Artifact
from beambridge.schemas.artifacts import XpcsTwoTime as TwoTimeArtifact
from beambridge.schemas.jobs import Job


def _job(app_id: int, parameters: dict[str, object]) -> Job:
    return Job.model_validate({
        "id": 1, "site_id": 1, "app_id": app_id, "workdir": "w", "state": "RUNNING", "parameters": parameters,
        "tags": {}, "data": {}, "num_nodes": 1, "ranks_per_node": 1, "threads_per_rank": 1, "gpus_per_rank": 0,
        "node_packing_count": 1, "wall_time_limit_min": 0, "parent_ids": [], "transfers": {}, "launch_params": {},
        "session_id": None, "batch_job_id": None,
        "retry_count": 0, "retry_limit": 0, "priority": 0, "return_code": None, "result": None, "error": None,
        "created_at": "2026-12-04T00:00:00Z", "updated_at": "2026-12-04T00:00:00Z",
    })  # fmt: skip


def test_two_time_job_leaves_g2_with_fits_and_bounded_maps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    sim = {"rows": 32, "cols": 32, "n_frames": 400, "photons_per_pixel": 0.3, "seed": 3}
    XpcsSimulate(_job(1, sim), tmp_path).run(**sim)  # type: ignore[arg-type]
    params = XpcsTwoTime.validate_parameters({"bins": [2], "fit": True, "qmap": "raw_qmap.h5"})
    app = XpcsTwoTime(_job(2, params), tmp_path)
    summary = app.run(**params)
    assert isinstance(summary, dict) and summary["fit"]["D"] is not None  # type: ignore[index]
    collected = collect_artifacts(tmp_path)
    assert collected.refused == {}
    g2 = collected.ready["g2"]
    assert isinstance(g2, G2Artifact)
    assert g2.fit is not None and any(f is not None for f in g2.fit)
    assert g2.D is not None and abs(g2.D - summary["fit"]["D"]) < 1e-9 * abs(g2.D)  # type: ignore[index]
    assert len(g2.g2) == len(g2.q) and all(len(row) == len(g2.tau_s) for row in g2.g2)
    two = collected.ready["twotime-2"]
    assert isinstance(two, TwoTimeArtifact)
    assert len(two.c2) <= MAX_TWOTIME and two.bin == 2 and two.dt_s > 0
    diagonal = [two.c2[i][i] for i in range(len(two.c2))]
    off = [two.c2[i][-1 - i] for i in range(len(two.c2) // 4)]
    assert sum(d for d in diagonal if d is not None) / len(diagonal) > sum(
        o for o in off if o is not None
    ) / len(off)
