"""The event-driven (sparse) correlator: exact against the definitions, the same bits as the dense
path, and a cost that follows the photons: pixels that saw none hold no state."""

from __future__ import annotations

import itertools
import tracemalloc

import numpy as np
import pytest

from beambridge.xpcs.multitau import MultiTauCorrelator
from beambridge.xpcs.multitau.bins import BinLabels
from beambridge.xpcs.multitau.correlator import BLOCKED_EVENTS_PER_RANGE, SPARSE_DENSITY
from beambridge.xpcs.multitau.g2norm import normalize_g2
from tests.xpcs.feeding import numba_threads
from tests.xpcs.test_multitau_paths import reference_sums

FIELDS = ("g2", "g2_err", "g2_cov", "scattering_1d", "scattering_1d_segments", "mean_intensity", "frame_sum")
PIXEL_FIELDS = ("G2", "IP", "IF", "mean_intensity", "segment_mean", "frame_sum")


def as_events(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    flat = frames.reshape(frames.shape[0], -1)
    rows, pix = np.nonzero(flat)
    return np.searchsorted(rows, np.arange(flat.shape[0] + 1)), pix, flat[rows, pix]


def feed_events(corr: MultiTauCorrelator, frames: np.ndarray, block: int) -> MultiTauCorrelator:
    for a in range(0, frames.shape[0], block):
        corr.add_events(*as_events(frames[a : a + block]))
    return corr


def correlators(frames: np.ndarray, pixels: np.ndarray, dpl: int = 4) -> tuple[MultiTauCorrelator, ...]:
    """The same frames through the dense kernel, and as events and as frames through the event path."""
    n, n_det = frames.shape[0], frames[0].size
    dense = MultiTauCorrelator(n, pixels, n_det, dpl, mode="dense")
    for a in range(0, n, 64):
        dense.add_frames(frames[a : a + 64])
    events = feed_events(MultiTauCorrelator(n, pixels, n_det, dpl, mode="sparse"), frames, 29)
    sparse_frames = MultiTauCorrelator(n, pixels, n_det, dpl, mode="sparse")
    for a in range(0, n, 100):
        sparse_frames.add_frames(frames[a : a + 100])
    assert events.mode == sparse_frames.mode == "sparse"
    return dense, events, sparse_frames


def ring_labels(pixels: np.ndarray, width: int, n_static: int = 12, per_dynamic: int = 3) -> BinLabels:
    y, x = np.divmod(pixels, width)
    r = np.hypot(y - 20.0, x - 25.0)
    static = np.minimum((r / (r.max() + 1e-9) * n_static).astype(np.int64), n_static - 1)
    return BinLabels(
        static, static // per_dynamic, n_static, n_static // per_dynamic, np.arange(n_static) // per_dynamic
    )


def same(a: object, b: object, fields: tuple[str, ...]) -> None:
    for name in fields:
        assert np.array_equal(getattr(a, name), getattr(b, name), equal_nan=True), name


@pytest.mark.parametrize("photons", [0.6, 0.02, 0.003])
def test_event_path_exact_and_bit_equal_to_dense(photons: float) -> None:
    """Per-pixel sums against the definitions (numpy, means of 2**l frames), and g2 against the per-pixel
    normalisation; dense, events and frames-as-events agree to the bit, masked pixels, odd N."""
    rng = np.random.default_rng(int(photons * 1000))
    frames = rng.poisson(photons, (333, 40, 50)).astype(np.uint16)
    pixels = np.flatnonzero(rng.random(2000) < 0.85)
    labels = ring_labels(pixels, 50)
    g2, ip, if_ = reference_sums(frames, pixels)
    runs = correlators(frames, pixels)
    sums = [c.result() for c in runs]
    for other in sums[1:]:
        same(sums[0], other, PIXEL_FIELDS)
    np.testing.assert_allclose(sums[1].G2, g2, rtol=1e-13, atol=0)
    np.testing.assert_allclose(sums[1].IP, ip, rtol=1e-13, atol=0)
    np.testing.assert_allclose(sums[1].IF, if_, rtol=1e-13, atol=0)
    binned = [c.g2(labels, pixel_spread=True) for c in correlators(frames, pixels)]
    for other in binned[1:]:
        same(binned[0], other, FIELDS)
    # either product walk of the event path (pairs of events, or elements level by level), with and
    # without the pixel spread: the same bits; without it, no spread and nothing else changed
    for pair_events, spread in ((0, True), (10**9, True), (0, False), (10**9, False)):
        _dense, events, sparse_frames = correlators(frames, pixels)
        for corr in (events, sparse_frames):
            corr._pair_events = pair_events
            got = corr.g2(labels, pixel_spread=spread)
            same(binned[0], got, tuple(f for f in FIELDS if f != "g2_err"))
            assert (got.g2_err is None) != spread
            if spread:
                same(binned[0], got, ("g2_err",))
    dense_fast = correlators(frames, pixels)[0].g2(labels)
    same(binned[0], dense_fast, tuple(f for f in FIELDS if f != "g2_err"))
    assert dense_fast.g2_err is None
    want = normalize_g2(sums[0], labels)
    for name in ("g2", "g2_err", "scattering_1d", "scattering_1d_segments", "mean_intensity"):
        np.testing.assert_allclose(getattr(binned[1], name), getattr(want, name), rtol=1e-10, err_msg=name)


def test_hand_made_events_at_the_edges() -> None:
    """Photons only where the bookkeeping is delicate: in the frames a level drops (no pair), only in
    the first or last frames (IP or IF zero: not a valid pixel for the error bar at those lags), two
    events of one pixel in one frame (summed), zero values, pixels outside the analysis."""
    n, n_det = 203, 12  # 203 = 2·101 + 1: every level has a trailing element without a pair
    pixels = np.array([0, 1, 2, 3, 4, 5, 6, 7, 9, 10])
    frames = np.zeros((n, n_det), dtype=np.uint16)
    frames[202, 0] = 3  # only in the last frame: dropped from level 1 up
    frames[[0, 1], 1] = 1  # only at the start: IF = 0 at lags >= 2
    frames[[200, 201], 2] = 2  # only at the end: IP = 0 at lags >= 2
    frames[::7, 3] = 1
    frames[5::11, 3] += 2
    frames[100, 4] = 5  # alone in the middle: valid everywhere, no product
    frames[[10, 11, 12, 40], 5] = [1, 2, 1, 4]
    frames[:, 8] = 9  # not analysed
    frames[::3, 10] = 1
    g2, ip, if_ = reference_sums(frames, pixels)
    static = np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 4])
    labels = BinLabels(static, static // 2, 5, 3, np.arange(5) // 2)
    dense = MultiTauCorrelator(n, pixels, n_det, mode="dense")
    dense.add_frames(frames)
    events = MultiTauCorrelator(n, pixels, n_det, mode="sparse")
    ptr, pix, val = as_events(frames)
    # every frame's events again, split in two with zeros between: the same frame summed, zeros ignored
    half = (val // 2).astype(np.uint16)
    pix2 = np.stack([pix, pix, pix], axis=1).reshape(-1)
    val2 = np.stack([half, np.zeros_like(half), val - half], axis=1).reshape(-1)
    events.add_events(ptr * 3, pix2, val2)
    got = events.result()
    np.testing.assert_allclose(got.G2, g2, rtol=1e-13, atol=0)
    np.testing.assert_allclose(got.IP, ip, rtol=1e-13, atol=0)
    np.testing.assert_allclose(got.IF, if_, rtol=1e-13, atol=0)
    same(dense.result(), got, PIXEL_FIELDS)
    assert np.array_equal(got.frame_sum, frames[:, pixels].sum(axis=1))
    dense = MultiTauCorrelator(n, pixels, n_det, mode="dense")
    dense.add_frames(frames)
    events = MultiTauCorrelator(n, pixels, n_det, mode="sparse")
    events.add_events(ptr * 3, pix2, val2)
    same(dense.g2(labels, pixel_spread=True), events.g2(labels, pixel_spread=True), FIELDS)
    for pair_events in (0, 10**9):  # either product walk
        events = MultiTauCorrelator(n, pixels, n_det, mode="sparse")
        events._pair_events = pair_events
        events.add_events(ptr * 3, pix2, val2)
        dense = MultiTauCorrelator(n, pixels, n_det, mode="dense")
        dense.add_frames(frames)
        same(dense.g2(labels, pixel_spread=True), events.g2(labels, pixel_spread=True), FIELDS)


@pytest.mark.parametrize("dpl", [2, 3, 8])
def test_other_delays_per_level(dpl: int) -> None:
    frames = np.random.default_rng(dpl).poisson(0.05, (250, 30, 20)).astype(np.uint16)
    pixels = np.arange(600)
    g2, ip, _ = reference_sums(frames, pixels, dpl)
    dense, events, _ = correlators(frames, pixels, dpl)
    got = events.result()
    np.testing.assert_allclose(got.G2, g2, rtol=1e-13, atol=0)
    np.testing.assert_allclose(got.IP, ip, rtol=1e-13, atol=0)
    same(dense.result(), got, PIXEL_FIELDS)


def test_bits_independent_of_threads_and_blocks() -> None:
    frames = np.random.default_rng(3).poisson(0.01, (300, 40, 50)).astype(np.uint16)
    pixels = np.arange(2000)
    labels = ring_labels(pixels, 50)
    out = []
    for threads, block in ((1, 300), (2, 7), (2, 64)):
        with numba_threads(threads):
            corr = feed_events(MultiTauCorrelator(300, pixels, 2000, mode="sparse"), frames, block)
            out.append(corr.g2(labels, pixel_spread=True))
    for other in out[1:]:
        same(out[0], other, FIELDS)


def test_large_counts_and_float_values_go_dense() -> None:
    """Counts too large for exact integer sums, or float values (corrected data), met after some events
    were kept: the kept events are handed to the dense kernel, and the result is the same bits as
    feeding the dense kernel all along."""
    rng = np.random.default_rng(8)
    frames = rng.poisson(0.05, (200, 20, 20)).astype(np.uint32)
    pixels = np.arange(400)
    big = frames[100:] * np.uint32(1 << 26)
    for later in (big, frames[100:] * 0.5):
        dense = MultiTauCorrelator(200, pixels, 400, mode="dense")
        dense.add_frames(frames[:100])
        dense.add_frames(later)
        events = MultiTauCorrelator(200, pixels, 400, mode="sparse")
        events.add_events(*as_events(frames[:100]))
        assert (events.mode, events.arithmetic) == ("sparse", "int32")
        events.add_events(*as_events(later))
        assert (events.mode, events.arithmetic) == ("dense", "float") == (dense.mode, dense.arithmetic)
        same(dense.result(), events.result(), PIXEL_FIELDS)


def test_auto_takes_events_at_low_density_only() -> None:
    frames = np.random.default_rng(4).poisson(SPARSE_DENSITY / 2, (64, 32, 32)).astype(np.uint16)
    low = MultiTauCorrelator(64, np.arange(1024), 1024)
    low.add_events(*as_events(frames))
    assert low.mode == "sparse"
    busy = np.random.default_rng(4).poisson(4 * SPARSE_DENSITY, (64, 32, 32)).astype(np.uint16)
    high = MultiTauCorrelator(64, np.arange(1024), 1024)
    high.add_events(*as_events(busy))
    assert high.mode == "dense"
    framed = MultiTauCorrelator(64, np.arange(1024), 1024)
    framed.add_frames(frames)
    assert framed.mode == "dense"


def test_silent_pixels_hold_no_state() -> None:
    """A 4 Mpx detector, 400 frames of 40 photons: feeding allocates per event, not per pixel (the dense
    state would be ~3.5 GB), and the result is the same as for the 100 pixels that saw photons."""
    n_det, n = 2048 * 2048, 400
    rng = np.random.default_rng(6)
    lit = np.sort(rng.choice(n_det, 100, replace=False))
    small = rng.poisson(0.4, (n, 100)).astype(np.uint16)
    big = MultiTauCorrelator(n, np.arange(n_det), n_det, mode="sparse")
    ptr, pix, val = as_events(small)
    big.add_events(ptr[:2], lit[pix[: ptr[1]]], val[: ptr[1]])  # allocates the pixel→state table once
    tracemalloc.start()
    for t in range(1, n):
        big.add_events(ptr[t : t + 2] - ptr[t], lit[pix[ptr[t] : ptr[t + 1]]], val[ptr[t] : ptr[t + 1]])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 4 * 1024 * 1024  # the kept events (about 16,000 of them) and their buffers' growth
    alone = MultiTauCorrelator(n, np.arange(100), 100, mode="sparse")
    alone.add_events(ptr, pix, val)
    got, want = big.result(), alone.result()
    assert np.array_equal(got.G2[:, lit], want.G2) and np.array_equal(got.IF[:, lit], want.IF)
    assert not got.G2[:, np.setdiff1d(np.arange(0, n_det, 4096), lit)].any()


@pytest.mark.parametrize("spread", [False, True])
def test_blocks_ordered_as_kept_or_regrouped_at_the_end_give_the_same_bits(spread: bool) -> None:
    """``add_events`` keeps a large call's events ordered by block of pixels (``g2`` then sorts each
    block where it walks it) and a small call's as they come (regrouped at the end): big calls, small
    calls, the two mixed, and dense frames among events all give the dense path's bits, over several
    blocks of pixels with a mask (state pixels are not detector pixels)."""
    rng = np.random.default_rng(12)
    frames = rng.poisson(0.005, (301, 80, 75)).astype(np.uint16)  # 6,000 pixels: 6 blocks of 1,024
    frames[:, 40, 30:50] = rng.poisson(0.5, (301, 20))  # busy pixels: walked level by level
    pixels = np.flatnonzero(rng.random(6000) < 0.9)
    labels = ring_labels(pixels, 75)
    n, n_det = frames.shape[0], 6000
    dense = MultiTauCorrelator(n, pixels, n_det, mode="dense")
    dense.add_frames(frames)
    want = dense.g2(labels, pixel_spread=spread)

    def run(blocks: list[int], as_frames: tuple[int, ...] = ()) -> MultiTauCorrelator:
        corr = MultiTauCorrelator(n, pixels, n_det, mode="sparse")
        a = 0
        for k, b in enumerate(blocks):
            if k in as_frames:
                corr.add_frames(frames[a : a + b])
            else:
                corr.add_events(*as_events(frames[a : a + b]))
            a += b
        assert a == n
        return corr

    big = run([100, 100, 101])
    assert len(big._block_ranges) == 3  # every call ordered by block as it is kept
    small = run([1] * n)
    # ~30 events a call, fewer than 8 per block: staged, then ordered by block a few calls at a time
    large = BLOCKED_EVENTS_PER_RANGE * small._n_blocks
    # (a call of `large` events or more is one range on its own, less its events on unanalysed pixels)
    sizes = [int(r[-1] - r[0]) for r in small._block_ranges]
    assert small._st_n > 0 and 1 < len(sizes) < n // 1.5
    assert min(sizes) >= large // 2 and np.median(sizes) >= large
    mixed = run([150, 1, 1, 149])
    frames_first = run([50, 251], as_frames=(0,))
    fields = FIELDS if spread else tuple(name for name in FIELDS if name != "g2_err")
    for corr in (big, small, mixed, frames_first):
        same(want, corr.g2(labels, pixel_spread=spread), fields)
    same(dense_result(frames, pixels, n_det), run([100, 100, 101]).result(), PIXEL_FIELDS)


def dense_result(frames: np.ndarray, pixels: np.ndarray, n_det: int) -> object:
    dense = MultiTauCorrelator(frames.shape[0], pixels, n_det, mode="dense")
    dense.add_frames(frames)
    return dense.result()


def test_float_values_after_blocked_events_replay_them_in_time_order() -> None:
    """Float values arriving after events kept by block switch to the dense kernel: the kept events are
    replayed in time order, and the result is that of feeding everything dense."""
    rng = np.random.default_rng(13)
    frames = rng.poisson(0.05, (120, 48, 64)).astype(np.uint16)
    frames[100] = rng.poisson(0.003, (48, 64))  # a few photons: staged
    pixels = np.arange(48 * 64)
    corr = MultiTauCorrelator(120, pixels, 48 * 64, mode="sparse")
    corr.add_events(*as_events(frames[:100]))
    assert corr._block_ranges  # kept by block
    corr.add_events(*as_events(frames[100:101]))  # and one frame staged
    assert corr._st_n > 0
    ptr, pix, val = as_events(frames[101:])
    corr.add_events(ptr, pix, val.astype(np.float64))
    assert corr.mode == "dense"
    dense = MultiTauCorrelator(120, pixels, 48 * 64, mode="dense")
    dense.add_frames(frames.astype(np.float64))
    same(dense.result(), corr.result(), PIXEL_FIELDS)


def test_kept_records_at_the_edges() -> None:
    """The kept records at their edges, against the dense path's bits: a masked detector whose
    unanalysed pixels see photons (dropped, not in the frame sums) on both sides of a block boundary
    (pixels 1023 | 1024), a pixel with hundreds of events (a pixel listed twice in a frame too), counts
    up to 65,535, calls of every size around the staging threshold (one frame at a time, exactly the
    threshold, one event short of it) and dense frames mixed in."""
    rng = np.random.default_rng(21)
    n, n_det = 257, 3000
    frames = rng.poisson(0.002, (n, n_det)).astype(np.uint16)
    frames[:, 1023] = rng.poisson(1.0, n)  # hundreds of events: walked level by level
    frames[::2, 1024] = 1
    frames[5, 2047] = 65535
    frames[6, 2047] = 65534
    frames[::3, 1500] = 7  # not analysed
    pixels = np.setdiff1d(np.arange(n_det), [1500, 1025, 2000, 2999])
    large = BLOCKED_EVENTS_PER_RANGE * ((n_det >> 10) + 1)
    for a, want_events in ((40, large), (50, large - 1)):  # calls of frames a, a+1 with that many events
        frames[a : a + 2, 100:] = 0
        frames[a, 100 : 100 + want_events] = 1
    labels = ring_labels(pixels, 60)
    dense = MultiTauCorrelator(n, pixels, n_det, mode="dense")
    dense.add_frames(frames)
    want, want_pixels = dense.g2(labels, pixel_spread=True), dense_result(frames, pixels, n_det)
    ptr, pix, val = as_events(frames)
    assert ptr[42] - ptr[40] == large and ptr[52] - ptr[50] == large - 1 and ptr[1] - ptr[0] < large

    def feed(cuts: list[int], as_frames: tuple[int, ...] = (), twice: bool = False) -> MultiTauCorrelator:
        corr = MultiTauCorrelator(n, pixels, n_det, mode="sparse")
        for k, (a, b) in enumerate(itertools.pairwise(cuts)):
            if k in as_frames:
                corr.add_frames(frames[a:b])
                continue
            lo, hi = ptr[a], ptr[b]
            p, v = pix[lo:hi], val[lo:hi]
            if twice:  # every event split in two events of the same pixel and frame
                p, v = np.repeat(p, 2), np.stack([v // 2, v - v // 2], axis=1).reshape(-1)
                corr.add_events(2 * (ptr[a : b + 1] - lo), p, v)
            else:
                corr.add_events(ptr[a : b + 1] - lo, p, v)
        assert corr.n_fed == n
        return corr

    one_by_one = list(range(n + 1))
    runs = {
        "one frame at a time": feed(one_by_one),
        "the threshold and one short": feed([*range(41), 42, *range(43, 51), 52, *range(53, n + 1)]),
        "frames mixed in": feed([0, 3, 4, 100, 101, 102, 200, n], as_frames=(1, 3, 5)),
        "pairs in one frame": feed([0, 1, 2, 130, n], twice=True),
    }
    for name, corr in runs.items():
        got = corr.g2(labels, pixel_spread=True)
        for field in FIELDS:
            assert np.array_equal(getattr(want, field), getattr(got, field), equal_nan=True), (name, field)
    assert np.array_equal(runs["one frame at a time"].frame_sum, frames[:, pixels].sum(axis=1))
    same(want_pixels, feed([0, 3, 4, 100, 101, 102, 200, n], as_frames=(1, 3, 5)).result(), PIXEL_FIELDS)
    same(want_pixels, feed(one_by_one).result(), PIXEL_FIELDS)


def test_large_counts_in_records() -> None:
    """Counts as large as exact integer sums allow (here up to 4·10^8, 29 bits) go into a record's
    count field whole and give the dense path's bits."""
    rng = np.random.default_rng(22)
    n, n_det = 24, 2100
    frames = (rng.poisson(0.05, (n, n_det)) > 0) * rng.integers(1, 4 * 10**8, (n, n_det))
    frames[3, 7] = 4 * 10**8
    pixels = np.arange(n_det)
    dense = MultiTauCorrelator(n, pixels, n_det, mode="dense")
    dense.add_frames(frames)
    events = feed_events(MultiTauCorrelator(n, pixels, n_det, mode="sparse"), frames, 5)
    assert (events.mode, dense.mode, events.arithmetic) == ("sparse", "dense", dense.arithmetic)
    same(dense.result(), events.result(), PIXEL_FIELDS)
    labels = ring_labels(pixels, 50)
    dense = MultiTauCorrelator(n, pixels, n_det, mode="dense")
    dense.add_frames(frames)
    events = feed_events(MultiTauCorrelator(n, pixels, n_det, mode="sparse"), frames, 5)
    same(dense.g2(labels), events.g2(labels), tuple(f for f in FIELDS if f != "g2_err"))


def test_claimed_work_items_are_each_taken_once() -> None:
    """Workers taking work items with ``claim`` (an atomic counter) get every item exactly once, on
    any number of threads."""
    from numba import njit, prange

    from beambridge.xpcs.multitau.sparse import claim

    @njit(parallel=True)
    def take(n_items: int, n_workers: int) -> np.ndarray:
        taken = np.zeros(n_items, dtype=np.int64)
        counter = np.zeros(1, dtype=np.int64)
        for _ in prange(n_workers):
            item = claim(counter)
            while item < n_items:
                taken[item] += 1
                for _spin in range(item % 7 * 100):  # items of uneven size
                    taken[item] += 0
                item = claim(counter)
        return taken

    for threads in (1, 2):
        with numba_threads(threads):
            assert np.array_equal(take(10_000, 4), np.ones(10_000, dtype=np.int64))
