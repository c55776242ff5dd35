"""Multi-tau correlator with XPCS-Eigen's definitions (``Corr::multiTau2``), streaming and exact.

For pixel p, delay tau at level l (lag c = tau / 2**l, coarse series x_p of M_l = floor(N / 2**l)
elements, each the mean of 2**l consecutive frames, built by pair averages) and n = M_l - c pairs:

    G2_p(tau) = (1/n) Σ_{t=0}^{n-1} x_p(t) · x_p(t+c)
    IP_p(tau) = (1/n) Σ_{t=0}^{n-1} x_p(t)            (past)
    IF_p(tau) = (1/n) Σ_{t=c}^{M_l-1} x_p(t)          (future)

Frames are fed in blocks (dense arrays or sparse events) and never held: memory is the per-pixel
state (dense: ``s·(n_tau + n_seg) + v·2·n_levels·2·dpl`` bytes per analysed pixel, with s = 8, v = 4
(about 860 B for N = 1000), or s = 4, v = 2 for photon counts small enough (``arithmetic`` "int16":
about 430 B), independent of the number of frames. Level elements are kept as pair **sums** (scaled by
2^-l, 4^-l at the end). Integer counts are summed exactly in integers, so the result is the same for
any order of the additions (threads, tiles, blocks); float input is summed in float64, each pixel in
time order. Either way results are bit-for-bit identical across thread counts, block sizes and the
dense/sparse paths.

Usage::

    corr = MultiTauCorrelator(n_frames=1000, pixels=np.flatnonzero(qmap.dqmap.ravel()), n_detector=H*W)
    for block in blocks:                # (b, H, W) or (b, H*W), any numeric dtype
        corr.add_frames(block)
    sums = corr.result()                # PixelSums: G2, IP, IF of shape (n_tau, n_pixels)

or ``corr.g2(BinLabels(...))`` for g2(q, τ) with error bars straight from the state, without the
per-pixel arrays (:mod:`beambridge.xpcs.multitau.bins`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numba
import numpy as np
import numpy.typing as npt

from beambridge.xpcs.errors import OptionError
from beambridge.xpcs.multitau.bins import BinLabels, BinPartials, G2Result, bin_sums, fold
from beambridge.xpcs.multitau.delays import DelaySchedule, multitau_schedule
from beambridge.xpcs.multitau.dense import (
    STRIP,
    TILE,
    dense_update,
    finalize,
    float_zero_tolerance,
    register_schedule,
)
from beambridge.xpcs.multitau.sparse import (
    GROUP_SHIFT,
    LOCAL_MASK,
    PAIR_EVENTS,
    analysed_bits,
    append_blocked,
    count_frame_events,
    event_bin_sums,
    event_pixel_sums,
    frame_bits,
    frame_events,
    group_records,
    max_frame_sum,
    scatter_events,
    stage_events,
    static_totals,
)

BLOCKED_EVENTS_PER_RANGE = 8
"""Events are kept ordered by block of detector pixels, a range of records at a time, each with a table
of where its blocks begin (8 bytes per block) that ``g2`` reads for every block: a call bringing at
least this many events per block is one range (the table is 1/8 of its records' size at most); smaller
calls (a frame at a time on a large detector) are staged as they come and ordered together once they
hold as many."""

Mode = Literal["auto", "dense", "sparse"]
Arithmetic = Literal["int16", "int32", "int64", "float"]
"""How the state holds integer counts exactly, narrowest first: "int16" (uint16 level values, uint32
sums: half the memory, so half the traffic of a pass over it), "int32" (uint32 values, uint64 sums),
"int64" (uint64 both); "float": float64 for float input or counts too large for uint64 sums."""
_RANK: dict[str, int] = {"int16": 0, "int32": 1, "int64": 2, "float": 3}
_U64_LIMIT = float(2**64)
_U32_LIMIT = float(2**32)
_U16_LIMIT = float(2**16)
SPARSE_DENSITY = 0.01
"""Photons per pixel and frame up to which ``mode="auto"`` takes the event-driven path for events. The
two paths cross near 0.03 at 1 Mpx × 500 frames and 0.05 at 256² × 1000 frames (CPU seconds, 2026-12-04:
the event path's cost follows the photons, the dense kernel's the pixels and frames), so auto stays on
the safe side."""


@dataclass
class PixelSums:
    """Per-pixel multi-tau averages, each of shape (n_tau, n_pixels), float64.

    ``mean_intensity`` (n_pixels,) is the time mean of every pixel; ``segment_mean`` (n_seg, n_pixels)
    the mean over each of ``n_seg`` equal time segments; ``frame_sum`` (N,) the sum of every frame
    over the analysed pixels.
    """

    schedule: DelaySchedule
    G2: npt.NDArray[np.float64]
    IP: npt.NDArray[np.float64]
    IF: npt.NDArray[np.float64]
    mean_intensity: npt.NDArray[np.float64]
    segment_mean: npt.NDArray[np.float64]
    frame_sum: npt.NDArray[np.float64]


def _tile_sources(pixels: npt.NDArray[np.int64], tile: int) -> npt.NDArray[np.int64]:
    """Detector index of each tile's first pixel if the tile is full and consecutive, else -1."""
    n_tiles = -(-pixels.size // tile)
    src = np.full(n_tiles, -1, dtype=np.int64)
    for r in range(n_tiles):
        a, b = r * tile, min(pixels.size, (r + 1) * tile)
        if b - a == tile and pixels[b - 1] - pixels[a] == tile - 1:
            src[r] = pixels[a]
    return src


def _strip_sources(tile_src: npt.NDArray[np.int64], strip: int, tile: int) -> npt.NDArray[np.int64]:
    """Detector index of each strip (``strip`` tiles) whose pixels are all consecutive, else -1."""
    n_strips = -(-tile_src.size // strip)
    src = np.full(n_strips, -1, dtype=np.int64)
    for s in range(n_strips):
        t = tile_src[s * strip : (s + 1) * strip]
        if t.size == strip and t[0] >= 0 and np.all(t == t[0] + tile * np.arange(strip)):
            src[s] = t[0]
    return src


def _expand_events(fp: np.ndarray, px: np.ndarray, vals: np.ndarray, n_detector: int) -> np.ndarray:
    """Dense frames (b, n_detector) from events, in the narrowest dtype that holds any frame's sums
    exactly (uint16 for photon counts), whatever the dtype the events came in."""
    dtype: npt.DTypeLike = np.uint16
    if vals.dtype.kind == "f":
        dtype = np.float64
    elif vals.size and vals.min() < 0:
        dtype = np.int64
    elif vals.size:
        # a pixel's sum within a frame is at most the largest value times the frame's event count
        bound = float(vals.max()) * float(np.diff(fp).max())
        dtype = np.uint16 if bound < 2**16 else np.uint32 if bound < _U32_LIMIT else np.uint64
    dense = np.zeros((fp.size - 1, n_detector), dtype=dtype)
    scatter_events(fp, px, vals.astype(dtype, copy=False), dense)
    return dense


def held_itemsize(dtype: npt.DTypeLike) -> int:
    """The most bytes per value a block of ``dtype`` frames can take once the correlator holds it
    (:meth:`MultiTauCorrelator._frames_for_kernel`): unsigned counts of up to 16 bits as uint16, wider
    ones as they are; signed integers (a negative value sends them to the float path) and floats as
    float64."""
    dt = np.dtype(dtype)
    return max(2, dt.itemsize) if dt.kind in "ub" else 8


def _value_bound(block: np.ndarray) -> tuple[bool, float, bool]:
    """(integer?, an upper bound of the values, is it their maximum?) of a block; signed or float data
    with negatives: float. Counts of up to 16 bits are bounded by their type, without a pass over them
    (the dense kernel checks them where it reads them anyway: :meth:`MultiTauCorrelator._feed_dense`)."""
    kind, size = block.dtype.kind, block.dtype.itemsize
    if kind == "b":
        return True, 1.0, False
    if kind == "u" and size <= 2:
        return True, float(np.iinfo(block.dtype).max), False
    if kind in "ui":
        if block.size == 0:
            return True, 0.0, True
        if kind == "i" and block.min() < 0:
            return False, 0.0, True
        return True, float(block.max()), True
    return False, 0.0, True


class MultiTauCorrelator:
    """Streaming multi-tau correlator over a fixed set of pixels.

    Integer counts are accumulated exactly (level values ``uint16`` and sums ``uint32`` while the
    largest value seen allows it on the dense path, else ``uint32`` values — ``uint64`` if they could
    overflow — and ``uint64`` sums; see :mod:`beambridge.xpcs.multitau.dense`), float input in
    float64. ``arithmetic`` tells which (:data:`Arithmetic`); it widens by itself if a later block has
    larger values than the current one can hold exactly. The result is the same to the bit whichever
    it is.

    Args:
        n_frames: N, the number of frames that will be fed (after stride/averaging).
        pixels: sorted flat detector indices to analyse, shape (P,).
        n_detector: number of pixels per frame (H·W).
        delays_per_level: dpl (default 4, as at APS).
        n_segments: time segments for the segment means (``scattering_1d_segments``).
        mode: "dense" (every pixel, every frame, streaming), "sparse" (event-driven: only the photons
            are kept and correlated at the end, see :mod:`beambridge.xpcs.multitau.sparse`; integer
            counts only, float input switches to dense), or "auto": sparse for events at most
            :data:`SPARSE_DENSITY` photons per pixel and frame (judged on the first block), else dense.
    """

    def __init__(
        self,
        n_frames: int,
        pixels: npt.ArrayLike,
        n_detector: int,
        delays_per_level: int = 4,
        n_segments: int = 10,
        mode: Mode = "auto",
    ) -> None:
        self.schedule = multitau_schedule(n_frames, delays_per_level)
        self.pixels = np.asarray(pixels, dtype=np.int64)
        if self.pixels.size and (
            np.any(np.diff(self.pixels) <= 0) or self.pixels[0] < 0 or self.pixels[-1] >= n_detector
        ):
            raise OptionError("pixels must be sorted, unique detector indices")
        if mode not in ("auto", "dense", "sparse"):
            raise OptionError(f"mode must be auto, dense or sparse, got {mode!r}")
        self.n_detector = int(n_detector)
        self.mode: Mode = mode
        self.arithmetic: Arithmetic = "int32"
        self.n_segments = max(1, min(int(n_segments), n_frames))
        self.n_fed = 0
        sch = self.schedule
        self._n_levels = sch.n_levels
        self._level_len = np.asarray([n_frames >> lev for lev in range(self._n_levels)], dtype=np.int64)
        order = np.lexsort((sch.lag, sch.level))
        assert np.array_equal(order, np.arange(sch.n_tau)), "delays must be in (level, lag) order"
        self._lag = sch.lag[order].astype(np.int64)
        self._tau_row = order.astype(np.int64)
        self._lag_ptr = np.searchsorted(sch.level[order], np.arange(self._n_levels + 1)).astype(np.int64)
        self._row_of = np.full((self._n_levels, int(sch.lag.max()) + 1), -1, dtype=np.int64)
        self._row_of[sch.level, sch.lag] = np.arange(sch.n_tau)
        inv = 1.0 / (2.0 ** sch.level.astype(np.float64))  # exact powers of two
        self._scale1 = inv / sch.n_pairs.astype(np.float64)
        self._scale2 = inv * inv / sch.n_pairs.astype(np.float64)
        self._ring_size = 2 * delays_per_level + 1
        self._hist = 2 * delays_per_level
        self._max_value = 0.0
        """The largest value known (integer input: blocks of up to 16-bit counts are not looked at)."""
        self._block_bound = 0.0
        self._value_limit = -1
        """The largest value the dense kernel may take into the state without widening it first, or -1:
        any (see :meth:`_admit`)."""
        self._tmax: np.ndarray = np.zeros(0, dtype=np.uint32)
        self._frame_sum: np.ndarray = np.zeros(n_frames, dtype=np.uint64)
        self._sum_tiles: np.ndarray | None = None
        self._frame_sum_groups: np.ndarray = np.zeros((0, n_frames), dtype=np.uint64)
        self._state_allocated = False
        self._n_events = 0
        self._fbits = frame_bits(n_frames)
        self._block_ranges: list[np.ndarray] = []
        """Where each range of kept records (:func:`~beambridge.xpcs.multitau.sparse.append_blocked`)
        begins in every block of detector pixels, and its end: (n_blocks + 1,) each, in time order."""
        self._ev_rec: np.ndarray = np.empty(0, dtype=np.uint64)
        self._analysed: np.ndarray = np.empty(0, dtype=np.uint8)
        self._st_n = 0  # staged events (small calls, kept as they come until there are enough)
        self._st_frames = 0
        self._st_first = 0
        self._st_ptr: np.ndarray = np.zeros(1, dtype=np.int64)
        self._st_pixel: np.ndarray = np.empty(0, dtype=np.int64)
        self._st_value: np.ndarray = np.empty(0, dtype=np.uint32)
        self._finished = False
        self._n_threads = numba.get_num_threads()
        self._prepared: dict[tuple[Any, ...], BinPartials] = {}
        self._pair_events = PAIR_EVENTS  # tests set it to 0 (element walk only) or more (pairs only)
        self._register_path = register_schedule(self._lag, self._lag_ptr, self._hist)
        """Integer tiles take the dense kernel's register path (tests turn it off to compare)."""
        self._register_pieces = 0
        """(tile, sub-block) pieces the dense kernel ran on the register path so far."""

    # -- arithmetic ------------------------------------------------------------------------------
    def _fits16(self, bound: float) -> bool:
        """Whether counts up to ``bound`` keep every level element below 2**16 and every sum of the
        dense state below 2**32 (the "int16" arithmetic). Products: Σ_t x_l(t)·x_l(t+c) <= M_l·(m·2^l)²
        = N·m²·2^l; segment sums and level totals <= N·m, below that for m >= 1. The frame sums are
        kept in uint64 whatever the arithmetic (they add up every pixel)."""
        top = float(2 ** (self._n_levels - 1))
        n = float(self.schedule.n_frames)
        return bound * top < _U16_LIMIT and n * max(bound, 1.0) ** 2 * top < _U32_LIMIT

    def _needed(self, integer: bool, bound: float) -> Arithmetic:
        """Narrowest exact arithmetic for values up to ``bound`` (running maximum of all blocks). The
        event-driven path keeps its values in records, not in a state: "int32" at the least there."""
        if not integer:
            return "float"
        top = float(2 ** (self._n_levels - 1))
        n = float(self.schedule.n_frames)
        # Σ_t x_l(t)·x_l(t+c) <= M_l·(m·2^l)^2 = N·m²·2^l; frame sums <= P·m; totals <= N·m
        if n * bound * bound * top >= _U64_LIMIT or self.pixels.size * bound >= _U64_LIMIT:
            return "float"
        if self.mode != "sparse" and self._fits16(bound):
            return "int16"
        return "int32" if bound * top < _U32_LIMIT else "int64"

    @property
    def _acc_dtype(self) -> np.dtype[Any]:
        """The dense state's sums (products, segments)."""
        return np.dtype({"int16": np.uint32, "int32": np.uint64, "int64": np.uint64, "float": np.float64}[
            self.arithmetic
        ])  # fmt: skip

    @property
    def _sum_dtype(self) -> np.dtype[Any]:
        """Frame sums and bin sums, which add up many pixels: uint64 for any integer arithmetic."""
        return np.dtype(np.float64 if self.arithmetic == "float" else np.uint64)

    @property
    def _val_dtype(self) -> np.dtype[Any]:
        """Level values (history, head) and the tiles' maxima."""
        return np.dtype({"int16": np.uint16, "int32": np.uint32, "int64": np.uint64, "float": np.float64}[
            self.arithmetic
        ])  # fmt: skip

    def _widen(self, target: Arithmetic) -> None:
        """Switch the state to a wider arithmetic (exact up to the float64 rounding of large sums)."""
        if _RANK[target] <= _RANK[self.arithmetic]:
            return
        if self.mode == "sparse" and target == "float":
            self._events_to_dense()  # the event path is for counts: replay what it kept, go on dense
        self.arithmetic = target
        self._frame_sum = self._frame_sum.astype(self._sum_dtype)
        self._frame_sum_groups = self._frame_sum_groups.astype(self._sum_dtype)
        if not self._state_allocated:
            return
        if self.mode == "sparse":
            self._st_value = self._st_value.astype(self._val_dtype)  # records hold any exact count
            return
        for name in ("_hist_v", "_head", "_acc", "_seg", "_tmax"):
            dt = self._val_dtype if name in ("_hist_v", "_head", "_tmax") else self._acc_dtype
            setattr(self, name, getattr(self, name).astype(dt))
        if target == "float":
            self._tmax = self._tmax[:0]

    def _admit(self, integer: bool, bound: float, exact: bool = True) -> None:
        """Choose or widen the arithmetic for a block whose values are at most ``bound`` (their maximum
        if ``exact``, else a bound from their type). A block of small-typed counts whose maximum is not
        known may still go to an "int16" dense state: the kernel then checks its values against
        :meth:`_int16_limit` (``_value_limit``) and :meth:`_feed_dense` widens if one is above."""
        if exact:
            self._max_value = max(self._max_value, bound)
        self._block_bound = max(self._max_value, bound)
        target = self._needed(integer, self._block_bound)
        first = self.n_fed == 0 and not self._state_allocated
        if (
            target != "float"
            and self.mode != "sparse"
            and (first or self.arithmetic == "int16")
            and self._needed(integer, self._max_value) == "int16"
        ):
            target = "int16"  # the values not known to fit are checked by the kernel
        if first:
            self.arithmetic = target
            self._frame_sum = self._frame_sum.astype(self._sum_dtype)
            self._frame_sum_groups = self._frame_sum_groups.astype(self._sum_dtype)
            if self.mode == "sparse" and self.arithmetic == "float":
                self.mode = "dense"
        else:
            self._widen(target)
        checked = self.arithmetic == "int16" and not self._fits16(self._block_bound)
        self._value_limit = self._int16_limit() if checked else -1

    def _int16_limit(self) -> int:
        """The largest count the "int16" state holds exactly (:meth:`_fits16`)."""
        top = 1 << (self._n_levels - 1)
        m = min((1 << 16) // top, int((2**32 / (self.schedule.n_frames * top)) ** 0.5)) + 1
        while m > 0 and not self._fits16(float(m)):
            m -= 1
        return m

    # -- state -----------------------------------------------------------------------------------
    def prepare(self, dtype: npt.DTypeLike) -> None:
        """Allocate and touch the (dense) state now, for frames of ``dtype``, rather than on the first
        block. At 1 Mpx the state is hundreds of megabytes whose first touch (page faults) otherwise
        slows the first block by a third; call this while waiting for the detector. Optional: results
        are the same either way. A float ``dtype`` chooses float64 arithmetic; integer counts start in
        the narrowest arithmetic that holds counts of 1 ("int16" unless the series is too long for it)
        and widen by themselves as usual on the first block whose values need it (one conversion of
        the state). In ``auto`` mode this commits to the dense path (frames always take it; events fed
        later are then correlated densely too). The event-driven (sparse) path has no state to
        prepare."""
        if self._state_allocated or self.mode == "sparse" or self.n_fed:
            return
        self.mode = "dense"
        self.arithmetic = "float" if np.dtype(dtype).kind == "f" else self._needed(True, 1.0)
        self._frame_sum = self._frame_sum.astype(self._sum_dtype)
        self._frame_sum_groups = self._frame_sum_groups.astype(self._sum_dtype)
        self._allocate("dense")
        for state in (self._hist_v, self._head, self._acc, self._seg):
            state.fill(0)  # np.zeros maps pages lazily: fault them in here

    def _allocate(self, mode: Literal["dense", "sparse"]) -> None:
        self.mode = mode
        nl, h, p = self._n_levels, self._hist, self.pixels.size
        if mode == "dense":
            tile = TILE
            n_tiles = -(-p // tile)
            val_t = self._val_dtype
            self._hist_v = np.zeros((n_tiles, nl, h, tile), dtype=val_t)
            self._head = np.zeros((n_tiles, nl, h, tile), dtype=val_t)
            self._acc = np.zeros((n_tiles, self.schedule.n_tau, tile), dtype=self._acc_dtype)
            self._seg = np.zeros((n_tiles, self.n_segments, tile), dtype=self._acc_dtype)
            self._tile_src = _tile_sources(self.pixels, tile)
            self._strip_src = _strip_sources(self._tile_src, STRIP, tile)
            self._tmax = np.zeros(n_tiles if self.arithmetic != "float" else 0, dtype=val_t)
        else:
            self._analysed = analysed_bits(self.pixels, self.n_detector)
            self._n_events = 0
            self._block_ranges = []
            self._ev_rec = np.empty(0, dtype=np.uint64)
            self._st_value = np.empty(0, dtype=self._val_dtype)
        self._state_allocated = True

    @property
    def _n_blocks(self) -> int:
        return (self.n_detector >> GROUP_SHIFT) + 1

    def _event_room(self, extra: int, frames: int) -> None:
        """Grow the event buffers to hold ``extra`` more events (of ``frames`` frames): to what the
        frames still to come need at this block's rate and a tenth more (one allocation for a steady
        stream), at least double."""
        need = self._n_events + extra
        if need <= self._ev_rec.size:
            return
        to_come = self.schedule.n_frames - self.n_fed - frames
        ahead = need + int(1.1 * extra / max(frames, 1) * max(to_come, 0))
        size = max(need, ahead, 2 * self._ev_rec.size, 1 << 16)
        new = np.empty(size, dtype=np.uint64)
        new[: self._n_events] = self._ev_rec[: self._n_events]
        self._ev_rec = new

    def _keep_events(self, fp: np.ndarray, px: np.ndarray, vals: np.ndarray) -> None:
        """Keep the events of the ``fp.size - 1`` frames from ``n_fed`` (detector pixels): a large call
        ordered by block at once, a small one staged (and the staged calls ordered together once they
        are as many as a large call)."""
        b = fp.size - 1
        large = BLOCKED_EVENTS_PER_RANGE * self._n_blocks
        if px.size >= large:
            self._flush_staged()
            self._event_room(px.size, b)
            self._append_range(fp, px, vals, self.n_fed, self._analysed, self._frame_sum)
            return
        if self._st_n == 0 and self._st_frames == 0:
            self._st_first = self.n_fed
        need = self._st_n + px.size
        if need > self._st_pixel.size:
            size = max(need, 2 * self._st_pixel.size, 1 << 10)
            for name in ("_st_pixel", "_st_value"):
                old = getattr(self, name)
                new = np.empty(size, dtype=old.dtype)
                new[: self._st_n] = old[: self._st_n]
                setattr(self, name, new)
        if self._st_frames + b + 1 > self._st_ptr.size:
            self._st_ptr = np.concatenate([self._st_ptr, np.empty(max(b, self._st_ptr.size), dtype=np.int64)])
        self._st_n = stage_events(
            fp, px, vals, self.n_fed, self._analysed, self._st_ptr, self._st_frames, self._st_pixel,
            self._st_value, self._st_n, self._frame_sum,
        )  # fmt: skip
        self._st_frames += b
        if self._st_n >= large:
            self._flush_staged()

    def _flush_staged(self) -> None:
        """Order the staged events by block (one range), their frame sums already counted."""
        if self._st_frames == 0:
            return
        n, frames = self._st_n, self._st_frames
        self._st_n = self._st_frames = 0
        if n == 0:
            return
        self._event_room(n, 0)
        none = np.zeros(0, dtype=self._frame_sum.dtype)
        self._append_range(
            self._st_ptr[: frames + 1], self._st_pixel[:n], self._st_value[:n], self._st_first,
            np.zeros(0, dtype=np.uint8), none,
        )  # fmt: skip

    def _append_range(
        self, fp: np.ndarray, px: np.ndarray, vals: np.ndarray, first: int, analysed: np.ndarray,
        frame_sum: np.ndarray,
    ) -> None:  # fmt: skip
        ranges = np.empty(self._n_blocks + 1, dtype=np.int64)
        self._n_events = append_blocked(
            fp, px, vals, first, analysed, self._fbits, self._n_threads, self._ev_rec, self._n_events,
            frame_sum, ranges,
        )  # fmt: skip
        self._block_ranges.append(ranges)

    def _kept_events(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every kept event as (detector pixel, frame, value), in time order."""
        self._flush_staged()
        n = self._n_events
        rec = self._ev_rec[:n]
        block = np.zeros(n, dtype=np.int64)
        for ranges in self._block_ranges:
            block[ranges[0] : ranges[-1]] = np.repeat(np.arange(ranges.size - 1), np.diff(ranges))
        fb = np.uint64(self._fbits)
        frame = (rec & ((np.uint64(1) << fb) - np.uint64(1))).astype(np.int64)
        pixel = (block << GROUP_SHIFT) | ((rec >> fb) & np.uint64(LOCAL_MASK)).astype(np.int64)
        value = rec >> (fb + np.uint64(GROUP_SHIFT))
        order = np.argsort(frame, kind="stable")  # kept by block of pixels: to time order
        return pixel[order], frame[order], value[order]

    def _events_to_dense(self) -> None:
        """Feed the kept events to a new dense state, block by block (float input met the event path)."""
        if not self._state_allocated or self.mode != "sparse":
            self.mode = "dense"
            return
        pixel, frame, value = self._kept_events()
        value = value.astype(self._val_dtype)
        fed, self.n_fed = self.n_fed, 0
        self._frame_sum[:] = 0
        self._frame_sum_groups[:] = 0
        self._state_allocated = False
        self._allocate("dense")
        block = max(1, min(fed, 64))
        for a in range(0, fed, block):
            b = min(block, fed - a)
            fp = np.searchsorted(frame, np.arange(a, a + b + 1))
            lo, hi = int(fp[0]), int(fp[-1])
            self._feed_dense(_expand_events(fp - lo, pixel[lo:hi], value[lo:hi], self.n_detector))
        self._ev_rec, self._block_ranges = self._ev_rec[:0], []
        self._n_events = 0

    def _segments(self, first: int, count: int) -> npt.NDArray[np.int64]:
        k = np.arange(first, first + count, dtype=np.int64)
        return (k * self.n_segments) // self.schedule.n_frames

    def _check_room(self, count: int) -> None:
        if self._finished:
            raise OptionError("the correlator has already produced its result")
        if self.n_fed + count > self.schedule.n_frames:
            raise OptionError(f"more than the announced {self.schedule.n_frames} frames were fed")

    def _frames_for_kernel(self, arr: np.ndarray) -> np.ndarray:
        """``arr`` in a dtype the kernels are compiled for: uint16/uint32 counts, or float64."""
        if self.arithmetic == "float":
            return arr if arr.dtype == np.float64 else arr.astype(np.float64)
        if arr.dtype in (np.uint16, np.uint32):
            return arr
        if arr.dtype.kind in "ub" and arr.dtype.itemsize <= 2:
            return arr.astype(np.uint16)
        if self._max_value < _U32_LIMIT:
            return arr.astype(np.uint32)
        return arr.astype(np.uint64)

    def group_frame_sums(self, pixel_bounds: npt.ArrayLike) -> None:
        """Sum float frames per run of pixels ``pixel_bounds[k] … pixel_bounds[k+1]-1`` (multiples of the
        kernel's tiles), then the runs in order: the frame sums (``frame_sum``) a run split over processes
        at those boundaries repeats bit for bit (:mod:`beambridge.xpcs.mpi`). Integer sums are exact
        in any order and unaffected. Call before the first frame."""
        bounds = np.asarray(pixel_bounds, dtype=np.int64)
        if self.n_fed:
            raise OptionError("frame sums are grouped before the first frame")
        if (
            bounds.size < 2
            or bounds[0] != 0
            or bounds[-1] != self.pixels.size
            or np.any(np.diff(bounds) < 0)
            or np.any(bounds[:-1] % TILE > 0)
        ):
            raise OptionError(
                f"pixel groups {bounds.tolist()} must cut the {self.pixels.size} pixels at tiles"
            )
        self._sum_tiles = -(-bounds // TILE)
        self._frame_sum_groups = np.zeros((bounds.size - 1, self.schedule.n_frames), dtype=self._sum_dtype)

    def frame_sum_parts(self) -> np.ndarray:
        """(groups, N) frame sums whose in-order sum is :attr:`frame_sum`: one row per pixel group (see
        :meth:`group_frame_sums`) for float frames fed densely, else one row (exact integer sums)."""
        if self._sum_tiles is not None and self.arithmetic == "float" and self.mode == "dense":
            return self._frame_sum_groups
        return self._frame_sum[None, :]

    # -- feeding ---------------------------------------------------------------------------------
    def add_frames(self, block: npt.ArrayLike) -> None:
        """Feed dense frames, shape (b, H, W) or (b, H·W), in time order."""
        arr = np.asarray(block)
        arr = arr.reshape(arr.shape[0], -1) if arr.ndim >= 2 else arr.reshape(1, -1)
        if arr.shape[1] != self.n_detector:
            raise OptionError(f"frames have {arr.shape[1]} pixels, expected {self.n_detector}")
        if arr.shape[0] == 0:
            return
        self._check_room(arr.shape[0])
        if self.mode == "auto":
            self.mode = "dense"
        integer, bound, exact = _value_bound(arr)
        if not exact and self.n_fed == 0 and self.arithmetic in ("int16", "int32") and self.pixels.size:
            # a look at the analysed pixels of the first frame (1 Mpx: 0.1 ms, 2 ms through a mask):
            # counts too large for the narrow state send the run to the wide one at once, rather than
            # allocating the narrow one and stopping every strip at them (integrating detectors)
            first = arr[0] if self.pixels.size == self.n_detector else arr[0, self.pixels]
            self._max_value = max(self._max_value, float(first.max()))
        self._admit(integer, bound, exact)
        arr = self._frames_for_kernel(np.ascontiguousarray(arr))
        if not self._state_allocated:
            self._allocate(self.mode)
        if self.mode == "dense":
            self._feed_dense(arr)
            return
        fp = np.zeros(arr.shape[0] + 1, dtype=np.int64)
        np.cumsum(count_frame_events(arr, self.pixels), out=fp[1:])
        px = np.empty(int(fp[-1]), dtype=np.int64)
        vals = np.empty(int(fp[-1]), dtype=arr.dtype)
        frame_events(arr, self.pixels, fp, px, vals)
        self._keep_events(fp, px, vals)
        self.n_fed += arr.shape[0]

    def _feed_dense(self, arr: np.ndarray) -> None:
        b = arr.shape[0]
        seg = self._segments(self.n_fed, b)
        part = np.zeros((self._tile_src.size, b), dtype=self._sum_dtype)
        resume = np.zeros(self._strip_src.size, dtype=np.int64)
        limit = self._value_limit if self.arithmetic == "int16" else -1
        while True:
            self._register_pieces += dense_update(
                arr, self.n_fed, self.pixels, self._tile_src, self._strip_src, self._lag, self._lag_ptr,
                self._hist_v, self._head, self._acc, self._seg, seg, part, self._tmax, numba.get_num_threads(),
                self._register_path, limit, resume,
            )  # fmt: skip
            if limit < 0 or not np.any(resume < b):
                break
            # a value above what the "int16" state holds: widen it, and let the strips that stopped
            # at it go on from there (what they took before is in the state, exactly)
            self._max_value = max(self._max_value, self._block_bound)
            self._widen(self._needed(True, self._max_value))
            limit = -1
        self._frame_sum[self.n_fed : self.n_fed + b] = part.sum(axis=0)
        if self._sum_tiles is not None:
            for k, (a, z) in enumerate(zip(self._sum_tiles[:-1], self._sum_tiles[1:], strict=True)):
                self._frame_sum_groups[k, self.n_fed : self.n_fed + b] = part[a:z].sum(axis=0)
        self.n_fed += b

    def add_events(self, frame_ptr: npt.ArrayLike, pixel: npt.ArrayLike, value: npt.ArrayLike) -> None:
        """Feed sparse frames: frame t (of this block) owns ``pixel/value[frame_ptr[t]:frame_ptr[t+1]]``.

        ``pixel`` are flat detector indices; a pixel listed twice in one frame has its values summed.
        In sparse mode (or auto at a low photon density) the events are kept as they are and
        correlated by :meth:`g2`/:meth:`result`; in dense mode each block is expanded to frames.
        """
        fp = np.asarray(frame_ptr, dtype=np.int64)
        px = np.asarray(pixel, dtype=np.int64)
        vals = np.asarray(value)
        b = fp.size - 1
        if b <= 0:
            return
        self._check_room(b)
        if px.size and (px.min() < 0 or px.max() >= self.n_detector):
            raise OptionError(f"event pixel index outside the detector (0 … {self.n_detector - 1})")
        if self.mode == "auto":
            density = px.size / max(b * self.pixels.size, 1)
            self.mode = "sparse" if density <= SPARSE_DENSITY else "dense"
        if self.mode != "sparse":
            self.add_frames(_expand_events(fp, px, vals, self.n_detector))
            return
        integer, bound, exact = _value_bound(vals)
        if integer and vals.size and vals.dtype.kind in "ub":
            # a pixel listed twice in a frame is summed: bound it by the largest sum of a frame
            bound, exact = max_frame_sum(fp, vals.view(np.uint8) if vals.dtype.kind == "b" else vals), True
        self._admit(integer, bound, exact)
        if self.mode != "sparse":  # float values: the dense kernel takes them
            self.add_frames(_expand_events(fp, px, vals, self.n_detector))
            return
        if not self._state_allocated:
            self._allocate("sparse")
        unsigned = vals.dtype.kind == "u" and vals.dtype.itemsize <= self._val_dtype.itemsize
        vals = vals if unsigned else vals.astype(self._val_dtype)
        self._keep_events(fp, px, vals)
        self.n_fed += b

    # -- result ----------------------------------------------------------------------------------
    def _grouped_events(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """The kept events grouped by pixel: (ptr, frame, value, most events of one pixel)."""
        block_ptr = self._block_table()
        out_start = np.zeros(self._n_blocks + 1, dtype=np.int64)
        np.cumsum(np.diff(block_ptr, axis=1).sum(axis=0), out=out_start[1:])
        state_start = np.searchsorted(self.pixels, np.arange(self._n_blocks + 1) << GROUP_SHIFT)
        ptr, frame, value = group_records(
            block_ptr, self._ev_rec, self._fbits, self.pixels, state_start, out_start
        )
        most = int(np.diff(ptr).max()) if self.pixels.size else 0
        return ptr, frame, value, max(most, 1)

    def _block_table(self) -> np.ndarray:
        """Every range's block starts, (n_ranges, n_blocks + 1), after ordering what is staged."""
        self._flush_staged()
        if not self._block_ranges:
            return np.zeros((0, self._n_blocks + 1), dtype=np.int64)
        return np.stack(self._block_ranges)

    def finish(self) -> tuple[np.ndarray, ...]:
        """End the feeding and return the final dense state ``(acc, head, tail, seg)``, grouped
        (n_groups, ..., lanes) as :func:`~beambridge.xpcs.multitau.dense.finalize` and
        :func:`~beambridge.xpcs.multitau.bins.bin_sums` take it (empty for the sparse path, whose state
        is its events). Call after exactly ``n_frames`` frames, once; :meth:`result` and :meth:`g2` call it."""
        sch = self.schedule
        if self.n_fed != sch.n_frames:
            raise OptionError(f"{self.n_fed} frames were fed but {sch.n_frames} were announced")
        if self._finished:
            raise OptionError("the correlator has already produced its result")
        if not self._state_allocated:
            self._allocate("dense")
        self._finished = True
        if self.mode == "sparse":
            return ()
        return self._acc, self._head, self._hist_v, self._seg

    def g2(self, labels: BinLabels, pixel_spread: bool = False) -> G2Result:
        """Finish and return g2(q, τ), its covariance across delays and the bin intensities for the q
        bins ``labels`` of the analysed pixels (call after exactly ``n_frames`` frames). One pass over the
        state (or over the pixels that saw photons), no per-pixel G2/IP/IF arrays; the same bits for any
        thread count, block sizes and path.

        The error bar is the jackknife's (``G2Result.g2_err_resampled``, from ``g2_cov``), always.
        ``pixel_spread=True`` also gives XPCS-Eigen's error bar, the spread of the per-pixel ratios
        G2_p/(IP_p·IF_p) (``G2Result.g2_err``; None without it): a ratio for every pixel and delay, which
        on photon-counting data costs more than the rest of the pass to g2 together."""
        partials = self.g2_partials(labels, pixel_spread)
        return partials.reduce(self.schedule.tau, self.frame_sum, pixel_spread)

    def g2_partials(
        self, labels: BinLabels, pixel_spread: bool = False, pixel_range: tuple[int, int] | None = None
    ) -> BinPartials:
        """Finish and return the bin partial sums that :meth:`g2` reduces. ``labels`` may cover more
        pixels than this correlator's: ``pixel_range`` then says which of them (whole chunks) these are
        (a process's share of an MPI run, :mod:`beambridge.xpcs.mpi`)."""
        sch = self.schedule
        partials = self._prepared.pop((id(labels), pixel_range, self.mode, self._sum_dtype), None)
        if partials is None:
            partials = self._partials(labels, pixel_range)  # checks the labels before finishing
        state = self.finish()
        sparse = self.mode == "sparse"
        if sparse:
            self._event_g2(partials, pixel_spread)
        else:
            acc, head, tail, seg = state
            bin_sums(
                acc, head, tail, seg, self.pixels.size, sch.level, sch.lag, self._scale1, self._scale2,
                self._level_len, partials, self._zero_tol, pixel_spread, numba.get_num_threads(),
            )  # fmt: skip
        return partials

    def _partials(self, labels: BinLabels, pixel_range: tuple[int, int] | None) -> BinPartials:
        sch = self.schedule
        return BinPartials(
            labels, self.pixels.size, sch.n_tau, self.n_segments, self._sum_dtype, self._scale1,
            self._scale2, sch.n_frames, self.segment_lengths, None if self._sum_dtype.kind == "f" else 1,
            pixel_range,
        )  # fmt: skip

    def prepare_g2(self, labels: BinLabels, pixel_range: tuple[int, int] | None = None) -> None:
        """Build (and touch) the bin partial sums :meth:`g2` will fill for ``labels`` now, while frames
        are still coming, rather than after the last one: at 256² with 360 static bins they are ~100 MB
        whose allocation and first touch otherwise follow the last frame. Call once the first block is
        in (its path and arithmetic decide their layout); the same bits either way."""
        if self.n_fed == 0 or self._finished:
            return
        partials = self._partials(labels, pixel_range)
        for array in (partials.static_sums, partials.static_intensity, partials.dynamic_sums, partials.valid):
            array.fill(0)  # np.zeros maps pages lazily: fault them in here
        self._prepared = {(id(labels), pixel_range, self.mode, self._sum_dtype): partials}

    def _frame_intervals(self) -> tuple[np.ndarray, np.ndarray]:
        """Every frame boundary that IP, IF and the segment means need — each level's end, ``(M_l − c)·2^l``
        and ``c·2^l`` for every delay, the segments' starts — sorted, and the interval of every frame."""
        sch = self.schedule
        n = sch.n_frames
        lev, lag = sch.level.astype(np.int64), sch.lag.astype(np.int64)
        level_end = self._level_len << np.arange(self._n_levels)
        seg_start = np.searchsorted(self._segments(0, n), np.arange(self.n_segments + 1))
        cuts = [np.array([0, n]), level_end, (self._level_len[lev] - lag) << lev, lag << lev, seg_start]
        bounds = np.unique(np.concatenate(cuts).astype(np.int64))
        return bounds, (np.searchsorted(bounds, np.arange(n), side="right") - 1).astype(np.int64)

    def _event_g2(self, partials: BinPartials, spread: bool) -> None:
        """The bin sums from the kept events (see :func:`event_bin_sums`), in the dense path's layout."""
        sch = self.schedule
        block_ptr = self._block_table()
        most = max(int(np.diff(block_ptr, axis=1).sum(axis=0).max(initial=0)), 1)
        identity = self.pixels.size == self.n_detector  # state pixel p is detector pixel p
        ss, si = partials.static_sums, partials.static_intensity
        workers, n_sub, nl = self._n_threads, ss.shape[3], self._n_levels
        bounds, interval = self._frame_intervals()
        acc = np.zeros((workers, n_sub, sch.n_tau + 1), dtype=np.uint64)  # a spare slot: see pair_products
        per_interval = np.zeros((workers, n_sub, bounds.size - 1), dtype=np.uint64)
        n_chunks, n_dyn = partials.pixel_bounds.size - 1, partials.labels.n_dynamic
        hist = np.zeros((n_chunks if spread else 0, n_dyn, nl, self._row_of.shape[1]), dtype=np.int64)
        event_bin_sums(
            block_ptr, self._ev_rec, self._fbits, self.pixels[:0] if identity else self.pixels, most, self._level_len, self._lag, self._lag_ptr,
            self._row_of, self._scale1, self._scale2, interval, partials.static, partials.dynamic, partials.pixel_bounds, workers, spread,
            self._pair_events, partials.pixel_mean, acc, per_interval, partials.dynamic_sums, hist,
        )  # fmt: skip
        # Σ_p of the counts before every boundary: IP sums the first M_l − c elements of level l, IF the
        # elements from c to the level's end
        lev, lag = sch.level.astype(np.int64), sch.lag.astype(np.int64)
        ml = self._level_len[lev]
        seg_start = np.searchsorted(self._segments(0, sch.n_frames), np.arange(self.n_segments + 1))
        static_totals(
            acc, per_interval, np.searchsorted(bounds, (ml - lag) << lev), np.searchsorted(bounds, lag << lev),
            np.searchsorted(bounds, ml << lev), np.searchsorted(bounds, seg_start), ss, si,
        )  # fmt: skip
        if spread:  # pixels valid at lag c: threshold u >= c (cumulative from the top)
            at_least = np.cumsum(hist[..., ::-1], axis=-1)[..., ::-1]  # (chunk, d, level, u)
            partials.valid[:] = at_least[:, :, sch.level, sch.lag].transpose(0, 2, 1)

    @property
    def _zero_tol(self) -> float:
        """0 for exact integer sums; the rounding bound of float sums (see ``finalize``)."""
        if self.arithmetic != "float":
            return 0.0
        return float_zero_tolerance(self.schedule.n_frames, self._hist)

    @property
    def segment_lengths(self) -> npt.NDArray[np.float64]:
        """Frames in each of the ``n_segments`` time segments."""
        seg = self._segments(0, self.schedule.n_frames)
        return np.bincount(seg, minlength=self.n_segments).astype(np.float64)

    @property
    def frame_sum(self) -> npt.NDArray[np.float64]:
        """Sum of every frame fed so far over the analysed pixels (N,)."""
        return fold(self.frame_sum_parts()).astype(np.float64)

    def result(self) -> PixelSums:
        """Finish and return the per-pixel averages (call after exactly ``n_frames`` frames).

        At 1 Mpx these are hundreds of megabytes; when only per-bin g2 is wanted,
        :meth:`g2` goes there without them."""
        sch = self.schedule
        state = self.finish()
        p = self.pixels.size
        g2 = np.zeros((sch.n_tau, p))
        ip = np.zeros((sch.n_tau, p))
        if_ = np.zeros((sch.n_tau, p))
        mean = np.zeros(p)
        seg_mean = np.zeros((self.n_segments, p))
        seg_len = self.segment_lengths
        if self.mode == "sparse":
            ptr, frame, value, most = self._grouped_events()
            event_pixel_sums(
                ptr, frame, value, most, self._level_len, self._lag, self._lag_ptr, self._row_of,
                sch.n_pairs, self._segments(0, sch.n_frames), seg_len, self._n_threads, g2, ip, if_, mean,
                seg_mean,
            )  # fmt: skip
        else:
            acc, head, tail, seg = state
            # integer sums are exact: one rounding to float64, then exact power-of-two scaling, then ÷ n
            finalize(
                acc, head, tail, seg, p, sch.level, sch.lag, sch.n_pairs, self._level_len, seg_len, g2, ip,
                if_, mean, seg_mean, self._zero_tol,
            )  # fmt: skip
        return PixelSums(
            schedule=sch,
            G2=g2,
            IP=ip,
            IF=if_,
            mean_intensity=mean,
            segment_mean=seg_mean,
            frame_sum=self.frame_sum,
        )
