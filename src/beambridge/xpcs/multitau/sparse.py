"""Sparse multi-tau kernel for low-count data: work only where a pixel counted photons.

Events ``(frame k, pixel p, value v)`` are regrouped by pixel (a stable counting sort keeps time
order) and each pixel is processed alone, in time order, against its own state (pixel-first layout
so one pixel's state is one contiguous block):

    ring_val (P, n_levels, R) uint64|float64 / ring_idx (P, n_levels, R) int64   recent elements, -1 = none
    pend_val, pend_idx (P, n_levels)   the element each level is still collecting (idx -1 = none)
    total (P, n_levels), head (P, n_levels, 2·dpl), acc (P, n_tau), seg (P, n_seg)

A level-``l`` element is finalised when a later one arrives (or at :func:`sparse_flush`): it adds
``x_l(k)·x_l(k-c)`` for each stored partner and is added into its parent ``k//2`` of level ``l+1``,
whose value is the pair **sum** (as in the dense kernel). State arrays are uint64 for integer counts
(exact: any order gives the same sums) or float64 (each pixel in time order, the same operations
as the dense kernel on non-zero values; adding exact zeros changes nothing), so both paths give
bit-identical sums.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


# The per-event helpers are inlined into their callers (numba IR inlining): called, each call took
# and released a reference on a dozen arrays, a large part of the cost of one event (256², 0.02
# photons/pixel/frame: 1,971 → 2,956 frames/s).
@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _finalize(
    p: int,
    level: int,
    k: int,
    v: float,
    ring_val: np.ndarray,
    ring_idx: np.ndarray,
    total: np.ndarray,
    head: np.ndarray,
    acc: np.ndarray,
    lag: np.ndarray,
    tau_row: np.ndarray,
    lag_ptr: np.ndarray,
) -> None:
    n_ring = ring_val.shape[2]
    total[p, level] += v
    if k < head.shape[2]:
        head[p, level, k] = v
    for j in range(lag_ptr[level], lag_ptr[level + 1]):
        c = lag[j]
        if c > k:
            break
        past = k - c
        slot = past % n_ring
        if ring_idx[p, level, slot] == past:
            acc[p, tau_row[j]] += v * ring_val[p, level, slot]
    slot = k % n_ring
    ring_idx[p, level, slot] = k
    ring_val[p, level, slot] = v


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _add(
    p: int,
    level: int,
    k: int,
    v: float,
    level_len: np.ndarray,
    pend_val: np.ndarray,
    pend_idx: np.ndarray,
    ring_val: np.ndarray,
    ring_idx: np.ndarray,
    total: np.ndarray,
    head: np.ndarray,
    acc: np.ndarray,
    lag: np.ndarray,
    tau_row: np.ndarray,
    lag_ptr: np.ndarray,
) -> None:
    """Add contribution ``v`` to element ``k`` of ``level``, finalising older pending elements."""
    n_levels = level_len.shape[0]
    while True:
        if pend_idx[p, level] == k:
            pend_val[p, level] += v
            return
        old_k = pend_idx[p, level]
        old_v = pend_val[p, level]
        pend_idx[p, level] = k
        pend_val[p, level] = v
        if old_k < 0:
            return
        fv = old_v
        _finalize(p, level, old_k, fv, ring_val, ring_idx, total, head, acc, lag, tau_row, lag_ptr)
        parent = old_k >> 1
        if level + 1 >= n_levels or parent >= level_len[level + 1]:
            return
        level += 1
        k = parent
        v = fv


@njit(cache=True, parallel=True, nogil=True, error_model="numpy")
def sparse_update(
    pix_ptr: np.ndarray,
    ev_index: np.ndarray,
    ev_value: np.ndarray,
    first_index: int,
    n_chunks: int,
    level_len: np.ndarray,
    lag: np.ndarray,
    tau_row: np.ndarray,
    lag_ptr: np.ndarray,
    pend_val: np.ndarray,
    pend_idx: np.ndarray,
    ring_val: np.ndarray,
    ring_idx: np.ndarray,
    total: np.ndarray,
    head: np.ndarray,
    acc: np.ndarray,
    seg: np.ndarray,
    seg_of_frame: np.ndarray,
    frame_sum_part: np.ndarray,
) -> None:
    """Feed events grouped by state pixel: pixel p owns ``ev_*[pix_ptr[p]:pix_ptr[p+1]]`` (time order).

    ``ev_index`` holds level-0 element indices (global frame numbers); ``seg_of_frame`` and
    ``frame_sum_part`` (n_chunks, B) are indexed by ``ev_index - first_index``.
    """
    n_pix = pix_ptr.shape[0] - 1
    per = (n_pix + n_chunks - 1) // n_chunks
    for ch in prange(n_chunks):
        for p in range(ch * per, min(n_pix, (ch + 1) * per)):
            for e in range(pix_ptr[p], pix_ptr[p + 1]):
                k = ev_index[e]
                v = ev_value[e]
                t = k - first_index
                seg[p, seg_of_frame[t]] += v
                frame_sum_part[ch, t] += v
                _add(
                    p,
                    0,
                    k,
                    v,
                    level_len,
                    pend_val,
                    pend_idx,
                    ring_val,
                    ring_idx,
                    total,
                    head,
                    acc,
                    lag,
                    tau_row,
                    lag_ptr,
                )


@njit(cache=True, parallel=True, nogil=True, error_model="numpy")
def sparse_flush(
    level_len: np.ndarray,
    lag: np.ndarray,
    tau_row: np.ndarray,
    lag_ptr: np.ndarray,
    pend_val: np.ndarray,
    pend_idx: np.ndarray,
    ring_val: np.ndarray,
    ring_idx: np.ndarray,
    total: np.ndarray,
    head: np.ndarray,
    acc: np.ndarray,
) -> None:
    """Finalise every pending element, lowest level first (call once, after the last frame)."""
    n_levels = level_len.shape[0]
    for p in prange(pend_idx.shape[0]):
        for level in range(n_levels):
            k = pend_idx[p, level]
            if k < 0:
                continue
            v = pend_val[p, level]
            pend_idx[p, level] = -1
            fv = v
            _finalize(p, level, k, fv, ring_val, ring_idx, total, head, acc, lag, tau_row, lag_ptr)
            parent = k >> 1
            if level + 1 < n_levels and parent < level_len[level + 1]:
                _add(
                    p,
                    level + 1,
                    parent,
                    fv,
                    level_len,
                    pend_val,
                    pend_idx,
                    ring_val,
                    ring_idx,
                    total,
                    head,
                    acc,
                    lag,
                    tau_row,
                    lag_ptr,
                )


@njit(cache=True, parallel=True, nogil=True, error_model="numpy")
def dense_to_pixel_events(
    frames: np.ndarray,
    first_index: int,
    state_of_pixel: np.ndarray,
    n_state: int,
    n_chunks: int,
    like: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Regroup the non-zero values of dense ``frames`` (B, n_detector_pixels) by state pixel.

    ``state_of_pixel[d]`` is the state column of detector pixel d (-1 = not analysed). Returns
    ``(pix_ptr (n_state+1,), ev_index, ev_value)`` with each pixel's events in frame order; values
    have the dtype of ``like``.
    """
    n_b, n_det = frames.shape
    per = (n_det + n_chunks - 1) // n_chunks
    counts = np.zeros(n_state + 1, dtype=np.int64)
    for ch in prange(n_chunks):
        for t in range(n_b):
            for d in range(ch * per, min(n_det, (ch + 1) * per)):
                if frames[t, d] != 0:
                    s = state_of_pixel[d]
                    if s >= 0:
                        counts[s + 1] += 1
    pix_ptr = np.cumsum(counts)
    ev_index = np.empty(pix_ptr[-1], dtype=np.int64)
    ev_value = np.empty(pix_ptr[-1], dtype=like.dtype)
    for ch in prange(n_chunks):
        fill = np.zeros(per, dtype=np.int64)
        for t in range(n_b):
            for d in range(ch * per, min(n_det, (ch + 1) * per)):
                x = frames[t, d]
                if x != 0:
                    s = state_of_pixel[d]
                    if s >= 0:
                        pos = pix_ptr[s] + fill[d - ch * per]
                        ev_index[pos] = first_index + t
                        ev_value[pos] = x
                        fill[d - ch * per] += 1
    return pix_ptr, ev_index, ev_value


@njit(cache=True, nogil=True, error_model="numpy")
def frame_events_to_pixel_events(
    frame_ptr: np.ndarray,
    pixel: np.ndarray,
    value: np.ndarray,
    first_index: int,
    state_of_pixel: np.ndarray,
    n_state: int,
    like: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Regroup frame-ordered events (frame t owns ``pixel/value[frame_ptr[t]:frame_ptr[t+1]]``) by pixel.

    Zero values and pixels outside the analysis are dropped; a pixel listed twice in one frame has its
    values summed. Returns ``(pix_ptr, ev_index, ev_value)`` as :func:`dense_to_pixel_events`.
    """
    n_ev = pixel.shape[0]
    counts = np.zeros(n_state + 1, dtype=np.int64)
    for e in range(n_ev):
        s = state_of_pixel[pixel[e]]
        if s >= 0 and value[e] != 0:
            counts[s + 1] += 1
    pix_ptr = np.cumsum(counts)
    ev_index = np.empty(pix_ptr[-1], dtype=np.int64)
    ev_value = np.empty(pix_ptr[-1], dtype=like.dtype)
    fill = np.zeros(n_state, dtype=np.int64)
    for t in range(frame_ptr.shape[0] - 1):
        for e in range(frame_ptr[t], frame_ptr[t + 1]):
            s = state_of_pixel[pixel[e]]
            if s >= 0 and value[e] != 0:
                pos = pix_ptr[s] + fill[s]
                if fill[s] > 0 and ev_index[pos - 1] == first_index + t:
                    ev_value[pos - 1] += value[e]
                    continue
                ev_index[pos] = first_index + t
                ev_value[pos] = value[e]
                fill[s] += 1
    # duplicates leave unused tail slots: compact each pixel's list
    out_ptr = np.zeros(n_state + 1, dtype=np.int64)
    for s in range(n_state):
        out_ptr[s + 1] = out_ptr[s] + fill[s]
    if out_ptr[-1] != pix_ptr[-1]:
        idx2 = np.empty(out_ptr[-1], dtype=np.int64)
        val2 = np.empty(out_ptr[-1], dtype=like.dtype)
        for s in range(n_state):
            for i in range(fill[s]):
                idx2[out_ptr[s] + i] = ev_index[pix_ptr[s] + i]
                val2[out_ptr[s] + i] = ev_value[pix_ptr[s] + i]
        return out_ptr, idx2, val2
    return pix_ptr, ev_index, ev_value


@njit(cache=True, nogil=True, error_model="numpy")
def scatter_events(frame_ptr: np.ndarray, pixel: np.ndarray, value: np.ndarray, out: np.ndarray) -> None:
    """``out[t, pixel[e]] += value[e]`` for the events e of frame t (``out`` (B, n_detector), zeroed;
    ``value`` already in its dtype). numpy's ``add.at`` does the same several times slower."""
    for t in range(frame_ptr.shape[0] - 1):
        for e in range(frame_ptr[t], frame_ptr[t + 1]):
            out[t, pixel[e]] += value[e]
