"""Two-time: its diagonal-averaged g2 agrees with multi-tau within the multi-tau error bars."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from beambridge.xpcs.pipeline import run_twotime
from beambridge.xpcs.simulate import SpeckleParameters, simulate_speckle


def test_twotime_diagonal_matches_multitau(tmp_path: Path) -> None:
    params = SpeckleParameters(
        shape=(96, 96),
        n_frames=400,
        photons_per_pixel=0.5,
        diffusion=4e6,
        n_q=4,
        static_q_per_dynamic=1,
        beam_center=(48.0, 48.0),
        r_min=8,
        r_max=44,
        seed=5,
    )
    paths = simulate_speckle(tmp_path / "run.h5", params)
    out = tmp_path / "tt.h5"
    summary = run_twotime(paths["raw"], paths["qmap"], out, bins=[1, 3], frame_time=params.frame_time)
    assert summary["twotime_bins"] == [1, 3]
    with h5py.File(out, "r") as f:
        tau = f["/xpcs/multitau/delay_list"][()]
        g2 = f["/xpcs/multitau/normalized_g2"][()]
        err = f["/xpcs/multitau/normalized_g2_err"][()]
        c2_g2 = f["/xpcs/twotime/normalized_g2"][()]
        assert c2_g2.shape == (400, 2)
        assert f["/xpcs/twotime/normalized_g2_segments"].shape == (80, 5, 2)
        c2 = f["/xpcs/twotime/correlation_map/c2_00001"][()]
        assert c2.shape == (400, 400) and np.allclose(np.tril(c2, -1), 0)
    for col, b in enumerate([1, 3]):
        level0 = tau <= 8  # single-frame delays: both estimators use the same frames
        diff = np.abs(c2_g2[tau[level0], col] - g2[level0, b - 1])
        assert np.all(diff < err[level0, b - 1]), (diff, err[level0, b - 1])
        # coarse levels average frames (the multi-tau bias grows with 2**level): compare up to level 2
        early = tau <= 32
        assert np.all(np.abs(c2_g2[tau[early], col] - g2[early, b - 1]) < 2 * err[early, b - 1])
