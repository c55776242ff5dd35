"""Event-driven multi-tau for photon counts: the work follows the photons, not the pixels.

Events ``(frame, pixel, count)`` are kept as they arrive, only non-zero counts on analysed pixels, as
one 64-bit **record** each (:func:`pack`: the frame, the pixel within its block of ``2**GROUP_SHIFT``
detector pixels, the count), ordered by block as they are kept (:func:`append_blocked`: a stable
counting sort over a call's frames, so a block's records stay in time order; a call too small for
that is staged first, :func:`stage_events`, and the staged calls are ordered together). When the last
frame is in, each block is sorted by pixel where it is walked (:func:`sort_block`, into a buffer that
stays in cache), then every pixel that saw a photon is visited once. Its level-``l`` elements are its
events with frame ``t`` taken to element ``t >> l`` (the pair sums of the dense kernel; a trailing
element without a pair is dropped), its products at level ``l`` the pairs of elements ``c`` apart for
the lags ``c`` of the level. A pixel with a few events sums them pair of events by pair of events
(:func:`pair_products`: two events ``t_a < t_b`` meet at lag ``(t_b >> l) − (t_a >> l)`` of every
level); one with many is walked level by level (:func:`merge_runs`, :func:`level_products`). A pixel
without photons costs nothing at all: no state, no pass.

IP and IF need no per-pixel work: Σ_p IP_p of a bin is the bin's counts before frame ``(M_l − c)·2^l``,
Σ_p IF_p its counts from ``c·2^l`` to the level's end, so each event is added once to its bin's sum
over the frame interval it falls in (the frames cut at every such boundary), and cumulative sums of
those give every delay's.

Counts are integers, so every sum is exact and its order does not matter: the bin sums this path
produces are the same integers the dense kernel accumulates, and what is computed from them
(:func:`event_bin_sums` straight to the bin sums of :mod:`beambridge.xpcs.multitau.bins`,
:func:`event_pixel_sums` to per-pixel G2/IP/IF) uses the same floating-point expressions in the same
pixel order: the result is bit-identical to the dense path's.

XPCS-Eigen's error bar (``spread``, optional) is a statistic of every pixel's ratio G2_p/(IP_p·IF_p):
with it, a pixel's IP and IF are formed where it has a product, and a silent pixel still counts among
the valid pixels; that number is counted per level from one threshold per pixel (``u_l``: the pixel is
valid at lag ``c`` iff its first element is before ``M_l - c`` and its last at or after ``c``, i.e.
iff ``c <= u_l``), so it costs one increment per level, not one per delay.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import numpy as np
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def _claim(typingctx: Any, counter: Any) -> tuple[Any, Any]:
    """The next work item: ``counter[0]``, incremented atomically (numba has no atomics of its own).
    Workers that take items this way share them out as they run, so a worker the system holds back
    (a shared machine) leaves its items to the others instead of making them wait at the end."""
    sig = types.int64(counter)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        array_type = signature.args[0]
        array = context.make_array(array_type)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(
            context, builder, array_type, array, [context.get_constant(types.intp, 0)]
        )
        return builder.atomic_rmw("add", ptr, context.get_constant(types.int64, 1), "monotonic")

    return sig, codegen


claim = cast("Callable[[np.ndarray], int]", _claim)


PARTS_PER_WORKER = 4
""":func:`append_blocked` cuts a call's frames into this many parts per worker, taken as they come."""

GROUP_SHIFT = 10
"""Events are kept ordered by block of ``2**GROUP_SHIFT`` detector pixels (a record holds the pixel
within its block); ``g2`` sorts each block by pixel where it walks it."""
LOCAL_MASK = (1 << GROUP_SHIFT) - 1


def frame_bits(n_frames: int) -> int:
    """Bits of a record's frame field for ``n_frames`` frames; the count has the other
    ``64 − frame_bits − GROUP_SHIFT``. The event path takes counts below 2^32 / 2^(L−1) only (wider
    ones go to the dense kernel in float), and with L − 1 ≥ log2(N) − log2(dpl) − 3 levels above the
    first that is at most 36 + log2(dpl) bits for frame and count together."""
    return max(1, (int(n_frames) - 1).bit_length())


@njit(cache=True, nogil=True, error_model="numpy", boundscheck=False, inline="always")
def pack(frame: int, local: int, value: Any, fbits: np.uint64) -> np.uint64:
    """A record: ``frame | local << fbits | value << (fbits + GROUP_SHIFT)``."""
    return (
        np.uint64(frame)
        | (np.uint64(local) << fbits)
        | (np.uint64(value) << (fbits + np.uint64(GROUP_SHIFT)))
    )


@njit(cache=True, nogil=True, error_model="numpy", boundscheck=False, inline="always")
def is_kept(q: int, v: Any, analysed: np.ndarray, masked: bool) -> bool:
    """Whether the event (detector pixel q, value v) is kept: a non-zero count on an analysed pixel
    (``analysed``: one bit per detector pixel; ``masked`` False: every pixel is)."""
    if v == 0:
        return False
    if not masked:
        return True
    return ((analysed[q >> 3] >> (q & 7)) & 1) != 0


def analysed_bits(pixels: np.ndarray, n_detector: int) -> np.ndarray:
    """One bit per detector pixel, set for the analysed ``pixels`` (empty if every pixel is)."""
    if pixels.size == n_detector:
        return np.zeros(0, dtype=np.uint8)
    flags = np.zeros(n_detector, dtype=bool)
    flags[pixels] = True
    return np.packbits(flags, bitorder="little")


@njit(cache=True, nogil=True, error_model="numpy", boundscheck=False, inline="always")
def block_starts(counts: np.ndarray, block_ptr: np.ndarray, pos: int) -> int:
    """The prefix sum of a counting sort by block over workers: ``counts`` (workers, blocks) of events
    become, in place, where each worker's events of each block start — blocks one after another from
    ``pos``, the workers in order within a block (so the sort is stable); ``block_ptr`` (blocks+1,)
    receives each block's start and the end, which is returned."""
    n_workers, n_blocks = counts.shape
    for b in range(n_blocks):
        block_ptr[b] = pos
        for w in range(n_workers):
            count = counts[w, b]
            counts[w, b] = pos
            pos += count
    block_ptr[n_blocks] = pos
    return pos


@njit(cache=True, parallel=True, nogil=True, error_model="numpy", boundscheck=False)
def append_blocked(
    frame_ptr: np.ndarray,
    pixel: np.ndarray,
    value: np.ndarray,
    first_index: int,
    analysed: np.ndarray,
    fbits: int,
    n_workers: int,
    out: np.ndarray,
    n_out: int,
    frame_sum: np.ndarray,
    block_ptr: np.ndarray,
) -> int:
    """Append the kept events (:func:`is_kept`) of frames ``first_index …`` (frame t owns
    ``pixel/value[frame_ptr[t]:frame_ptr[t+1]]``, detector pixels) at ``n_out`` as records
    (:func:`pack`), ordered by block of ``2**GROUP_SHIFT`` detector pixels: a stable counting sort,
    so a block's records are in time order. ``block_ptr`` (n_blocks+1,) receives where each block's
    records begin (absolute positions) and the end; ``frame_sum`` (unless empty) gets every frame's
    sum. The frames are cut into parts (:data:`PARTS_PER_WORKER` per worker) that the workers take as they
    come (:func:`claim`); a part's counts per block place its records after those of the parts before
    it. ``out`` has room for every event. Returns the new count."""
    n_frames = frame_ptr.shape[0] - 1
    n_blocks = block_ptr.shape[0] - 1
    nw = max(1, min(n_workers, n_frames))
    per = max(1, -(-n_frames // (nw * PARTS_PER_WORKER)))
    n_parts = -(-n_frames // per)
    masked = analysed.shape[0] > 0
    sums = frame_sum.shape[0] > 0
    counts = np.zeros((n_parts, n_blocks), dtype=np.int64)
    next_part = np.zeros(2, dtype=np.int64)
    for _ in prange(nw):
        part = claim(next_part)
        while part < n_parts:
            for t in range(part * per, min(n_frames, (part + 1) * per)):
                fs = np.uint64(0)
                for e in range(frame_ptr[t], frame_ptr[t + 1]):
                    q = pixel[e]
                    v = value[e]
                    if is_kept(q, v, analysed, masked):
                        counts[part, q >> GROUP_SHIFT] += 1
                        fs += np.uint64(v)
                if sums:
                    frame_sum[first_index + t] += fs
            part = claim(next_part)
    pos = block_starts(counts, block_ptr, n_out)
    fb = np.uint64(fbits)
    for _ in prange(nw):
        part = claim(next_part[1:])
        while part < n_parts:
            for t in range(part * per, min(n_frames, (part + 1) * per)):
                k = first_index + t
                for e in range(frame_ptr[t], frame_ptr[t + 1]):
                    q = pixel[e]
                    v = value[e]
                    if is_kept(q, v, analysed, masked):
                        b = q >> GROUP_SHIFT
                        i = counts[part, b]
                        counts[part, b] = i + 1
                        out[i] = pack(k, q & LOCAL_MASK, v, fb)
            part = claim(next_part[1:])
    return pos


@njit(cache=True, nogil=True, error_model="numpy", boundscheck=False)
def stage_events(
    frame_ptr: np.ndarray,
    pixel: np.ndarray,
    value: np.ndarray,
    first_index: int,
    analysed: np.ndarray,
    st_ptr: np.ndarray,
    st_frames: int,
    st_pixel: np.ndarray,
    st_value: np.ndarray,
    n: int,
    frame_sum: np.ndarray,
) -> int:
    """Stage a small call's kept events (:func:`is_kept`) as they come, at ``n`` of ``st_pixel`` /
    ``st_value`` (room for all), its frames after the ``st_frames`` staged ones (``st_ptr[st_frames +
    t + 1]``: where staged frame ``st_frames + t`` ends); add them into ``frame_sum``. Returns the new
    count. The staged calls are later ordered by block together (:func:`append_blocked`)."""
    masked = analysed.shape[0] > 0
    for t in range(frame_ptr.shape[0] - 1):
        fs = np.uint64(0)
        for e in range(frame_ptr[t], frame_ptr[t + 1]):
            q = pixel[e]
            v = value[e]
            if is_kept(q, v, analysed, masked):
                st_pixel[n] = q
                st_value[n] = v
                fs += np.uint64(v)
                n += 1
        frame_sum[first_index + t] += fs
        st_ptr[st_frames + t + 1] = n
    return n


@njit(cache=True, nogil=True, error_model="numpy", boundscheck=False)
def max_frame_sum(frame_ptr: np.ndarray, value: np.ndarray) -> float:
    """The largest sum of one frame's unsigned values (frame t owns ``value[frame_ptr[t]:frame_ptr[t+1]]``)."""
    top = np.uint64(0)
    for t in range(frame_ptr.shape[0] - 1):
        total = np.uint64(0)  # unsigned counts: exact (and vectorised) below 2^64
        for e in range(frame_ptr[t], frame_ptr[t + 1]):
            total += np.uint64(value[e])
        top = max(top, total)
    return float(top)


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
def frame_events(frames: np.ndarray, pixels: np.ndarray, frame_ptr: np.ndarray, pixel: np.ndarray,
                 value: np.ndarray) -> None:  # fmt: skip
    """The non-zero values of dense ``frames`` (B, n_detector) on ``pixels`` as events: frame t's at
    ``frame_ptr[t]:frame_ptr[t+1]`` (from :func:`count_frame_events`) of ``pixel`` (detector pixels,
    ascending) and ``value``."""
    for t in prange(frames.shape[0]):
        n = frame_ptr[t]
        for i in range(pixels.shape[0]):
            v = frames[t, pixels[i]]
            if v != 0:
                pixel[n] = pixels[i]
                value[n] = v
                n += 1


@njit(cache=True, nogil=True, error_model="numpy", boundscheck=False, inline="always")
def sort_block(
    block_ptr: np.ndarray,
    rec: np.ndarray,
    fbits: int,
    b: int,
    fill: np.ndarray,
    ptr: np.ndarray,
    out_frame: np.ndarray,
    out_value: np.ndarray,
    out_at: int,
) -> None:
    """Stable counting sort by pixel of block b's records (``block_ptr`` (n_ranges, n_blocks+1): range
    r holds them at ``block_ptr[r, b]:block_ptr[r, b+1]``, the ranges in time order), unpacked into
    ``out_frame``/``out_value`` from ``out_at``: the block's pixel i has its events at ``ptr[i] :
    ptr[i + 1]`` in time order. ``fill`` and ``ptr`` have room for ``2**GROUP_SHIFT`` (+1)."""
    width = 1 << GROUP_SHIFT
    fb = np.uint64(fbits)
    vb = fb + np.uint64(GROUP_SHIFT)
    fmask = (np.uint64(1) << fb) - np.uint64(1)
    lmask = np.uint64(LOCAL_MASK)
    for i in range(width):
        fill[i] = 0
    for r in range(block_ptr.shape[0]):
        for e in range(block_ptr[r, b], block_ptr[r, b + 1]):
            fill[(rec[e] >> fb) & lmask] += 1
    k = out_at
    for i in range(width):  # counts -> each pixel's first position
        count = fill[i]
        fill[i] = k
        ptr[i] = k
        k += count
    ptr[width] = k
    for r in range(block_ptr.shape[0]):  # the ranges in time order
        for e in range(block_ptr[r, b], block_ptr[r, b + 1]):
            x = rec[e]
            i = (x >> fb) & lmask
            k = fill[i]
            fill[i] = k + 1
            out_frame[k] = x & fmask
            out_value[k] = x >> vb


@njit(cache=True, parallel=True, nogil=True, error_model="numpy", boundscheck=False)
def group_records(
    block_ptr: np.ndarray,
    rec: np.ndarray,
    fbits: int,
    pixels: np.ndarray,
    state_start: np.ndarray,
    out_start: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every analysed pixel's events in time order: ``(ptr (P+1,), frame, value)``, state pixel p's at
    ``ptr[p]:ptr[p+1]`` (``pixels`` (P,): their detector pixels, ascending). Detector block b holds the
    state pixels ``state_start[b] … state_start[b+1]-1`` and its events go to ``out_start[b] …`` (the
    blocks' event counts summed before it); each block is sorted on its own (:func:`sort_block`)."""
    n_blocks = out_start.shape[0] - 1
    n = out_start[n_blocks]
    n_state = pixels.shape[0]
    ptr = np.empty(n_state + 1, dtype=np.int64)
    ptr[n_state] = n
    out_frame = np.empty(n, dtype=np.int64)
    out_value = np.empty(n, dtype=np.uint64)
    for b in prange(n_blocks):
        if state_start[b] == state_start[b + 1]:
            continue
        fill = np.empty(1 << GROUP_SHIFT, dtype=np.int64)
        local = np.empty((1 << GROUP_SHIFT) + 1, dtype=np.int64)
        sort_block(block_ptr, rec, fbits, b, fill, local, out_frame, out_value, out_start[b])
        lo = b << GROUP_SHIFT
        for p in range(state_start[b], state_start[b + 1]):
            ptr[p] = local[pixels[p] - lo]
    return ptr, out_frame, out_value


@njit(cache=True, nogil=True, error_model="numpy", boundscheck=False, inline="always")
def merge_runs(
    key: np.ndarray, val: np.ndarray, i0: int, i1: int, shift: int, ek: np.ndarray, ev: np.ndarray
) -> int:
    """Elements ``(key >> shift, val)`` of ``i0 … i1-1`` (keys ascending) into ``ek``/``ev``, the values of
    equal keys summed; returns how many. A pixel's level-0 elements are its events (``shift`` 0: events
    of one frame summed); level ``l+1``'s are level ``l``'s pair sums, made in place (``key``/``val`` are
    ``ek``/``ev``, ``shift`` 1: an element is written only where one was already read)."""
    m = 0
    for i in range(i0, i1):
        k = key[i] >> shift
        x = val[i]
        if m > 0 and ek[m - 1] == k:
            ev[m - 1] += x
        else:
            ek[m] = k
            ev[m] = x
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


PAIR_EVENTS = 12
"""Default of :func:`event_bin_sums`'s ``pair_events``: a pixel with at most this many events has its
products summed pair by pair (:func:`pair_products`), one with more is walked level by level
(:func:`level_products`): ``n²/2`` pairs against ``2·dpl·n`` steps per level. Both give the same sums."""


@njit(cache=True, nogil=True, error_model="numpy", boundscheck=False, inline="always")
def pair_products(
    ev_frame: np.ndarray,
    ev_value: np.ndarray,
    e0: int,
    e1: int,
    first_level: np.ndarray,
    reach: np.ndarray,
    pair_row: np.ndarray,
    pair_end: np.ndarray,
    acc: np.ndarray,
) -> int:
    """``acc[j] += x_a·x_b`` for every pair of one pixel's events a < b (``e0 … e1-1``, time order) and
    every level l at which their elements are ``c`` apart, c a lag of l, and both elements in the
    level: level l's product at lag c, Σ_k x_l(k)·x_l(k+c), is the sum of the products of the events
    of element k with those of k+c. Two events ``d`` frames apart are first within a lag at level
    ``l0 = first_level[d]`` and can be a lag at ``reach[d]`` levels from there at most (1 for most
    distances, 2 for the others: :func:`pair_tables`); each of those is added without a branch,
    ``j = pair_row[l, c]`` being ``acc``'s spare last slot where c is no lag of level l and where
    ``t_b >= pair_end[l]`` (the element is past the level's end). Returns how many products were added
    (not counting the spare slot's)."""
    n = 0
    spare = acc.shape[0] - 1
    for a in range(e0, e1 - 1):
        ta = ev_frame[a]
        xa = np.uint64(ev_value[a])
        for b in range(a + 1, e1):
            tb = ev_frame[b]
            x = xa * np.uint64(ev_value[b])
            d = tb - ta
            l0 = first_level[d]
            j = pair_row[l0, (tb >> l0) - (ta >> l0)]
            if tb >= pair_end[l0]:
                j = spare
            acc[j] += x
            n += 1 if j != spare else 0
            for lev in range(l0 + 1, l0 + reach[d]):  # mostly none
                j = pair_row[lev, (tb >> lev) - (ta >> lev)]
                if tb >= pair_end[lev]:
                    j = spare
                acc[j] += x
                n += 1 if j != spare else 0
    return n


@njit(cache=True, nogil=True, error_model="numpy", boundscheck=False)
def pair_tables(
    level_len: np.ndarray, lag: np.ndarray, lag_ptr: np.ndarray, row_of: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The tables of :func:`pair_products`: ``(first_level, reach, pair_row, pair_end)``.
    ``first_level[d]``: the first level l where ``d >> l`` is below ``width`` (the largest lag + 1),
    so where two events d frames apart may be a lag apart. From there, at level ``l0 + k`` they are at
    most ``(d >> (l0 + k)) + 1`` apart, a lag only if that reaches the smallest lag of the levels from
    ``l0 + k`` up: ``reach[d]`` is the first k ≥ 1 where it does not (every k after fails too; 2 at most
    for the XPCS-Eigen schedule, and 1 for most distances). For any d, ``((width − 1) >> k) + 1`` bounds
    that distance: ``span`` levels from any l0 cover every pair. ``pair_row[l, c]``
    (l up to the last level a pair can reach, c up to ``width``): the delay row, or the spare slot
    ``n_tau`` where c is no lag of l; ``pair_end[l]``: the first frame past level l's paired elements
    (``M_l·2^l``; 0 past the last level)."""
    n_levels = level_len.shape[0]
    n_tau = lag.shape[0]
    width = row_of.shape[1]
    first_level = np.empty(level_len[0] + 1, dtype=np.int64)
    for dist in range(level_len[0] + 1):
        lev = 0
        while (dist >> lev) >= width:
            lev += 1
        first_level[dist] = lev
    lowest = np.full(n_levels + 1, width, dtype=np.int64)  # the smallest lag of this level and above
    for lev in range(n_levels - 1, -1, -1):
        has = lag_ptr[lev] < lag_ptr[lev + 1]
        lowest[lev] = min(lowest[lev + 1], lag[lag_ptr[lev]] if has else width)
    span = 1
    while ((width - 1) >> span) + 1 >= lowest[min(span, n_levels)]:
        span += 1
    reach = np.ones(level_len[0] + 1, dtype=np.int64)
    for dist in range(level_len[0] + 1):
        lev = first_level[dist] + 1
        while lev < n_levels and (dist >> lev) + 1 >= lowest[lev]:
            lev += 1
        reach[dist] = lev - first_level[dist]
    rows = first_level[level_len[0]] + span
    pair_row = np.full((rows, width + 1), n_tau, dtype=np.int64)
    pair_end = np.zeros(rows, dtype=np.int64)
    for lev in range(min(rows, n_levels)):
        pair_end[lev] = level_len[lev] << lev
        for c in range(1, width):  # c = 0 (one element) is never a product
            if row_of[lev, c] >= 0:
                pair_row[lev, c] = row_of[lev, c]
    return first_level, reach, pair_row, pair_end


@njit(cache=True, parallel=True, nogil=True, error_model="numpy", boundscheck=False)
def event_bin_sums(
    block_ptr: np.ndarray,
    rec: np.ndarray,
    fbits: int,
    pixels: np.ndarray,
    max_events: int,
    level_len: np.ndarray,
    lag: np.ndarray,
    lag_ptr: np.ndarray,
    row_of: np.ndarray,
    scale1: np.ndarray,
    scale2: np.ndarray,
    interval_of_frame: np.ndarray,
    static: np.ndarray,
    dynamic: np.ndarray,
    chunk_ptr: np.ndarray,
    n_workers: int,
    spread: bool,
    pair_events: int,
    pixel_mean: np.ndarray,
    static_sums: np.ndarray,
    interval_sums: np.ndarray,
    dynamic_sums: np.ndarray,
    valid_hist: np.ndarray,
) -> None:
    """Bin sums of :class:`~beambridge.xpcs.multitau.bins.BinPartials` from the records kept by block of
    detector pixels (:func:`append_blocked`; ``block_ptr`` (n_ranges, n_blocks+1) where each range's
    blocks begin, ``max_events`` the most events of a block): each block is sorted by pixel where its
    pixels are walked (:func:`sort_block`, into a buffer that stays in cache), so the pixel-grouped
    events never go to memory as a whole. ``pixels`` (P,): the detector pixel of every state pixel
    (empty: the same).

    The workers take the pixel chunks as they come (:func:`claim`). Integer sums per worker w (uint64,
    any order: exact, whichever worker took which chunk), sub-bin major so that one pixel's sums are
    one block: ``static_sums[w, s, j]`` Σ_p acc_p(j) (j < n_tau; a spare last slot takes what
    :func:`pair_products` adds for pairs that are no product); ``interval_sums[w, s, k]`` Σ_p of the pixel's
    counts in frame interval k (``interval_of_frame``: the caller cuts the frames at every boundary
    that IP, IF and the segment means need, so its cumulative sums give Σ_p IP_p, Σ_p IF_p and the
    intensities; a pixel costs one addition per event for them). ``pixel_mean[p]`` (zeroed) every
    pixel's time mean. A pixel with at most ``pair_events`` events has its products summed by pairs of
    events, one with more by a walk over its elements level by level. With ``spread`` (XPCS-Eigen's error bar), per pixel chunk c (pixel order, as
    the dense path adds them): ``dynamic_sums[c, d, j]`` the non-zero ratios g_p = G2_p/(IP_p·IF_p)
    (:func:`add_ratio`) and ``valid_hist[c, d, l, u]`` the pixels of threshold u at level l.
    """
    n_chunks = chunk_ptr.shape[0] - 1
    n_levels = level_len.shape[0]
    n_tau = lag.shape[0]
    n0 = np.float64(level_len[0])
    level_end = np.empty(n_levels, dtype=np.int64)
    for lev in range(n_levels):
        level_end[lev] = level_len[lev] << lev  # frames before it make level lev's paired elements
    first_level, reach, pair_row, pair_end = pair_tables(level_len, lag, lag_ptr, row_of)
    mapped = pixels.shape[0] > 0
    next_chunk = np.zeros(1, dtype=np.int64)  # chunks are taken as they come (claim)
    block = 1 << GROUP_SHIFT
    for w in prange(n_workers):
        ek = np.empty(max_events, dtype=np.int64)
        ev = np.empty(max_events, dtype=static_sums.dtype)
        acc = np.zeros(n_tau + 1, dtype=static_sums.dtype)  # a spare slot (pair_products)
        ev_frame = np.empty(max_events, dtype=np.int64)
        ev_value = np.empty(max_events, dtype=static_sums.dtype)
        fill = np.empty(block, dtype=np.int64)
        ptr = np.empty(block + 1, dtype=np.int64)
        c = claim(next_chunk)
        while c < n_chunks:
            sorted_block = -1
            for p in range(chunk_ptr[c], chunk_ptr[c + 1]):
                q = pixels[p] if mapped else p
                if q >> GROUP_SHIFT != sorted_block:
                    sorted_block = q >> GROUP_SHIFT
                    sort_block(block_ptr, rec, fbits, sorted_block, fill, ptr, ev_frame, ev_value, 0)
                e0, e1 = ptr[q & LOCAL_MASK], ptr[(q & LOCAL_MASK) + 1]
                if e0 == e1:
                    continue
                s = static[p]
                d = dynamic[p]
                tot = acc[0] * 0
                for e in range(e0, e1):
                    x = ev_value[e]
                    tot += x
                    interval_sums[w, s, interval_of_frame[ev_frame[e]]] += x
                pixel_mean[p] = np.float64(tot) / n0
                if e1 - e0 <= pair_events:
                    if not spread:
                        pair_products(
                            ev_frame,
                            ev_value,
                            e0,
                            e1,
                            first_level,
                            reach,
                            pair_row,
                            pair_end,
                            static_sums[w, s],
                        )
                        continue
                    products = pair_products(
                        ev_frame, ev_value, e0, e1, first_level, reach, pair_row, pair_end, acc
                    )
                    f0 = ev_frame[e0]
                    il = e1 - 1
                    for lev in range(n_levels):
                        ml = level_len[lev]
                        while il >= e0 and ev_frame[il] >= level_end[lev]:
                            tot -= ev_value[il]  # the level's last element without a pair
                            il -= 1
                        if il < e0:
                            break
                        j0, j1 = lag_ptr[lev], lag_ptr[lev + 1]
                        u = min(ev_frame[il] >> lev, ml - 1 - (f0 >> lev))
                        valid_hist[c, d, lev, max(0, min(u, lag[j1 - 1]))] += 1
                        if products == 0:
                            continue  # valid (counted above) with a zero ratio at every lag
                        for j in range(j0, j1):
                            a = acc[j]
                            if a != 0:
                                acc[j] = 0
                                static_sums[w, s, j] += a
                                before, after = (ml - lag[j]) << lev, lag[j] << lev
                                last = acc[0] * 0
                                first = acc[0] * 0
                                for e in range(e0, il + 1):
                                    if ev_frame[e] >= before:
                                        last += ev_value[e]
                                    if ev_frame[e] < after:
                                        first += ev_value[e]
                                g = pixel_ratio(a, tot - last, tot - first, scale1[j], scale2[j])
                                add_ratio(dynamic_sums, c, d, j, g)
                    continue
                m = merge_runs(ev_frame, ev_value, e0, e1, 0, ek, ev)
                for lev in range(n_levels):
                    ml = level_len[lev]
                    m, tot = drop_unpaired(ek, ev, m, ml, tot)
                    if m == 0:
                        break
                    j0, j1 = lag_ptr[lev], lag_ptr[lev + 1]
                    max_lag = lag[j1 - 1]
                    if spread:
                        u = min(ek[m - 1], ml - 1 - ek[0])
                        valid_hist[c, d, lev, max(0, min(u, max_lag))] += 1
                    if level_products(ek, ev, m, lev, max_lag, row_of, acc) > 0:
                        ia, ib = m - 1, 0
                        last = ev[0] * 0
                        first = ev[0] * 0
                        for j in range(j0, j1):
                            a = acc[j]
                            if spread:
                                ia, ib, last, first = grow_ends(ek, ev, m, ml, lag[j], ia, ib, last, first)
                            if a != 0:
                                acc[j] = 0
                                static_sums[w, s, j] += a
                                if spread:
                                    g = pixel_ratio(a, tot - last, tot - first, scale1[j], scale2[j])
                                    add_ratio(dynamic_sums, c, d, j, g)
                    if lev + 1 < n_levels:
                        m = merge_runs(ek, ev, 0, m, 1, ek, ev)  # pair sums keep the total
            c = claim(next_chunk)


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
            m = merge_runs(ev_frame, ev_value, e0, e1, 0, ek, ev)
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
                    m = merge_runs(ek, ev, 0, m, 1, ek, ev)  # pair sums keep the total


@njit(cache=True, nogil=True, error_model="numpy")
def scatter_events(frame_ptr: np.ndarray, pixel: np.ndarray, value: np.ndarray, out: np.ndarray) -> None:
    """``out[t, pixel[e]] += value[e]`` for the events e of frame t (``out`` (B, n_detector), zeroed;
    ``value`` already in its dtype). numpy's ``add.at`` does the same several times slower."""
    for t in range(frame_ptr.shape[0] - 1):
        for e in range(frame_ptr[t], frame_ptr[t + 1]):
            out[t, pixel[e]] += value[e]


@njit(cache=True, parallel=True, nogil=True, error_model="numpy", boundscheck=False)
def static_totals(
    acc: np.ndarray,
    per_interval: np.ndarray,
    ip_end: np.ndarray,
    if_start: np.ndarray,
    if_end: np.ndarray,
    seg_bounds: np.ndarray,
    static_sums: np.ndarray,
    static_intensity: np.ndarray,
) -> None:
    """The static-bin sums of :class:`~beambridge.xpcs.multitau.bins.BinPartials` (one set:
    ``static_sums`` (1, 3, n_tau, n_sub), ``static_intensity`` (1, 1 + n_seg, n_sub)) from the workers'
    sums of :func:`event_bin_sums` (``acc`` (W, n_sub, n_tau + 1), ``per_interval`` (W, n_sub, K)),
    added over the workers (exact integers). Per sub-bin, the cumulative sum of its interval sums up to
    boundary i (``cum[i]``: its counts before the i-th boundary) gives Σ IP = ``cum[ip_end[j]]``,
    Σ IF = ``cum[if_end[j]] − cum[if_start[j]]`` and the segments' intensities from ``seg_bounds``
    (the first at 0, the last at the total)."""
    n_workers, n_sub, n_int = per_interval.shape
    n_tau = static_sums.shape[2]
    n_seg = seg_bounds.shape[0] - 1
    for s in prange(n_sub):
        cum = np.empty(n_int + 1, dtype=np.uint64)
        run = np.uint64(0)
        cum[0] = run
        for k in range(n_int):
            for w in range(n_workers):
                run += per_interval[w, s, k]
            cum[k + 1] = run
        for j in range(n_tau):
            total = np.uint64(0)
            for w in range(n_workers):
                total += acc[w, s, j]
            static_sums[0, 0, j, s] = total
            static_sums[0, 1, j, s] = cum[ip_end[j]]
            static_sums[0, 2, j, s] = cum[if_end[j]] - cum[if_start[j]]
        static_intensity[0, 0, s] = cum[seg_bounds[n_seg]] - cum[seg_bounds[0]]
        for q in range(n_seg):
            static_intensity[0, 1 + q, s] = cum[seg_bounds[q + 1]] - cum[seg_bounds[q]]
