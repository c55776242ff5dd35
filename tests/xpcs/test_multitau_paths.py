"""Integer, widened and float correlator paths: exact against a plain reference, deterministic across
thread counts and block sizes, with memory bounded by the per-pixel state."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from beambridge.xpcs.multitau import MultiTauCorrelator, PixelSums
from beambridge.xpcs.multitau.correlator import _expand_events
from beambridge.xpcs.multitau.delays import multitau_schedule
from tests.xpcs.feeding import fed, numba_threads


def reference_sums(
    frames: np.ndarray, pixels: np.ndarray, dpl: int = 4
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """G2, IP, IF per pixel from the definitions (coarse series as means of 2**l frames)."""
    n = frames.shape[0]
    x = frames.reshape(n, -1)[:, pixels].astype(np.float64)
    s = multitau_schedule(n, dpl)
    g2, ip, if_ = [], [], []
    for lev, c in zip(s.level.tolist(), s.lag.tolist(), strict=True):
        m = 2**lev
        big_m = n // m
        co = x[: big_m * m].reshape(big_m, m, -1).mean(axis=1)
        g2.append((co[: big_m - c] * co[c:]).mean(axis=0))
        ip.append(co[: big_m - c].mean(axis=0))
        if_.append(co[c:].mean(axis=0))
    return np.asarray(g2), np.asarray(ip), np.asarray(if_)


def correlate(
    frames: np.ndarray,
    pixels: np.ndarray,
    threads: int,
    block: int,
    mode: str = "dense",
    prepare: bool = False,
) -> tuple:
    corr = fed(frames, pixels, mode, block, threads, prepare)
    with numba_threads(threads):
        return corr.result(), corr.arithmetic


def same_bits(a: PixelSums, b: PixelSums) -> None:
    for name in ("G2", "IP", "IF", "mean_intensity", "segment_mean"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name


@pytest.fixture(scope="module")
def counts() -> np.ndarray:
    """Poisson counts on 48x50 pixels: full contiguous strips plus a partial tile."""
    return np.random.default_rng(5).poisson(0.7, (300, 48, 50)).astype(np.uint16)


@pytest.mark.parametrize("subset", ["all", "masked"])
def test_integer_path_exact_and_thread_independent(counts: np.ndarray, subset: str) -> None:
    n_pix = counts[0].size
    rng = np.random.default_rng(1)
    pixels = np.arange(n_pix) if subset == "all" else np.flatnonzero(rng.random(n_pix) < 0.8)
    g2, ip, if_ = reference_sums(counts, pixels)
    one, arith = correlate(counts, pixels, threads=1, block=300)
    two, _ = correlate(counts, pixels, threads=2, block=37)
    assert arith == "int16"  # photon counts: uint16 level values, uint32 sums
    same_bits(one, two)
    np.testing.assert_allclose(one.G2, g2, rtol=1e-13, atol=0)
    np.testing.assert_allclose(one.IP, ip, rtol=1e-13, atol=0)
    np.testing.assert_allclose(one.IF, if_, rtol=1e-13, atol=0)
    assert np.array_equal(one.frame_sum, counts.reshape(300, -1)[:, pixels].sum(axis=1))


@pytest.mark.parametrize("dpl", [2, 3, 8])
def test_other_delays_per_level_take_the_general_loop(counts: np.ndarray, dpl: int) -> None:
    """Lag sets other than APS's dpl = 4 (not written out in the kernel) are exact too, in odd blocks."""
    pixels = np.arange(counts[0].size)
    g2, ip, if_ = reference_sums(counts, pixels, dpl)
    corr = MultiTauCorrelator(counts.shape[0], pixels, counts[0].size, delays_per_level=dpl, mode="dense")
    for a in range(0, counts.shape[0], 37):
        corr.add_frames(counts[a : a + 37])
    sums = corr.result()
    np.testing.assert_allclose(sums.G2, g2, rtol=1e-13, atol=0)
    np.testing.assert_allclose(sums.IP, ip, rtol=1e-13, atol=0)
    np.testing.assert_allclose(sums.IF, if_, rtol=1e-13, atol=0)


def test_large_counts_widen(counts: np.ndarray) -> None:
    """uint32 counts whose products could overflow uint64 sums fall back to float64, also mid-stream."""
    big = counts.astype(np.uint32) * np.uint32(1 << 26)
    pixels = np.arange(big[0].size)
    g2, ip, if_ = reference_sums(big, pixels)
    one, arith = correlate(big, pixels, threads=1, block=300)
    two, _ = correlate(big, pixels, threads=2, block=64)
    assert arith == "float"
    same_bits(one, two)
    np.testing.assert_allclose(one.G2, g2, rtol=1e-12)
    np.testing.assert_allclose(one.IP, ip, rtol=1e-12)
    np.testing.assert_allclose(one.IF, if_, rtol=1e-12)
    # a later block with larger values widens a running correlator
    corr = MultiTauCorrelator(300, pixels, big[0].size)
    corr.add_frames(counts[:100])
    assert corr.arithmetic == "int16"
    corr.add_frames(big[100:])
    assert corr.arithmetic == "float"
    mixed = np.concatenate([counts[:100].astype(np.uint32), big[100:]])
    np.testing.assert_allclose(corr.result().G2, reference_sums(mixed, pixels)[0], rtol=1e-12)


def test_float_path_matches_reference_and_is_deterministic(counts: np.ndarray) -> None:
    """Corrected (float) data: float64 sums, each pixel in time order, any threads/blocks/path."""
    flat = np.random.default_rng(2).uniform(0.5, 1.5, counts.shape[1:])
    frames = counts * flat
    pixels = np.flatnonzero(np.random.default_rng(3).random(counts[0].size) < 0.9)
    g2, ip, if_ = reference_sums(frames, pixels)
    one, arith = correlate(frames, pixels, threads=1, block=300)
    two, _ = correlate(frames, pixels, threads=2, block=29)
    sparse, _ = correlate(frames, pixels, threads=2, block=50, mode="sparse")
    assert arith == "float"
    same_bits(one, two)
    same_bits(one, sparse)
    np.testing.assert_allclose(one.G2, g2, rtol=1e-12)
    np.testing.assert_allclose(one.IP, ip, rtol=1e-12)
    np.testing.assert_allclose(one.IF, if_, rtol=1e-12)


def test_prepared_state_gives_the_same_bits(counts: np.ndarray) -> None:
    """State allocated ahead of the first block (``prepare``) changes nothing in the result, for
    counts, for counts that widen mid-stream, and for float frames."""
    pixels = np.arange(counts[0].size)
    big = np.concatenate(
        [counts[:150].astype(np.uint32), counts[150:].astype(np.uint32) * np.uint32(1 << 26)]
    )
    floats = counts * np.random.default_rng(2).uniform(0.5, 1.5, counts.shape[1:])
    for frames, arithmetic in ((counts, "int16"), (big, "float"), (floats, "float")):
        lazy, lazy_arith = correlate(frames, pixels, threads=2, block=64)
        early, early_arith = correlate(frames, pixels, threads=2, block=64, prepare=True)
        assert lazy_arith == early_arith == arithmetic
        same_bits(lazy, early)
        assert np.array_equal(lazy.frame_sum, early.frame_sum)
    sparse = MultiTauCorrelator(300, pixels, counts[0].size, mode="sparse")
    sparse.prepare(np.uint16)  # nothing to prepare for the sparse state
    assert sparse.mode == "sparse"
    # auto mode (the default) prepares the dense state too: frames take it anyway. It was a no-op
    # there, so benchmarks that called it timed the state's first touch with the correlation.
    auto = MultiTauCorrelator(300, pixels, counts[0].size)
    auto.prepare(np.uint16)
    assert auto.mode == "dense" and auto._state_allocated
    for a in range(0, 300, 64):
        auto.add_frames(counts[a : a + 64])
    same_bits(auto.result(), correlate(counts, pixels, threads=2, block=64)[0])


@pytest.mark.parametrize(("mode", "kernel"), [("auto", "dense"), ("sparse", "sparse")])
def test_events_match_dense_frames(counts: np.ndarray, mode: str, kernel: str) -> None:
    """Events (as a Rigaku file gives them, values as uint64) correlate to the same bits as the
    frames; in auto mode they are expanded for the dense kernel, with mode="sparse" they keep the
    sparse per-pixel state."""
    pixels = np.arange(counts[0].size)
    dense, _ = correlate(counts, pixels, threads=2, block=100)
    corr = MultiTauCorrelator(300, pixels, counts[0].size, mode=mode)  # type: ignore[arg-type]
    flat = counts.reshape(300, -1)
    for a in range(0, 300, 70):
        blk = flat[a : a + 70]
        rows, pix = np.nonzero(blk)
        ptr = np.searchsorted(rows, np.arange(blk.shape[0] + 1))
        corr.add_events(ptr, pix, blk[rows, pix].astype(np.uint64))
    assert corr.mode == kernel
    same_bits(dense, corr.result())


def test_expanded_events_are_compact_and_sum_duplicates() -> None:
    ptr = np.array([0, 3, 3, 5])
    px = np.array([4, 4, 1, 0, 2])
    vals = np.array([1, 2, 7, 3, 1], dtype=np.uint64)
    dense = _expand_events(ptr, px, vals, 6)
    assert dense.dtype == np.uint16  # counts need not travel as 8-byte values through the kernel
    assert dense.tolist() == [[0, 7, 0, 0, 3, 0], [0] * 6, [3, 0, 1, 0, 0, 0]]
    assert _expand_events(ptr, px, vals * 40_000, 6).dtype == np.uint32
    assert _expand_events(ptr, px, vals * 0.5, 6).dtype == np.float64


@pytest.mark.parametrize("n_frames", [512, 4096])
def test_memory_bounded_by_state_not_frames(n_frames: int) -> None:
    """Peak allocation while correlating is the per-pixel state plus one block, whatever N is."""
    n_pix, block = 4096, 64
    rng = np.random.default_rng(0)
    frames = rng.poisson(0.5, (block, n_pix)).astype(np.uint16)
    corr = MultiTauCorrelator(n_frames, np.arange(n_pix), n_pix)
    corr.add_frames(frames)  # compile outside the measurement
    tracemalloc.start()
    for _ in range(n_frames // block - 1):
        corr.add_frames(frames)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    state = sum(getattr(corr, name).nbytes for name in ("_hist_v", "_head", "_acc", "_seg"))
    assert corr.arithmetic == "int16"
    assert state < 600 * n_pix  # about 0.45 kB per pixel at these N (twice that for larger counts)
    # per-call scratch only (~1.1 MB per thread: two level buffers and a staged strip), whatever N is
    assert peak < 4 * 1024 * 1024


def test_frames_per_block_bounds_memory_and_amortises_state() -> None:
    from beambridge.xpcs.pipeline import (
        BLOCK_FRAMES,
        IN_PLACE_BLOCK_BYTES,
        IN_PLACE_BLOCK_FRAMES,
        LARGE_BLOCK_BYTES,
        frames_per_block,
    )

    assert frames_per_block(256 * 256, 1000) == 512  # small detector: 64 MB of frames
    assert frames_per_block(256 * 256, 100) == 100  # never more than the stack
    assert frames_per_block(1024 * 1024, 1000) == BLOCK_FRAMES  # 1 Mpx: 128 frames (256 MB)
    assert frames_per_block(4096 * 4096, 1000) * 4096 * 4096 * 2 <= LARGE_BLOCK_BYTES  # 16 Mpx: 8 frames
    assert frames_per_block(10**9, 10) == 1
    # read into one reused buffer: 512 frames, at most 1 GiB of them
    assert frames_per_block(1024 * 1024, 1000, in_place=True) == IN_PLACE_BLOCK_FRAMES == 512
    assert frames_per_block(1024 * 1024, 200, in_place=True) == 200
    assert frames_per_block(256 * 256, 1000, in_place=True) == 512
    assert frames_per_block(4096 * 4096, 1000, in_place=True) * 4096 * 4096 * 2 == IN_PLACE_BLOCK_BYTES
    from beambridge.xpcs.multitau.correlator import held_itemsize

    # float frames become float64 in the correlator: 1 GiB of those is 128 frames at 1 Mpx
    assert frames_per_block(1024 * 1024, 1000, in_place=True, itemsize=held_itemsize(np.float32)) == 128
    assert frames_per_block(1024 * 1024, 1000, in_place=True, itemsize=held_itemsize(np.uint32)) == 256
    assert held_itemsize(np.uint8) == held_itemsize(">u2") == 2
    assert held_itemsize(np.int16) == 8  # a negative count goes to the float path


def test_four_elements_per_pass_and_remainders_exact(counts: np.ndarray) -> None:
    """The kernel takes four elements per pass, then two, then one: every remainder of a block (1 … 7
    frames) and 16-bit values too large for uint32 products (which then go to the uint64 sums
    directly, while frame and segment sums stay exact) give the definitions' sums, the same bits as
    one block."""
    pixels = np.arange(counts[0].size)
    big = np.minimum(counts, 7).astype(np.uint16) * np.uint16(9000)  # up to 63,000
    for frames in (counts, big):
        g2, ip, if_ = reference_sums(frames, pixels)
        whole, arith = correlate(frames, pixels, threads=1, block=300)
        assert arith == ("int16" if frames is counts else "int32")
        for block in (1, 2, 3, 5, 7):
            same_bits(correlate(frames, pixels, threads=2, block=block)[0], whole)
        np.testing.assert_allclose(whole.G2, g2, rtol=1e-13, atol=0)
        np.testing.assert_allclose(whole.IP, ip, rtol=1e-13, atol=0)
        np.testing.assert_allclose(whole.IF, if_, rtol=1e-13, atol=0)
        assert np.array_equal(whole.frame_sum, frames.reshape(300, -1).sum(axis=1, dtype=np.uint64))


def _int16_case(n_frames: int, seed: int) -> tuple[np.ndarray, int]:
    """Photon counts on 40 x 70 pixels (full strips, a partial strip and tile) and the largest count
    an "int16" state of ``n_frames`` frames holds."""
    frames = np.random.default_rng(seed).poisson(0.6, (n_frames, 40, 70)).astype(np.uint16)
    limit = MultiTauCorrelator(n_frames, np.arange(2800), 2800, mode="dense")._int16_limit()
    return frames, limit


@pytest.mark.parametrize("n_frames", [300, 1000])
def test_int16_state_holds_counts_up_to_its_limit(n_frames: int) -> None:
    """The narrow state (uint16 values, uint32 sums) is chosen for counts whose every level element and
    sum it holds; counts at exactly that limit, in the pixels and frames that make the largest sums,
    give the definitions' sums, and one more would not fit: the bound is the tight one."""
    frames, limit = _int16_case(n_frames, 7)
    corr = MultiTauCorrelator(n_frames, np.arange(2800), 2800, mode="dense")
    top = 2.0 ** (corr._n_levels - 1)
    assert limit * top < 2**16 and n_frames * limit**2 * top < 2**32  # it fits …
    assert (limit + 1) * top >= 2**16 or n_frames * (limit + 1) ** 2 * top >= 2**32  # … and no more
    frames[:, :3, :] = limit  # constant at the limit: the largest product sums there can be
    pixels = np.arange(2800)
    one, arith = correlate(frames, pixels, threads=2, block=n_frames)
    assert arith == "int16"
    assert one.G2[0, 0] == float(limit) ** 2  # level 0, lag 1 of a pixel at the limit
    wide, wide_arith = correlate(frames.astype(np.uint32), pixels, threads=1, block=n_frames // 3)
    assert wide_arith == "int16"  # uint32 frames: their maximum is read, and it fits
    same_bits(one, wide)
    g2, ip, if_ = reference_sums(frames, pixels)
    np.testing.assert_allclose(one.G2, g2, rtol=1e-13, atol=0)
    np.testing.assert_allclose(one.IP, ip, rtol=1e-13, atol=0)
    np.testing.assert_allclose(one.IF, if_, rtol=1e-13, atol=0)


@pytest.mark.parametrize(
    ("subset", "dpl", "threads"),
    [("all", 4, 2), ("all", 4, 1), ("masked", 4, 2), ("all", 2, 2), ("masked", 2, 1)],
)
def test_int16_state_widens_where_a_count_does_not_fit(subset: str, dpl: int, threads: int) -> None:
    """uint16 frames are not read for their maximum before the kernel: it checks each strip's frames
    before they enter the narrow state, stops where one is too large, and the correlator widens the
    state and goes on from there. Whatever the path (register and lane loops, contiguous and gathered
    pixels, one or two threads) and wherever in the block the count is, the result is that of the
    uint32 frames, whose maximum is read up front (wide state from the start), and the definitions'."""
    frames, limit = _int16_case(600, 11)
    rng = np.random.default_rng(3)
    pixels = np.arange(2800) if subset == "all" else np.flatnonzero(rng.random(2800) < 0.85)
    late = pixels[pixels.size * 4 // 5]  # an analysed pixel of a late strip
    frames.reshape(600, -1)[400, late] = limit + 1  # in the second sub-block of the second block
    frames.reshape(600, -1)[401, np.setdiff1d(np.arange(2800), pixels)] = 60_000  # not analysed: no matter
    with numba_threads(threads):
        corr = MultiTauCorrelator(600, pixels, 2800, delays_per_level=dpl, mode="dense")
        corr.add_frames(frames[:300])
        assert corr.arithmetic == "int16"
        corr.add_frames(frames[300:])
        assert corr.arithmetic == "int32"
        wide = MultiTauCorrelator(600, pixels, 2800, delays_per_level=dpl, mode="dense")
        wide.add_frames(frames.astype(np.uint32))
        assert wide.arithmetic == "int32"
    got = corr.result()
    same_bits(got, wide.result())
    assert np.array_equal(got.frame_sum, frames.reshape(600, -1)[:, pixels].sum(axis=1))
    g2, ip, if_ = reference_sums(frames, pixels, dpl)
    np.testing.assert_allclose(got.G2, g2, rtol=1e-13, atol=0)
    np.testing.assert_allclose(got.IP, ip, rtol=1e-13, atol=0)
    np.testing.assert_allclose(got.IF, if_, rtol=1e-13, atol=0)


def test_an_unchecked_int16_state_would_be_wrong(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check has teeth: counts of 2**15 in a narrow state that took them unchecked wrap (the test
    above would then fail), and checked they give the definitions' sums."""
    frames, _ = _int16_case(300, 5)
    frames[1:, 0, :] = 1 << 15  # not in the first frame, which the correlator looks at
    pixels = np.arange(2800)
    g2 = reference_sums(frames, pixels)[0]
    checked, arith = correlate(frames, pixels, threads=2, block=300)
    assert arith == "int32"
    np.testing.assert_allclose(checked.G2, g2, rtol=1e-13, atol=0)
    monkeypatch.setattr(MultiTauCorrelator, "_int16_limit", lambda self: 1 << 16)
    unchecked, arith = correlate(frames, pixels, threads=2, block=300)
    assert arith == "int16"
    assert not np.allclose(unchecked.G2, g2, rtol=1e-6)


def test_a_prepared_int16_state_widens_on_its_first_block() -> None:
    """``prepare`` starts integer counts in the narrow state; a first block with larger counts widens it
    before it is fed (the same bits as without ``prepare``), and a series too long for the narrow state
    starts wide."""
    frames, limit = _int16_case(300, 9)
    frames[0, 0, 0] = limit + 1
    pixels = np.arange(2800)
    prepared = MultiTauCorrelator(300, pixels, 2800)
    prepared.prepare(np.uint16)
    assert prepared.arithmetic == "int16" and prepared._hist_v.dtype == np.uint16
    prepared.add_frames(frames)
    assert prepared.arithmetic == "int32" and prepared._acc.dtype == np.uint64
    same_bits(prepared.result(), correlate(frames, pixels, threads=2, block=300)[0])
    long = MultiTauCorrelator(200_000, pixels, 2800)
    long.prepare(np.uint16)
    assert long.arithmetic == "int32"  # N·2**(L-1) >= 2**32: not even counts of 1 fit


def test_counts_too_large_in_a_blocks_first_frame_start_the_state_wide(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Integrating detectors write uint16 counts in the thousands. The analysed pixels of the first frame
    are looked at (0.1 ms at 1 Mpx): a count too large for the narrow state sends the run to the wide one
    at once, instead of allocating the narrow state, stopping every strip at it and converting the state.
    One kernel call, the bits of uint32 frames. A large count in a pixel that is not analysed (a gap, a
    hot pixel under the mask) changes nothing."""
    from beambridge.xpcs.multitau import correlator as module

    frames, limit = _int16_case(300, 13)
    frames[0, 5, 5] = limit + 1
    calls: list[int] = []
    kernel = module.dense_update
    monkeypatch.setattr(module, "dense_update", lambda *args: (calls.append(1), kernel(*args))[1])
    pixels = np.arange(2800)
    corr = MultiTauCorrelator(300, pixels, 2800)
    corr.add_frames(frames)
    assert (corr.arithmetic, len(calls)) == ("int32", 1)
    same_bits(corr.result(), correlate(frames.astype(np.uint32), pixels, threads=2, block=300)[0])
    masked = np.flatnonzero(np.arange(2800) != 5 * 70 + 5)
    corr = MultiTauCorrelator(300, masked, 2800)
    corr.add_frames(frames)
    assert corr.arithmetic == "int16"
