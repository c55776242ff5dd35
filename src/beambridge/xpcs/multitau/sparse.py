"""Event-driven multi-tau for photon counts: the work follows the photons, not the pixels.

Events ``(frame, pixel, count)`` are kept as they arrive (:func:`append_events`,
:func:`append_frame_events`: only non-zero counts on analysed pixels, 4 + 4 + 4|8 bytes each) and
correlated when the last frame is in: :func:`group_by_pixel` regroups them by pixel (a stable counting
sort, so each pixel's events stay in time order), then every pixel that saw a photon is walked once,
level by level (:func:`pixel_levels`): its level-``l`` elements are its events with frame ``t`` taken to
element ``t >> l`` (the pair sums of the dense kernel; a trailing element without a pair is dropped),
its products are the pairs of elements ``c`` apart for the lags ``c`` of the level. A pixel with a few
photons costs a few steps per level; a pixel without photons costs nothing at all: no state, no pass.

Counts are integers, so every sum is exact and its order does not matter: the per-pixel sums this
walk produces are the same integers the dense kernel accumulates, and what is computed from them
(:func:`event_bin_sums` straight to the bin sums of :mod:`beambridge.xpcs.multitau.bins`,
:func:`event_pixel_sums` to per-pixel G2/IP/IF) uses the same floating-point expressions in the same
pixel order: the result is bit-identical to the dense path's.

What a silent pixel contributes to the bin sums is zero, except to the number of valid pixels of the
error bars; that number is counted per level from one threshold per pixel (``u_l``: the pixel is
valid at lag ``c`` iff its first element is before ``M_l - c`` and its last at or after ``c``, i.e.
iff ``c <= u_l``), so it costs one increment per level, not one per delay.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit, prange


@njit(cache=True, nogil=True, error_model="numpy", boundscheck=False)
def append_events(
    frame_ptr: np.ndarray,
    pixel: np.ndarray,
    value: np.ndarray,
    first_index: int,
    state_of_pixel: np.ndarray,
    out_state: np.ndarray,
    out_frame: np.ndarray,
    out_value: np.ndarray,
    n_out: int,
    frame_sum: np.ndarray,
) -> int:
    """Append the non-zero events on analysed pixels of one block (frame t owns
    ``pixel/value[frame_ptr[t]:frame_ptr[t+1]]``) at ``n_out`` as (state pixel, global frame, value);
    add them into ``frame_sum``. The ``out_*`` arrays have room for every event. Returns the new count."""
    n = n_out
    for t in range(frame_ptr.shape[0] - 1):
        k = first_index + t
        for e in range(frame_ptr[t], frame_ptr[t + 1]):
            v = value[e]
            s = state_of_pixel[pixel[e]]
            if v != 0 and s >= 0:
                out_state[n] = s
                out_frame[n] = k
                out_value[n] = v
                frame_sum[k] += v
                n += 1
    return n


@njit(cache=True, parallel=True, nogil=True, error_model="numpy", boundscheck=False)
def count_frame_events(frames: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """Non-zero values of every frame of ``frames`` (B, n_detector) on ``pixels``, shape (B,)."""
    counts = np.zeros(frames.shape[0], dtype=np.int64)
    for t in prange(frames.shape[0]):
        n = 0
        for i in range(pixels.shape[0]):
            if frames[t, pixels[i]] != 0:
                n += 1
        counts[t] = n
    return counts


@njit(cache=True, parallel=True, nogil=True, error_model="numpy", boundscheck=False)
def append_frame_events(
    frames: np.ndarray,
    pixels: np.ndarray,
    counts: np.ndarray,
    first_index: int,
    out_state: np.ndarray,
    out_frame: np.ndarray,
    out_value: np.ndarray,
    n_out: int,
    frame_sum: np.ndarray,
) -> None:
    """Append the non-zero values of dense ``frames`` on ``pixels`` (state pixel i is detector pixel
    ``pixels[i]``) at ``n_out``, frame by frame (``counts`` from :func:`count_frame_events`)."""
    start = np.empty(frames.shape[0], dtype=np.int64)
    acc = n_out
    for t in range(frames.shape[0]):
        start[t] = acc
        acc += counts[t]
    for t in prange(frames.shape[0]):
        n = start[t]
        k = first_index + t
        fs = frame_sum[k]
        for i in range(pixels.shape[0]):
            v = frames[t, pixels[i]]
            if v != 0:
                out_state[n] = i
                out_frame[n] = k
                out_value[n] = v
                fs += v
                n += 1
        frame_sum[k] = fs


@njit(cache=True, parallel=True, nogil=True, error_model="numpy", boundscheck=False)
def group_by_pixel(
    state: np.ndarray, frame: np.ndarray, value: np.ndarray, n_state: int, n_workers: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stable counting sort of the events by state pixel: ``(ptr (n_state+1,), frame, value)`` with pixel
    p's events at ``ptr[p]:ptr[p+1]`` in time order. Worker w owns a range of pixels and scans every event
    (reading is cheap; the scattered writes of each range stay with one thread)."""
    n = state.shape[0]
    per = (n_state + n_workers - 1) // max(n_workers, 1)
    counts = np.zeros(n_state + 1, dtype=np.int64)
    for w in prange(n_workers):
        lo, hi = w * per, min(n_state, (w + 1) * per)
        for e in range(n):
            s = state[e]
            if s >= lo and s < hi:
                counts[s + 1] += 1
    ptr = np.cumsum(counts)
    out_frame = np.empty(n, dtype=frame.dtype)
    out_value = np.empty(n, dtype=value.dtype)
    fill = ptr[:-1].copy()
    for w in prange(n_workers):
        lo, hi = w * per, min(n_state, (w + 1) * per)
        for e in range(n):
            s = state[e]
            if s >= lo and s < hi:
                pos = fill[s]
                fill[s] = pos + 1
                out_frame[pos] = frame[e]
                out_value[pos] = value[e]
    return ptr, out_frame, out_value


@njit(cache=True, nogil=True, error_model="numpy", boundscheck=False, inline="always")
def pixel_elements(
    ev_frame: np.ndarray, ev_value: np.ndarray, e0: int, e1: int, ek: np.ndarray, ev: np.ndarray
) -> int:
    """Level-0 elements of one pixel (events ``e0 … e1-1``, time order) into ``ek``/``ev``; events of the
    same frame are summed. Returns how many."""
    m = 0
    for e in range(e0, e1):
        t = ev_frame[e]
        if m > 0 and ek[m - 1] == t:
            ev[m - 1] += ev_value[e]
        else:
            ek[m] = t
            ev[m] = ev_value[e]
            m += 1
    return m


@njit(cache=True, nogil=True, error_model="numpy", boundscheck=False, inline="always")
def level_products(
    ek: np.ndarray, ev: np.ndarray, m: int, lev: int, max_lag: int, row_of: np.ndarray, acc: np.ndarray
) -> int:
    """``acc[j] += x(k)·x(k-c)`` for every pair of the ``m`` elements ``c`` apart, c a lag of ``lev``;
    returns how many pairs."""
    n = 0
    for b in range(1, m):
        kb = ek[b]
        vb = ev[b]
        a = b - 1
        while a >= 0:
            c = kb - ek[a]
            if c > max_lag:
                break
            j = row_of[lev, c]
            if j >= 0:
                acc[j] += vb * ev[a]
                n += 1
            a -= 1
    return n


@njit(cache=True, nogil=True, error_model="numpy", boundscheck=False, inline="always")
def next_level(ek: np.ndarray, ev: np.ndarray, m: int) -> int:
    """Level ``l+1`` elements from level ``l``'s in place (pair sums of elements k>>1); returns how many."""
    m2 = 0
    for i in range(m):
        k2 = ek[i] >> 1
        if m2 > 0 and ek[m2 - 1] == k2:
            ev[m2 - 1] += ev[i]
        else:
            ek[m2] = k2
            ev[m2] = ev[i]
            m2 += 1
    return m2


@njit(cache=True, nogil=True, error_model="numpy", boundscheck=False, inline="always")
def drop_unpaired(ek: np.ndarray, ev: np.ndarray, m: int, ml: int, tot: Any) -> tuple[int, Any]:
    """Drop the trailing elements at or past ``ml`` (a level's last element without a pair); returns
    the new count and total."""
    while m > 0 and ek[m - 1] >= ml:
        tot -= ev[m - 1]
        m -= 1
    return m, tot


@njit(cache=True, nogil=True, error_model="numpy", boundscheck=False, inline="always")
def grow_ends(
    ek: np.ndarray, ev: np.ndarray, m: int, ml: int, lg: int, ia: int, ib: int, last: Any, first: Any
) -> tuple[int, int, Any, Any]:
    """Extend the sums of the elements in the last / first ``lg`` positions of a level of ``ml`` (the
    lags of a level ascend: call with each in turn, starting from ``ia = m - 1, ib = 0`` and zeros)."""
    while ia >= 0 and ek[ia] >= ml - lg:
        last += ev[ia]
        ia -= 1
    while ib < m and ek[ib] < lg:
        first += ev[ib]
        ib += 1
    return ia, ib, last, first


@njit(cache=True, parallel=True, nogil=True, error_model="numpy", boundscheck=False)
def event_bin_sums(
    ptr: np.ndarray,
    ev_frame: np.ndarray,
    ev_value: np.ndarray,
    max_events: int,
    level_len: np.ndarray,
    lag: np.ndarray,
    lag_ptr: np.ndarray,
    row_of: np.ndarray,
    scale1: np.ndarray,
    scale2: np.ndarray,
    seg_of_frame: np.ndarray,
    static: np.ndarray,
    dynamic: np.ndarray,
    chunk_ptr: np.ndarray,
    n_workers: int,
    pixel_mean: np.ndarray,
    static_sums: np.ndarray,
    static_intensity: np.ndarray,
    tot_sums: np.ndarray,
    edge_sums: np.ndarray,
    dynamic_sums: np.ndarray,
    valid_hist: np.ndarray,
) -> None:
    """Bin sums of :class:`~beambridge.xpcs.multitau.bins.BinPartials` from pixel-grouped events.

    Integer sums per worker w (uint64, any order: exact), sub-bin major so that one pixel's sums are
    one block: ``static_sums[w, s, j]`` Σ_p acc_p(j); ``tot_sums[w, s, l]`` Σ_p of level l's elements;
    ``edge_sums[w, s, l, 0, r]`` Σ_p of element ``M_l − 1 − r`` of level l and ``[w, s, l, 1, r]`` of
    element r (r below the level's largest lag: the caller's cumulative sums give Σ_p of the last and
    first c elements, so a pixel costs a step per element near an end, not one per delay);
    ``static_intensity[w, s, 0]`` Σ_p of level 0, ``[w, s, 1 + q]`` of segment q. Per pixel chunk c
    (pixel order, as the dense path adds them): ``dynamic_sums[c, d, j]`` the non-zero ratios
    g_p = G2_p/(IP_p·IF_p) (:func:`add_ratio`) and ``valid_hist[c, d, l, u]`` the pixels of
    threshold u at level l; ``pixel_mean[p]`` (zeroed) every pixel's time mean.
    """
    n_chunks = chunk_ptr.shape[0] - 1
    n_levels = level_len.shape[0]
    n_tau = lag.shape[0]
    n0 = np.float64(level_len[0])
    for w in prange(n_workers):
        ek = np.empty(max_events, dtype=np.int64)
        ev = np.empty(max_events, dtype=static_sums.dtype)
        acc = np.zeros(n_tau, dtype=static_sums.dtype)
        for c in range(w, n_chunks, n_workers):
            for p in range(chunk_ptr[c], chunk_ptr[c + 1]):
                e0, e1 = ptr[p], ptr[p + 1]
                if e0 == e1:
                    continue
                m = pixel_elements(ev_frame, ev_value, e0, e1, ek, ev)
                s = static[p]
                d = dynamic[p]
                tot = ev[0] * 0
                for i in range(m):
                    tot += ev[i]
                    static_intensity[w, s, 1 + seg_of_frame[ek[i]]] += ev[i]
                static_intensity[w, s, 0] += tot
                pixel_mean[p] = np.float64(tot) / n0
                for lev in range(n_levels):
                    ml = level_len[lev]
                    m, tot = drop_unpaired(ek, ev, m, ml, tot)
                    if m == 0:
                        break
                    tot_sums[w, s, lev] += tot
                    j0, j1 = lag_ptr[lev], lag_ptr[lev + 1]
                    max_lag = lag[j1 - 1]
                    u = min(ek[m - 1], ml - 1 - ek[0])
                    valid_hist[c, d, lev, max(0, min(u, max_lag))] += 1
                    i = m - 1
                    while i >= 0 and ek[i] >= ml - max_lag:
                        edge_sums[w, s, lev, 0, ml - 1 - ek[i]] += ev[i]
                        i -= 1
                    i = 0
                    while i < m and ek[i] < max_lag:
                        edge_sums[w, s, lev, 1, ek[i]] += ev[i]
                        i += 1
                    if level_products(ek, ev, m, lev, max_lag, row_of, acc) == 0:
                        if lev + 1 < n_levels:
                            m = next_level(ek, ev, m)
                        continue
                    ia, ib = m - 1, 0
                    last = ev[0] * 0
                    first = ev[0] * 0
                    for j in range(j0, j1):
                        ia, ib, last, first = grow_ends(ek, ev, m, ml, lag[j], ia, ib, last, first)
                        a = acc[j]
                        if a != 0:
                            acc[j] = 0
                            static_sums[w, s, j] += a
                            g = pixel_ratio(a, tot - last, tot - first, scale1[j], scale2[j])
                            add_ratio(dynamic_sums, c, d, j, g)
                    if lev + 1 < n_levels:
                        m = next_level(ek, ev, m)  # pair sums keep the total


@njit(cache=True, nogil=True, error_model="numpy", boundscheck=False, inline="always")
def pixel_ratio(acc: float, ip_sum: float, if_sum: float, scale1: float, scale2: float) -> float:
    """g_p = G2_p / (IP_p·IF_p) from a pixel's sums: the one expression both paths use."""
    return (np.float64(acc) * scale2) / ((np.float64(ip_sum) * scale1) * (np.float64(if_sum) * scale1))


@njit(cache=True, nogil=True, error_model="numpy", boundscheck=False, inline="always")
def add_ratio(dynamic_sums: np.ndarray, c: int, d: int, j: int, g: float) -> None:
    """Add a non-zero ratio to chunk c's shifted sums of (dynamic bin d, delay j):
    ``dynamic_sums[c, d, j]`` = (Σ (g − K), n, Σ (g − K)², K), the shift K the chunk's first such ratio."""
    if dynamic_sums[c, d, j, 1] == 0:
        dynamic_sums[c, d, j, 3] = g
    dev = g - dynamic_sums[c, d, j, 3]
    dynamic_sums[c, d, j, 0] += dev
    dynamic_sums[c, d, j, 1] += 1.0
    dynamic_sums[c, d, j, 2] += dev * dev


@njit(cache=True, parallel=True, nogil=True, error_model="numpy", boundscheck=False)
def event_pixel_sums(
    ptr: np.ndarray,
    ev_frame: np.ndarray,
    ev_value: np.ndarray,
    max_events: int,
    level_len: np.ndarray,
    lag: np.ndarray,
    lag_ptr: np.ndarray,
    row_of: np.ndarray,
    n_pairs: np.ndarray,
    seg_of_frame: np.ndarray,
    seg_len: np.ndarray,
    n_workers: int,
    g2: np.ndarray,
    ip: np.ndarray,
    if_: np.ndarray,
    mean: np.ndarray,
    seg_mean: np.ndarray,
) -> None:
    """Per-pixel G2, IP, IF (n_tau, P), time mean and segment means from pixel-grouped events, into
    zeroed arrays (a pixel without photons stays zero), with the expressions of
    :func:`~beambridge.xpcs.multitau.dense.finalize`."""
    n_pix = ptr.shape[0] - 1
    n_levels = level_len.shape[0]
    n_tau = lag.shape[0]
    n_seg = seg_len.shape[0]
    n0 = np.float64(level_len[0])
    per = (n_pix + n_workers - 1) // max(n_workers, 1)
    for w in prange(n_workers):
        ek = np.empty(max_events, dtype=np.int64)
        ev = np.empty(max_events, dtype=np.uint64)
        acc = np.zeros(n_tau, dtype=np.uint64)
        seg = np.zeros(n_seg, dtype=np.uint64)
        for p in range(w * per, min(n_pix, (w + 1) * per)):
            e0, e1 = ptr[p], ptr[p + 1]
            if e0 == e1:
                continue
            m = pixel_elements(ev_frame, ev_value, e0, e1, ek, ev)
            tot = np.uint64(0)
            for i in range(m):
                tot += ev[i]
                seg[seg_of_frame[ek[i]]] += ev[i]
            mean[p] = np.float64(tot) / n0
            for q in range(n_seg):
                seg_mean[q, p] = np.float64(seg[q]) / seg_len[q]
                seg[q] = 0
            for lev in range(n_levels):
                ml = level_len[lev]
                m, tot = drop_unpaired(ek, ev, m, ml, tot)
                if m == 0:
                    break
                j0, j1 = lag_ptr[lev], lag_ptr[lev + 1]
                level_products(ek, ev, m, lev, lag[j1 - 1], row_of, acc)
                inv = 1.0 / np.float64(1 << lev)
                ia, ib = m - 1, 0
                last = np.uint64(0)
                first = np.uint64(0)
                for j in range(j0, j1):
                    ia, ib, last, first = grow_ends(ek, ev, m, ml, lag[j], ia, ib, last, first)
                    n = np.float64(n_pairs[j])
                    g2[j, p] = np.float64(acc[j]) * (inv * inv) / n
                    ip[j, p] = np.float64(tot - last) * inv / n
                    if_[j, p] = np.float64(tot - first) * inv / n
                    acc[j] = 0
                if lev + 1 < n_levels:
                    m = next_level(ek, ev, m)  # pair sums keep the total


@njit(cache=True, nogil=True, error_model="numpy")
def scatter_events(frame_ptr: np.ndarray, pixel: np.ndarray, value: np.ndarray, out: np.ndarray) -> None:
    """``out[t, pixel[e]] += value[e]`` for the events e of frame t (``out`` (B, n_detector), zeroed;
    ``value`` already in its dtype). numpy's ``add.at`` does the same several times slower."""
    for t in range(frame_ptr.shape[0] - 1):
        for e in range(frame_ptr[t], frame_ptr[t + 1]):
            out[t, pixel[e]] += value[e]
