"""Multi-tau correlator with XPCS-Eigen's definitions (``Corr::multiTau2``), streaming and exact.

For pixel p, delay tau at level l (lag c = tau / 2**l, coarse series x_p of M_l = floor(N / 2**l)
elements, each the mean of 2**l consecutive frames, built by pair averages) and n = M_l - c pairs:

    G2_p(tau) = (1/n) Σ_{t=0}^{n-1} x_p(t) · x_p(t+c)
    IP_p(tau) = (1/n) Σ_{t=0}^{n-1} x_p(t)            (past)
    IF_p(tau) = (1/n) Σ_{t=c}^{M_l-1} x_p(t)          (future)

Frames are fed in blocks (dense arrays or sparse events) and never held: memory is the per-pixel
state (about ``8·(n_tau + n_levels·(4·dpl + 2) + n_seg)`` bytes per analysed pixel), independent of
the number of frames. All sums are float64 and each pixel is accumulated in time order, so results
are bit-for-bit identical across thread counts, block sizes and the dense/sparse paths.

Usage::

    corr = MultiTauCorrelator(n_frames=1000, pixels=np.flatnonzero(qmap.dqmap.ravel()), n_detector=H*W)
    for block in blocks:                # (b, H, W) or (b, H*W), any numeric dtype
        corr.add_frames(block)
    sums = corr.result()                # PixelSums: G2, IP, IF of shape (n_tau, n_pixels)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numba
import numpy as np
import numpy.typing as npt

from beambridge.xpcs.delays import DelaySchedule, multitau_schedule
from beambridge.xpcs.errors import OptionError
from beambridge.xpcs.multitau_dense import dense_tail_sums, dense_update
from beambridge.xpcs.multitau_sparse import (
    dense_to_pixel_events,
    frame_events_to_pixel_events,
    sparse_flush,
    sparse_update,
)

Mode = Literal["auto", "dense", "sparse"]
RUN_LENGTH = 256
"""Pixels per work item of the dense kernel (its state rows stay in L1/L2 while frames stream)."""
SPARSE_DENSITY = 0.08
"""In ``auto`` mode, blocks with fewer non-zero pixels than this fraction take the sparse path."""
_KERNEL_DTYPES = (np.uint16, np.uint32, np.float64)


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


def _pixel_runs(pixels: npt.NDArray[np.int64], run_length: int) -> tuple[npt.NDArray[np.int64], ...]:
    """Split sorted detector indices into runs of consecutive pixels no longer than ``run_length``."""
    if pixels.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    breaks = np.flatnonzero(np.diff(pixels) != 1) + 1
    starts = np.concatenate(([0], breaks))
    ends = np.concatenate((breaks, [pixels.size]))
    frame_start, state_start, length = [], [], []
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        for a in range(s, e, run_length):
            b = min(e, a + run_length)
            frame_start.append(int(pixels[a]))
            state_start.append(a)
            length.append(b - a)
    return (
        np.asarray(frame_start, np.int64),
        np.asarray(state_start, np.int64),
        np.asarray(length, np.int64),
    )


def _kernel_dtype(block: np.ndarray) -> np.ndarray:
    """Return ``block`` in one of the three dtypes the kernels are compiled for (no copy if already)."""
    if block.dtype in _KERNEL_DTYPES:
        return block
    if block.dtype.kind in "ub" and block.dtype.itemsize <= 2:
        return block.astype(np.uint16)
    if (
        block.dtype.kind in "ui"
        and block.dtype.itemsize <= 4
        and (block.dtype.kind == "u" or block.min() >= 0)
    ):
        return block.astype(np.uint32)
    return block.astype(np.float64)


class MultiTauCorrelator:
    """Streaming multi-tau correlator over a fixed set of pixels.

    Args:
        n_frames: N, the number of frames that will be fed (after stride/averaging).
        pixels: sorted flat detector indices to analyse, shape (P,).
        n_detector: number of pixels per frame (H·W).
        delays_per_level: dpl (default 4, as at APS).
        n_segments: time segments for the segment means (``scattering_1d_segments``).
        mode: "dense", "sparse", or "auto" (chosen from the first block's fraction of non-zero pixels).
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
        self.n_segments = max(1, min(int(n_segments), n_frames))
        self.n_fed = 0
        sch = self.schedule
        self._n_levels = sch.n_levels
        self._level_len = np.asarray([n_frames >> lev for lev in range(self._n_levels)], dtype=np.int64)
        order = np.lexsort((sch.lag, sch.level))
        self._lag = sch.lag[order].astype(np.int64)
        self._tau_row = order.astype(np.int64)
        self._lag_ptr = np.searchsorted(sch.level[order], np.arange(self._n_levels + 1)).astype(np.int64)
        self._ring_size = 2 * delays_per_level + 1
        self._head_size = 2 * delays_per_level
        self._frame_sum = np.zeros(n_frames, dtype=np.float64)
        self._state_allocated = False
        self._finished = False
        self._n_threads = numba.get_num_threads()

    # -- state -----------------------------------------------------------------------------------
    def _allocate(self, mode: Literal["dense", "sparse"]) -> None:
        self.mode = mode
        nl, r, h, p = self._n_levels, self._ring_size, self._head_size, self.pixels.size
        n_tau = self.schedule.n_tau
        if mode == "dense":
            self._ring = np.zeros((nl, r, p))
            self._total = np.zeros((nl, p))
            self._head = np.zeros((nl, h, p))
            self._acc = np.zeros((n_tau, p))
            self._seg = np.zeros((self.n_segments, p))
            self._runs = _pixel_runs(self.pixels, RUN_LENGTH)
        else:
            self._ring = np.zeros((p, nl, r))
            self._ring_idx = np.full((p, nl, r), -1, dtype=np.int64)
            self._pend_val = np.zeros((p, nl))
            self._pend_idx = np.full((p, nl), -1, dtype=np.int64)
            self._total = np.zeros((p, nl))
            self._head = np.zeros((p, nl, h))
            self._acc = np.zeros((p, n_tau))
            self._seg = np.zeros((p, self.n_segments))
            self._state_of_pixel = np.full(self.n_detector, -1, dtype=np.int64)
            self._state_of_pixel[self.pixels] = np.arange(p)
        self._state_allocated = True

    def _segments(self, first: int, count: int) -> npt.NDArray[np.int64]:
        k = np.arange(first, first + count, dtype=np.int64)
        return (k * self.n_segments) // self.schedule.n_frames

    def _check_room(self, count: int) -> None:
        if self._finished:
            raise OptionError("the correlator has already produced its result")
        if self.n_fed + count > self.schedule.n_frames:
            raise OptionError(f"more than the announced {self.schedule.n_frames} frames were fed")

    # -- feeding ---------------------------------------------------------------------------------
    def add_frames(self, block: npt.ArrayLike) -> None:
        """Feed dense frames, shape (b, H, W) or (b, H·W), in time order."""
        arr = np.asarray(block)
        arr = arr.reshape(arr.shape[0], -1) if arr.ndim >= 2 else arr.reshape(1, -1)
        if arr.shape[1] != self.n_detector:
            raise OptionError(f"frames have {arr.shape[1]} pixels, expected {self.n_detector}")
        b = arr.shape[0]
        if b == 0:
            return
        self._check_room(b)
        arr = _kernel_dtype(np.ascontiguousarray(arr))
        if not self._state_allocated:
            mode = self.mode
            if mode == "auto":
                sample = arr[: min(b, 16)][:, self.pixels] if self.pixels.size else arr[:0]
                density = np.count_nonzero(sample) / max(sample.size, 1)
                mode = "sparse" if density < SPARSE_DENSITY else "dense"
            self._allocate(mode)
        seg = self._segments(self.n_fed, b)
        if self.mode == "dense":
            fs, ss, ln = self._runs
            part = np.zeros((ln.size, b))
            dense_update(
                arr,
                self.n_fed,
                fs,
                ss,
                ln,
                self._level_len,
                self._lag,
                self._tau_row,
                self._lag_ptr,
                self._ring,
                self._total,
                self._head,
                self._acc,
                self._seg,
                seg,
                part,
            )
        else:
            n_chunks = 4 * self._n_threads
            ptr, idx, val = dense_to_pixel_events(
                arr, self.n_fed, self._state_of_pixel, self.pixels.size, n_chunks
            )
            part = self._sparse(ptr, idx, val, b, seg)
        self._frame_sum[self.n_fed : self.n_fed + b] = part.sum(axis=0)
        self.n_fed += b

    def add_events(self, frame_ptr: npt.ArrayLike, pixel: npt.ArrayLike, value: npt.ArrayLike) -> None:
        """Feed sparse frames: frame t (of this block) owns ``pixel/value[frame_ptr[t]:frame_ptr[t+1]]``.

        ``pixel`` are flat detector indices. Switches a fresh correlator in ``auto`` mode to sparse.
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
        if not self._state_allocated:
            self._allocate("sparse" if self.mode in ("auto", "sparse") else "dense")
        seg = self._segments(self.n_fed, b)
        if self.mode == "dense":
            dense = np.zeros((b, self.n_detector), dtype=np.float64)
            rows = np.repeat(np.arange(b), np.diff(fp))
            np.add.at(dense, (rows, px), vals.astype(np.float64))
            self.add_frames(dense)
            return
        ptr, idx, val = frame_events_to_pixel_events(
            fp, px, vals.astype(np.float64), self.n_fed, self._state_of_pixel, self.pixels.size
        )
        part = self._sparse(ptr, idx, val, b, seg)
        self._frame_sum[self.n_fed : self.n_fed + b] = part.sum(axis=0)
        self.n_fed += b

    def _sparse(
        self, ptr: np.ndarray, idx: np.ndarray, val: np.ndarray, b: int, seg: np.ndarray
    ) -> np.ndarray:
        n_chunks = 4 * self._n_threads
        part = np.zeros((n_chunks, b))
        sparse_update(
            ptr,
            idx,
            val,
            self.n_fed,
            n_chunks,
            self._level_len,
            self._lag,
            self._tau_row,
            self._lag_ptr,
            self._pend_val,
            self._pend_idx,
            self._ring,
            self._ring_idx,
            self._total,
            self._head,
            self._acc,
            self._seg,
            seg,
            part,
        )
        return part

    # -- result ----------------------------------------------------------------------------------
    def result(self) -> PixelSums:
        """Finish and return the per-pixel averages (call after exactly ``n_frames`` frames)."""
        sch = self.schedule
        if self.n_fed != sch.n_frames:
            raise OptionError(f"{self.n_fed} frames were fed but {sch.n_frames} were announced")
        if not self._state_allocated:
            self._allocate("dense")
        if self.mode == "sparse" and not self._finished:
            sparse_flush(
                self._level_len,
                self._lag,
                self._tau_row,
                self._lag_ptr,
                self._pend_val,
                self._pend_idx,
                self._ring,
                self._ring_idx,
                self._total,
                self._head,
                self._acc,
            )
        self._finished = True
        p = self.pixels.size
        g2 = np.empty((sch.n_tau, p))
        ip = np.empty((sch.n_tau, p))
        if_ = np.empty((sch.n_tau, p))
        tail = np.empty(p)
        for j in range(sch.n_tau):
            lev, c = int(sch.level[j]), int(sch.lag[j])
            n = float(sch.n_pairs[j])
            last = int(self._level_len[lev]) - 1
            if self.mode == "dense":
                acc, total, first = self._acc[j], self._total[lev], self._head[lev, :c]
                dense_tail_sums(self._ring, lev, last, c, tail)
            else:
                acc, total, first = self._acc[:, j], self._total[:, lev], self._head[:, lev, :c].T
                tail[:] = 0.0
                for m in range(last - c + 1, last + 1):
                    slot = m % self._ring_size
                    hit = self._ring_idx[:, lev, slot] == m
                    tail += np.where(hit, self._ring[:, lev, slot], 0.0)
            head = np.zeros(p)
            for row in first:  # in time order, the same in both layouts
                head += row
            g2[j] = acc / n
            ip[j] = (total - tail) / n
            if_[j] = (total - head) / n
        total0 = self._total[0] if self.mode == "dense" else self._total[:, 0]
        seg = self._seg if self.mode == "dense" else self._seg.T
        seg_len = np.bincount(self._segments(0, sch.n_frames), minlength=self.n_segments).astype(np.float64)
        return PixelSums(
            schedule=sch,
            G2=g2,
            IP=ip,
            IF=if_,
            mean_intensity=total0 / sch.n_frames,
            segment_mean=seg / seg_len[:, None],
            frame_sum=self._frame_sum.copy(),
        )
