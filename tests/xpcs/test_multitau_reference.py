"""The correlator against a plain, obviously-correct reference (numpy, one delay at a time)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numba
import numpy as np
import pytest

from beambridge.xpcs.multitau import MultiTauCorrelator
from beambridge.xpcs.multitau.delays import multitau_schedule
from beambridge.xpcs.pipeline import run_multitau
from beambridge.xpcs.qmap import QMap


def reference_g2(frames: np.ndarray, qmap: QMap, dpl: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """XPCS-Eigen definitions written out directly: coarse series, then per-bin means and pixel spread."""
    n = frames.shape[0]
    x = frames.reshape(n, -1).astype(np.float64)
    dq, sq = qmap.dqmap.ravel(), qmap.sqmap.ravel()
    taus = []
    g2 = []
    err = []
    for level in range(20):
        m = 2**level
        lags = range(1, 2 * dpl + 1) if level == 0 else range(dpl + 1, 2 * dpl + 1)
        big_m = n // m
        if big_m < 2:
            break
        coarse = x[: big_m * m].reshape(big_m, m, -1).mean(axis=1)
        for c in lags:
            tau = c * m
            if tau + m > n or level > np.floor(np.log2(n) - np.log2(1 + 1 / dpl)) - np.floor(np.log2(dpl)):
                continue
            pairs = big_m - c
            G2 = (coarse[:pairs] * coarse[c:]).mean(axis=0)
            IP = coarse[:pairs].mean(axis=0)
            IF = coarse[c:].mean(axis=0)
            row, row_err = [], []
            for q in range(1, qmap.n_dynamic + 1):
                per_static = []
                for s in np.unique(sq[dq == q]):
                    p = sq == s
                    per_static.append(G2[p].mean() / (IP[p].mean() * IF[p].mean()))
                row.append(np.mean(per_static))
                p = dq == q
                gp = G2[p] / (IP[p] * IF[p])
                gp = gp[np.isfinite(gp)]
                row_err.append(np.std(gp) / np.sqrt(gp.size))
            taus.append(tau)
            g2.append(row)
            err.append(row_err)
    return np.asarray(taus), np.asarray(g2), np.asarray(err)


def test_schedule_matches_xpcs_eigen_table() -> None:
    s = multitau_schedule(1000, 4)
    assert s.n_tau == 34
    assert s.tau[:8].tolist() == [1, 2, 3, 4, 5, 6, 7, 8]
    assert s.tau[-2:].tolist() == [640, 768]
    assert s.n_pairs[-2:].tolist() == [2, 1]


@pytest.mark.parametrize("mode", ["dense", "sparse"])
def test_g2_and_errors_equal_reference(
    small_run: tuple[Path, Path, np.ndarray, QMap], tmp_path: Path, mode: str
) -> None:
    raw, qmap_path, frames, qmap = small_run
    out = tmp_path / "out.h5"
    run_multitau(raw, qmap_path, out, mode=mode, pixel_spread=True)
    tau, g2_ref, err_ref = reference_g2(frames, qmap)
    with h5py.File(out, "r") as f:
        assert f["/xpcs/multitau/delay_list"][()].tolist() == tau.tolist()
        g2 = f["/xpcs/multitau/normalized_g2"][()]
        err = f["/xpcs/multitau/normalized_g2_err_pixel_spread"][()]  # XPCS-Eigen's error bar
        honest = f["/xpcs/multitau/normalized_g2_err"][()]
        cov = f["/xpcs/multitau/normalized_g2_cov"][()]
    assert g2.shape == (tau.size, qmap.n_dynamic)
    np.testing.assert_allclose(g2, g2_ref, rtol=0, atol=1e-5)
    np.testing.assert_allclose(err, err_ref, rtol=0, atol=1e-5)
    # the file's error bar is the jackknife one: the square root of the covariance's diagonal
    assert cov.shape == (qmap.n_dynamic, tau.size, tau.size)
    np.testing.assert_allclose(honest, np.sqrt(np.einsum("qjj->jq", cov)), rtol=1e-6)


def test_dense_sparse_and_thread_counts_bit_identical() -> None:
    rng = np.random.default_rng(3)
    frames = (rng.random((333, 40, 50)) < 0.05) * rng.integers(1, 4, (333, 40, 50))
    pixels = np.flatnonzero(rng.random(2000) < 0.9)
    results = []
    for mode, threads, block in (("dense", 1, 50), ("dense", 2, 333), ("sparse", 2, 17), ("sparse", 1, 100)):
        numba.set_num_threads(threads)
        corr = MultiTauCorrelator(333, pixels, 2000, mode=mode)  # type: ignore[arg-type]
        for a in range(0, 333, block):
            corr.add_frames(frames[a : a + block])
        results.append(corr.result())
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    for other in results[1:]:
        for name in ("G2", "IP", "IF", "mean_intensity", "segment_mean"):
            assert np.array_equal(getattr(results[0], name), getattr(other, name)), name
