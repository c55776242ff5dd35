"""g2 straight from the correlator's state (``MultiTauCorrelator.g2``) against g2 from per-pixel sums:
dense, sparse and float state, any thread count and block size."""

from __future__ import annotations

import numpy as np
import pytest

from beambridge.xpcs.errors import OptionError
from beambridge.xpcs.multitau import MultiTauCorrelator
from beambridge.xpcs.multitau.bins import CHUNK_PIXELS, CHUNKS, BinPartials, bin_sums, chunk_pixels
from beambridge.xpcs.multitau.g2norm import BinLabels, G2Result, normalize_g2
from tests.xpcs.feeding import fed, numba_threads

N_FRAMES, H, W = 301, 60, 83  # 4,980 pixels: several tiles, strips and chunks


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, BinLabels]:
    """Sparse counts with some dead pixels (IP·IF = 0), bins that interleave and one static bin
    with no pixels, so every branch of the normalisation is taken."""
    rng = np.random.default_rng(11)
    frames = rng.poisson(0.3, (N_FRAMES, H, W)).astype(np.uint16)
    frames[:, 3, :7] = 0  # dead pixels
    frames[:, 5, 9] = 0
    pixels = np.flatnonzero(rng.random(H * W) < 0.8)
    n_static, n_dynamic = 12, 4
    static = rng.integers(0, n_static, pixels.size)
    static[static == 7] = 6  # static bin 7 stays empty
    labels = BinLabels(
        static=static,
        dynamic=static // 3,
        n_static=n_static,
        n_dynamic=n_dynamic,
        static_to_dynamic=np.arange(n_static) // 3,
    )
    return frames, pixels, labels


def binned(corr: MultiTauCorrelator, labels: BinLabels, threads: int) -> G2Result:
    with numba_threads(threads):
        return corr.g2(labels, pixel_spread=True)


FIELDS = ("g2", "g2_err", "scattering_1d", "scattering_1d_segments", "mean_intensity", "frame_sum")


@pytest.mark.parametrize("mode", ["dense", "sparse"])
def test_binned_equals_per_pixel_normalisation(data: tuple, mode: str) -> None:
    frames, pixels, labels = data
    want = normalize_g2(fed(frames, pixels, mode, 64).result(), labels)
    got = binned(fed(frames, pixels, mode, 64), labels, 2)
    for name in FIELDS:
        # g2 and the intensities are sums of the same per-pixel values in another order; the error bar's
        # spread is taken around a shift in one pass instead of around the mean in a second one
        rtol = 1e-10 if name == "g2_err" else 1e-12
        np.testing.assert_allclose(getattr(got, name), getattr(want, name), rtol=rtol, atol=0, err_msg=name)
    assert np.array_equal(got.tau, want.tau)
    # the empty static bin and the dead pixels are handled as the per-pixel path handles them
    assert np.isnan(got.scattering_1d[7]) and np.isnan(want.scattering_1d[7])
    assert np.all(np.isfinite(got.g2)) and np.all(np.isfinite(got.g2_err))
    dead = np.isin(pixels, [3 * W + c for c in range(7)] + [5 * W + 9])
    assert dead.any() and np.all(got.mean_intensity[dead] == 0.0)


def test_binned_bits_independent_of_threads_blocks_and_path(data: tuple) -> None:
    frames, pixels, labels = data
    runs = [
        binned(fed(frames, pixels, "dense", 301, threads=1), labels, 1),
        binned(fed(frames, pixels, "dense", 50, threads=2), labels, 2),
        binned(fed(frames, pixels, "sparse", 17, threads=2), labels, 1),
        binned(fed(frames, pixels, "dense", 128, threads=1), labels, 2),
    ]
    for other in runs[1:]:
        for name in FIELDS:
            assert np.array_equal(getattr(runs[0], name), getattr(other, name), equal_nan=True), name


@pytest.mark.parametrize("wide", [False, True])
@pytest.mark.parametrize("spread", [False, True])
def test_exact_sums_equal_the_per_pixel_sums(data: tuple, spread: bool, wide: bool) -> None:
    """Integer state: the exact path (each pixel's state added to its sub-bin's row, IP and IF formed
    per sub-bin) gives the integers of the per-chunk path (IP and IF per pixel and delay), and the same
    pixel means and ratios, on any number of threads; with 64-bit level values too (``wide``)."""
    frames, pixels, labels = data
    corr = fed(frames, pixels, "dense", 64)
    acc, head, tail, seg = corr.finish()
    if wide:
        head, tail = head.astype(np.uint64), tail.astype(np.uint64)
    sch = corr.schedule

    def run(sets: int | None, threads: int) -> BinPartials:
        p = BinPartials(
            labels, pixels.size, sch.n_tau, corr.n_segments, np.uint64, corr._scale1, corr._scale2,
            sch.n_frames, corr.segment_lengths, sets,
        )  # fmt: skip
        with numba_threads(min(threads, 2)):
            bin_sums(
                acc, head, tail, seg, pixels.size, sch.level, sch.lag, corr._scale1, corr._scale2,
                corr._level_len, p, 0.0, spread, threads,
            )  # fmt: skip
        return p

    want = run(None, 2)
    assert want.static_sums.shape[0] > 1  # the per-chunk path
    for threads in (1, 2, 3):
        got = run(1, threads)
        for a, b in zip(got.folded(), want.folded(), strict=True):
            assert a.dtype == b.dtype == np.uint64 and np.array_equal(a, b)
        assert np.array_equal(got.pixel_mean, want.pixel_mean)
        assert np.array_equal(got.dynamic_sums, want.dynamic_sums)
        assert np.array_equal(got.valid, want.valid)
        assert np.any(got.valid) == spread


def test_binned_float_path(data: tuple) -> None:
    """Corrected (float) frames: the float64 state gives the same as the per-pixel route."""
    frames, pixels, labels = data
    scaled = frames * np.float64(0.37) + 0.01
    want = normalize_g2(fed(scaled, pixels, "dense", 100).result(), labels)
    got = binned(fed(scaled, pixels, "dense", 100), labels, 2)
    for name in FIELDS:
        rtol = 1e-10 if name == "g2_err" else 1e-12
        np.testing.assert_allclose(
            getattr(got, name), getattr(want, name), rtol=rtol, atol=1e-14, err_msg=name
        )


def test_labels_must_match_pixels_and_result_is_given_once(data: tuple) -> None:
    frames, pixels, labels = data
    short = BinLabels(labels.static[:-1], labels.dynamic[:-1], 12, 4, labels.static_to_dynamic)
    corr = fed(frames, pixels, "dense", 301)
    with pytest.raises(ValueError, match="bin labels for"):
        corr.g2(short)
    corr.g2(labels)  # the wrong labels did not end the correlator
    with pytest.raises(OptionError, match="already produced"):
        corr.g2(labels)


def test_chunks_depend_on_shapes_only() -> None:
    """Chunks are cut at strip boundaries, by the shapes alone; many bins mean fewer chunks."""
    bounds = chunk_pixels(100 * CHUNK_PIXELS + 5, n_tau=34, n_static=360, n_dynamic=36, n_seg=10)
    assert bounds.size == CHUNKS + 1 and bounds[-1] == 100 * CHUNK_PIXELS + 5
    assert np.all(bounds[1:-1] % CHUNK_PIXELS == 0)
    assert chunk_pixels(3, 34, 10, 2, 10).tolist() == [0, 3]
    assert chunk_pixels(100 * CHUNK_PIXELS, 34, 10**6, 10, 10).tolist() == [0, 100 * CHUNK_PIXELS]
