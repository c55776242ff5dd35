"""Dense multi-tau kernel: every pixel, every frame (numba, parallel over pixel runs).

State is laid out pixel-last so the inner loops run over contiguous pixels (SIMD):

    ring   (n_levels, R, P) float64   last R = 2·dpl + 1 elements of each level, slot = index mod R
    total  (n_levels, P)    float64   Σ of all elements of each level
    head   (n_levels, 2·dpl, P)       the first 2·dpl elements of each level (for IF)
    acc    (n_tau, P)       float64   Σ_t x(t)·x(t+c) per delay
    seg    (n_seg, P)       float64   Σ of level-0 elements per time segment (scattering_1d_segments)

For element ``k`` of level ``l`` (value x_l(k)), every lag ``c <= k`` of that level adds
``x_l(k)·x_l(k-c)`` to its delay; when ``k`` is odd, the pair ``(x_l(k-1) + x_l(k))/2`` becomes element
``k//2`` of level ``l+1`` (XPCS-Eigen's pair average; a trailing odd element never gets a partner).
Each pixel is processed in time order, alone, so the result does not depend on the number of threads
or on how frames are batched: it is bit-for-bit reproducible.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, fastmath=True, nogil=True, error_model="numpy", inline="always")
def _sum_run(x: np.ndarray) -> float:
    """Σ x (re-associated for SIMD; the order is fixed at compile time, so still deterministic)."""
    s = 0.0
    for i in range(x.shape[0]):
        s += x[i]
    return s


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _element_arrived(
    level: int,
    k: int,
    s0: int,
    w: int,
    ring: np.ndarray,
    total: np.ndarray,
    head: np.ndarray,
    acc: np.ndarray,
    lag: np.ndarray,
    tau_row: np.ndarray,
    lag_ptr: np.ndarray,
) -> None:
    """Account element ``k`` of ``level`` (already stored in its ring slot) for pixels s0 … s0+w-1."""
    n_ring = ring.shape[1]
    # 1-D views keep the inner loops contiguous, so LLVM vectorises them
    cur = ring[level, k % n_ring, s0 : s0 + w]
    tot = total[level, s0 : s0 + w]
    for i in range(w):
        tot[i] += cur[i]
    if k < head.shape[1]:
        first = head[level, k, s0 : s0 + w]
        for i in range(w):
            first[i] = cur[i]
    for j in range(lag_ptr[level], lag_ptr[level + 1]):
        c = lag[j]
        if c > k:
            break
        past = ring[level, (k - c) % n_ring, s0 : s0 + w]
        a = acc[tau_row[j], s0 : s0 + w]
        for i in range(w):
            a[i] += cur[i] * past[i]


@njit(cache=True, parallel=True, nogil=True, error_model="numpy")
def dense_update(
    frames: np.ndarray,
    first_index: int,
    run_frame_start: np.ndarray,
    run_state_start: np.ndarray,
    run_length: np.ndarray,
    level_len: np.ndarray,
    lag: np.ndarray,
    tau_row: np.ndarray,
    lag_ptr: np.ndarray,
    ring: np.ndarray,
    total: np.ndarray,
    head: np.ndarray,
    acc: np.ndarray,
    seg: np.ndarray,
    seg_of_frame: np.ndarray,
    frame_sum_part: np.ndarray,
) -> None:
    """Feed ``frames`` (B, n_detector_pixels), the level-0 elements ``first_index … first_index+B-1``.

    Pixel runs ``r`` map detector pixels ``run_frame_start[r] + i`` to state columns
    ``run_state_start[r] + i`` for ``i < run_length[r]``; ``frame_sum_part[r, t]`` receives the sum of
    frame ``t`` over run ``r``; ``seg_of_frame[t]`` is frame t's time segment.
    """
    n_b = frames.shape[0]
    n_levels = level_len.shape[0]
    n_ring = ring.shape[1]
    for r in prange(run_length.shape[0]):
        f0 = run_frame_start[r]
        s0 = run_state_start[r]
        w = run_length[r]
        for t in range(n_b):
            k = first_index + t
            slot = k % n_ring
            sg = seg_of_frame[t]
            cur = ring[0, slot, s0 : s0 + w]
            fr = frames[t, f0 : f0 + w]
            sgr = seg[sg, s0 : s0 + w]
            for i in range(w):
                cur[i] = np.float64(fr[i])
            for i in range(w):
                sgr[i] += cur[i]
            frame_sum_part[r, t] = _sum_run(cur)
            _element_arrived(0, k, s0, w, ring, total, head, acc, lag, tau_row, lag_ptr)
            level = 0
            while (k & 1) == 1 and level + 1 < n_levels:
                parent = k >> 1
                if parent >= level_len[level + 1]:
                    break
                a = (k - 1) % n_ring
                b = k % n_ring
                dst = parent % n_ring
                xa = ring[level, a, s0 : s0 + w]
                xb = ring[level, b, s0 : s0 + w]
                xd = ring[level + 1, dst, s0 : s0 + w]
                for i in range(w):
                    xd[i] = (xa[i] + xb[i]) * 0.5
                _element_arrived(level + 1, parent, s0, w, ring, total, head, acc, lag, tau_row, lag_ptr)
                level += 1
                k = parent


@njit(cache=True, nogil=True, error_model="numpy")
def dense_tail_sums(ring: np.ndarray, level: int, last_index: int, c: int, out: np.ndarray) -> None:
    """out[p] = Σ of the last ``c`` elements (indices last_index-c+1 … last_index) of ``level``."""
    n_ring = ring.shape[1]
    out[:] = 0.0
    for m in range(last_index - c + 1, last_index + 1):
        slot = m % n_ring
        for p in range(out.shape[0]):
            out[p] += ring[level, slot, p]
