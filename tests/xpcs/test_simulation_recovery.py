"""Simulated speckle with known D: the whole chain (simulate → corr → fit) must recover it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from beambridge.xpcs.fitting import fit_result
from beambridge.xpcs.pipeline import run_multitau
from beambridge.xpcs.result_file import read_multitau
from beambridge.xpcs.simulate import SpeckleParameters, simulate_speckle


@pytest.mark.parametrize(("photons", "tolerance"), [(0.1, 0.02), (0.01, 0.10)])
def test_diffusion_recovered(tmp_path: Path, photons: float, tolerance: float) -> None:
    params = SpeckleParameters(shape=(256, 256), n_frames=1000, photons_per_pixel=photons, seed=11)
    paths = simulate_speckle(tmp_path / "run.h5", params)
    truth = json.loads(Path(paths["truth"]).read_text())
    out = tmp_path / "result.h5"
    summary = run_multitau(paths["raw"], paths["qmap"], out, frame_time=params.frame_time)
    assert summary["frames"] == 1000 and summary["n_tau"] == 34
    report = fit_result(read_multitau(out))
    assert report.exact is not None
    d = report.exact.D
    assert abs(d / truth["diffusion"] - 1) < tolerance, (d, truth["diffusion"])
    assert abs(report.exact.contrast - truth["contrast"]) < 5 * tolerance
    # the quoted uncertainty is honest: the error is within 4 sigma
    assert abs(d - truth["diffusion"]) < 4 * report.exact.err
