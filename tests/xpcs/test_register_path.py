"""The dense kernel's register path (16 lanes of float32 held in registers across frames) gives the same
bits as the lane loops and as the definitions, at every boundary of its exactness argument."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from numba import njit
from numba.core.errors import TypingError

from beambridge.xpcs.multitau import MultiTauCorrelator
from beambridge.xpcs.multitau.dense import (
    SUB_BLOCK,
    TILE,
    VEC_LIMIT,
    _every,
    register_schedule,
)
from beambridge.xpcs.multitau.simd import prefetch, vadd, vadd_into, vfma, vload, vstore, vzero
from tests.xpcs.feeding import numba_threads
from tests.xpcs.test_multitau_paths import reference_sums


def fed(
    frames: np.ndarray, pixels: np.ndarray, block: int, register: bool, threads: int = 2
) -> MultiTauCorrelator:
    with numba_threads(threads):
        corr = MultiTauCorrelator(frames.shape[0], pixels, frames[0].size, mode="dense")
        assert corr._register_path  # APS's dpl = 4 schedule
        corr._register_path = register
        for a in range(0, frames.shape[0], block):
            corr.add_frames(frames[a : a + block])
    return corr


def state_bytes(corr: MultiTauCorrelator) -> bytes:
    parts = (corr._hist_v, corr._head, corr._acc, corr._seg, corr._tmax, corr._frame_sum)
    return b"".join(np.ascontiguousarray(p).tobytes() for p in parts)


def pieces(n_frames: int, n_pixels: int, block: int) -> int:
    """(tile, sub-block) pieces of a run: what the register path takes when every tile qualifies."""
    per_block = [-(-min(block, n_frames - a) // SUB_BLOCK) for a in range(0, n_frames, block)]
    return -(-n_pixels // TILE) * sum(per_block)


def assert_same(
    frames: np.ndarray, pixels: np.ndarray, block: int, register_pieces: int | None = None
) -> None:
    """Register path on and off: the same state and result, to the bit, and the definitions' sums. The
    register path did run: on every piece (``register_pieces``: on that many), and off on none."""
    on = fed(frames, pixels, block, register=True)
    off = fed(frames, pixels, block, register=False, threads=1)
    expected = pieces(frames.shape[0], pixels.size, block) if register_pieces is None else register_pieces
    assert (on._register_pieces, off._register_pieces) == (expected, 0)
    assert state_bytes(on) == state_bytes(off)
    res = on.result()
    assert pickle.dumps(res) == pickle.dumps(off.result())
    g2, ip, if_ = reference_sums(frames, pixels)
    np.testing.assert_allclose(res.G2, g2, rtol=1e-13, atol=0)
    np.testing.assert_allclose(res.IP, ip, rtol=1e-13, atol=0)
    np.testing.assert_allclose(res.IF, if_, rtol=1e-13, atol=0)
    assert np.array_equal(res.frame_sum, frames.reshape(frames.shape[0], -1)[:, pixels].sum(axis=1))


@pytest.mark.parametrize("block", [1, 7, 128, 1000])
@pytest.mark.parametrize("subset", ["all", "masked"])
def test_same_bits_as_lane_loops_in_any_blocking(block: int, subset: str) -> None:
    """Odd block sizes put a block's first element at odd and even indices (pairs across blocks),
    masks gather tiles, 40×52 pixels leave a partial tile and a partial strip."""
    rng = np.random.default_rng(block)
    frames = rng.poisson(0.6, (1000, 40, 52)).astype(np.uint16)
    n = frames[0].size
    pixels = np.arange(n) if subset == "all" else np.flatnonzero(rng.random(n) < 0.7)
    assert_same(frames, pixels, block)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.int32, bool])
def test_every_integer_input_type(dtype: type) -> None:
    frames = np.random.default_rng(3).poisson(1.5, (150, 24, 24)).astype(dtype)
    assert_same(frames, np.arange(24 * 24), 64)


def test_values_at_the_limit_and_a_tile_that_outgrows_it() -> None:
    """200 frames: 6 levels, a level-5 element is up to 32 times the largest value. 127·32 = 4064 <
    4096 takes the register path with products summed in float32 only a few at a time before they go to
    the uint64 sums; 128·32 does not. One tile's values pass the limit in the second block: it goes on
    in the lane loops from its register-path state."""
    n, side = 200, 32
    assert (127 << 5) < VEC_LIMIT <= (128 << 5)
    assert _every(127, 5) == 1 and _every(127, 0) == ((1 << 24) - 1) // 127**2
    rng = np.random.default_rng(11)
    below = rng.integers(0, 128, (n, side, side)).astype(np.uint16)
    below[:, 0, 0] = 127
    assert_same(below, np.arange(side * side), 50)
    at = below.copy()
    at[:, 0, 0] = 128
    assert_same(at, np.arange(side * side), 50, register_pieces=3 * 4)  # tile 0 never, 3 others always
    grows = below.copy()
    grows[120:, 0, :8] = 3000  # tile 0 only, from the third block of 50 on
    assert_same(grows, np.arange(side * side), 50, register_pieces=4 * 4 - 2)


def test_float_input_and_other_schedules_take_the_lane_loops() -> None:
    frames = np.random.default_rng(5).poisson(1.0, (100, 16, 16))
    for dtype, dpl in ((np.float32, 4), (np.uint16, 8)):
        corr = MultiTauCorrelator(100, np.arange(256), 256, delays_per_level=dpl, mode="dense")
        corr.add_frames(frames.astype(dtype))
        assert corr._register_pieces == 0, (dtype, dpl)
    corr = MultiTauCorrelator(100, np.arange(256), 256, mode="dense")
    corr.add_frames(frames.astype(np.uint16))
    assert corr._register_pieces == 1


def test_schedules_the_register_path_is_written_for() -> None:
    for n_frames, dpl, expected in [
        (1000, 4, True),
        (200, 4, True),
        (20, 4, True),
        (300, 2, False),
        (300, 8, False),
    ]:
        corr = MultiTauCorrelator(n_frames, np.arange(16), 16, delays_per_level=dpl, mode="dense")
        assert corr._register_path is expected, (n_frames, dpl)
    # fewer than 9 frames: level 0 holds fewer than eight lags
    assert MultiTauCorrelator(8, np.arange(16), 16, mode="dense")._register_path is False
    lag = np.array([1, 2, 3, 4, 5, 6, 7, 8, 5, 6, 9])
    assert register_schedule(lag, np.array([0, 8, 11]), 8) is False  # a gap in level 1's lags


def test_short_stacks_and_few_levels() -> None:
    rng = np.random.default_rng(2)
    for n in (9, 17, 33):
        assert_same(rng.poisson(2.0, (n, 16, 20)).astype(np.uint16), np.arange(320), 5)


# -- the vector type itself ---------------------------------------------------------------------------


@njit(cache=False)
def _round_trip(src: np.ndarray, dst: np.ndarray, acc: np.ndarray) -> None:
    prefetch(src, 3)  # a hint: changes nothing
    x = vload(src, 3)
    vstore(dst, 0, vfma(x, x, vadd(x, vzero())))  # x² + x
    vadd_into(acc, 16, x)


@pytest.mark.parametrize("src_t", [np.uint8, np.uint16, np.uint32, np.uint64, np.float32, np.float64])
@pytest.mark.parametrize("dst_t", [np.uint32, np.uint64, np.float32, np.float64])
def test_lanes_load_store_and_add_exactly(src_t: type, dst_t: type) -> None:
    src = np.arange(40, dtype=src_t) * 7
    dst = np.zeros(16, dtype=dst_t)
    acc = np.full(32, 5, dtype=dst_t)
    _round_trip(src, dst, acc)
    x = np.arange(3, 19, dtype=np.float64) * 7
    assert np.array_equal(dst, (x * x + x).astype(dst_t))
    assert np.array_equal(acc[16:], (x + 5).astype(dst_t))
    assert np.array_equal(acc[:16], np.full(16, 5, dtype=dst_t))


def test_integers_below_2_24_are_exact_in_float32_lanes() -> None:
    src = np.full(19, 4095, dtype=np.uint32)  # lanes 3 … 18
    dst = np.zeros(16, dtype=np.uint64)
    acc = np.zeros(32, dtype=np.uint64)
    _round_trip(src, dst, acc)
    assert np.all(dst == 4095 * 4095 + 4095)  # 16,773,120 < 2**24


def test_signed_arrays_are_refused_by_name() -> None:
    @njit(cache=False)
    def load_signed(a: np.ndarray) -> None:
        vload(a, 0)

    with pytest.raises(TypingError, match="vload"):
        load_signed(np.zeros(16, dtype=np.int32))
