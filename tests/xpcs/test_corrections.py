"""Corrections against independent references: dark + flat field, and float input without residues.

Each reference is the same frames corrected by hand (numpy, in this file) and written as a float
file, or the integer frames whose g2 the correction must not change (g2 is scale-invariant).
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from beambridge.xpcs.pipeline import _labels, run_multitau
from beambridge.xpcs.qmap import QMap
from tests.xpcs.conftest import small_qmap, write_qmap_file, write_raw
from tests.xpcs.feeding import fed


def _g2(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with h5py.File(path, "r") as f:
        return f["/xpcs/multitau/normalized_g2"][()], f["/xpcs/multitau/normalized_g2_err"][()]


def test_dark_and_flat_give_the_hand_corrected_g2(tmp_path: Path) -> None:
    """Raw = counts / flat + pedestal; the first 40 frames are dark. (raw − dark) · flat must give the
    g2 of the counts, and g2 of uncorrelated counts at long delays is 1 (it read 2.06–2.33 when the dark
    mean was taken of dark × flat and subtracted from raw frames)."""
    rng = np.random.default_rng(5)
    shape, n_dark, n = (24, 32), 40, 400
    pedestal = rng.integers(20, 40, shape).astype(np.float64)
    flat = rng.uniform(0.6, 1.6, shape)
    dark = pedestal + rng.integers(0, 2, (n_dark, *shape))
    counts = rng.poisson(2.0, (n, *shape))
    raw = np.concatenate([dark, counts / flat + pedestal]).astype(np.float32)
    qmap = small_qmap(shape)
    q = write_qmap_file(tmp_path / "q.h5", qmap)
    src = write_raw(tmp_path / "raw.h5", raw)
    run_multitau(src, q, tmp_path / "out.h5", frames=f"{n_dark}:", dark=(0, n_dark), flat=flat)

    by_hand = np.maximum(raw[n_dark:].astype(np.float64) - raw[:n_dark].astype(np.float64).mean(axis=0), 0)
    by_hand *= flat
    ref = write_raw(tmp_path / "ref.h5", by_hand)
    run_multitau(ref, q, tmp_path / "ref.out.h5")
    g2, err = _g2(tmp_path / "out.h5")
    g2_ref, err_ref = _g2(tmp_path / "ref.out.h5")
    np.testing.assert_allclose(g2, g2_ref, rtol=1e-6)
    np.testing.assert_allclose(err, err_ref, rtol=1e-6)
    assert np.all(np.abs(g2[-6:] - 1.0) < 0.05), g2[-6:]


def _sparse_counts(seed: int = 3) -> np.ndarray:
    """Few photons: many pixels see their only photons at the end or the start of the stack."""
    rng = np.random.default_rng(seed)
    frames = rng.poisson(0.02, (240, 24, 32)).astype(np.uint16)
    frames[:, :4, :] = 0
    frames[-3:, :4, :] = 1  # pixels whose only photons are in the last frames: IP is exactly 0
    frames[:3, 4:6, :] = 1  # … and in the first frames only: IF is 0 at long delays
    frames[3:, 4:6, :] = 0
    return frames


def _result(frames: np.ndarray, qmap: QMap) -> tuple[np.ndarray, np.ndarray]:
    pixels, labels = _labels(qmap)
    corr = fed(frames, pixels, "dense", block=64)
    res = corr.g2(labels, pixel_spread=True)
    return res.g2, res.g2_err


def test_float_input_leaves_no_residue_on_empty_pixels() -> None:
    """g2 is scale-invariant: counts × 0.37 (float arithmetic) must give the g2 and error bars of the
    integer counts (exact arithmetic). A window without photons used to keep a 1e-18 residue there and
    count as a valid pixel in the error bars."""
    frames = _sparse_counts()
    qmap = small_qmap()
    g2_int, err_int = _result(frames, qmap)
    g2_f, err_f = _result(frames.astype(np.float64) * 0.37, qmap)
    np.testing.assert_allclose(g2_f, g2_int, rtol=1e-9)
    np.testing.assert_allclose(err_f, err_int, rtol=1e-9, atol=1e-12)


def test_float_input_per_pixel_sums_have_exact_zeros() -> None:
    frames = _sparse_counts()
    pixels, _ = _labels(small_qmap())
    exact = fed(frames, pixels, "dense", block=64).result()
    scaled = fed(frames.astype(np.float64) / 3.0, pixels, "dense", block=50).result()
    np.testing.assert_array_equal(scaled.IP == 0, exact.IP == 0)
    np.testing.assert_array_equal(scaled.IF == 0, exact.IF == 0)


def test_averaged_frames_equal_summed_integer_frames(tmp_path: Path) -> None:
    """avg = 3 means thirds (float); the g2 of the sums of three frames (integers) is the same."""
    frames = _sparse_counts(seed=9)
    qmap = small_qmap()
    q = write_qmap_file(tmp_path / "q.h5", qmap)
    run_multitau(write_raw(tmp_path / "raw.h5", frames), q, tmp_path / "avg.h5", avg=3)
    summed = frames.reshape(80, 3, 24, 32).sum(axis=1, dtype=np.uint16)
    run_multitau(write_raw(tmp_path / "sum.h5", summed), q, tmp_path / "sum.out.h5")
    g2, err = _g2(tmp_path / "avg.h5")
    g2_ref, err_ref = _g2(tmp_path / "sum.out.h5")
    np.testing.assert_allclose(g2, g2_ref, rtol=1e-6)
    np.testing.assert_allclose(err, err_ref, rtol=1e-6)
