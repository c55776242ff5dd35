"""Dense multi-tau kernel: every pixel, every frame (numba, parallel over strips of pixel tiles).

Level ``l`` holds **sums** of ``2**l`` frames (pair sums, not averages); the caller divides by the
right power of two at the end. With integer input every value, product and sum is then an exact
integer (``uint32`` level values and ``uint64`` sums, or ``uint16`` and ``uint32`` when the caller has
bounded the counts so that they fit: half the state, so half the memory traffic of every pass over it;
the kernels take either), so the result does not depend on the order of the additions: pixels, frames
and levels can be processed in any blocking, on any number of threads.
Float input (dark-subtracted, flat-fielded, normalised) runs the same code with float64 values; each
pixel lane is then summed in time order (no partial sums), which is also reproducible.

Work is split into tiles of ``TILE`` analysed pixels; each tile's state is one contiguous block
(tile-major layout, no power-of-two strides between its rows):

    hist   (n_tiles, L, H, TILE)      last H = 2·dpl elements of every level, oldest first
    head   (n_tiles, L, H, TILE)      first H elements of every level (for IF)
    acc    (n_tiles, n_tau, TILE)     Σ_k x_l(k)·x_l(k-c) per delay
    seg    (n_tiles, n_seg, TILE)     Σ of the level-0 elements per time segment
    tmax   (n_tiles,)                 running maximum value of the tile (integer input)

The totals Σ_k x_l(k) are not accumulated: Σ seg gives level 0, and level l+1 is level l minus its
last element when level l has an odd length (:func:`finalize`).

A tile reads its frames in sub-blocks of ``SUB_BLOCK`` frames into a scratch buffer laid out as
``[hist | new elements]`` (so delays never wrap), multiplies every new element by its delayed
partners, then forms the next level's elements by pair sums into a second buffer, and so on up the
levels; only the last H elements of each level are carried to the next sub-block. Elements before
the start of a level are zeros in ``hist``, so their products add nothing. With integer input and
small enough values (checked per tile and sub-block from ``tmax``), products and segment sums are
first accumulated in uint32 (8 SIMD lanes instead of 4) and added to the integer sums once per
sub-block.

**The register path.** Integer counts whose every level element stays below :data:`VEC_LIMIT` (the
photon-counting case: a tile's largest value times 2**(L-1) below 4096) take another route through the
same state, with the same sums to the bit: 16 pixels at a time, one level after the other, each level's
last eight elements and its product sums held in registers across all the sub-block's frames
(:mod:`beambridge.xpcs.multitau.simd`: 16 float32 lanes as one value; float32 holds these integers,
their products and the partial sums exactly, and the partial sums go to the integer sums before they
could reach 2**24). The lane loops above load and store every accumulator and history row for every
few products; here a frame costs one load of 16 pixels, eight fused multiply-adds and a few additions.
The staging copy of a strip also takes each tile's maximum, and the frame sums come from the same
registers. Float input, larger counts and delay schedules other than APS's dpl = 4 take the lane loops.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from beambridge.xpcs.multitau.simd import (
    LANES,
    Lanes,
    prefetch,
    prefetch_l2,
    vadd,
    vadd_into,
    vfma,
    vload,
    vstore,
    vzero,
)

TILE = 256
"""Pixels per tile (SIMD lanes of the inner loops; a multiple of 8)."""
SUB_BLOCK = 256
"""Frames per sub-block (scratch = 2·(2·dpl + SUB_BLOCK + 1)·TILE values, stays in L2)."""
STRIP = 4
"""Tiles per parallel work item (a strip of STRIP·TILE pixels is read as one run per frame)."""


# Inner loops index 2-D arrays directly: taking row views (or passing arrays to a function) inside
# them costs numba an atomic reference-count update each time, more than the lane arithmetic itself.


@njit(cache=True, nogil=True, error_model="numpy", boundscheck=False)
def _level(
    buf: np.ndarray,
    n_new: int,
    k_first: int,
    lev: int,
    hist: np.ndarray,
    head: np.ndarray,
    out: np.ndarray,
    lag: np.ndarray,
    lag_ptr: np.ndarray,
) -> None:
    """Account the ``n_new`` elements ``buf[H:H+n_new]`` (indices k_first …) of level ``lev``.

    ``out[j] += buf[k] · buf[k - lag[j]]`` for the delay rows j = lag_ptr[lev] … lag_ptr[lev+1]-1
    (delays are in (level, lag) order); ``out`` is the uint64 ``acc`` or the uint32 partial sums.
    No arrays are passed to functions inside the element loop: in numba each such call costs atomic
    reference-count updates.
    """
    n_hist = hist.shape[1]
    j0 = lag_ptr[lev]
    j1 = lag_ptr[lev + 1]
    n = j1 - j0
    l0 = lag[j0] if n > 0 else 0
    # Four elements per pass when the level's lags are consecutive (as every multi-tau schedule's are):
    # each accumulator is loaded and stored once for the four, and the delayed partner of element k+1
    # at lag c is that of element k at lag c-1, so four lags written out in one lane loop share seven
    # partner loads (APS's dpl = 4: two such groups at level 0, one above; other lag sets finish with
    # one lag per lane loop). Loads and stores per product, not the multiplications, bound these
    # loops: four elements per pass took level 0 from 0.42-0.50 to 0.27-0.29 ns per pixel and frame
    # against two (one thread, in cache). Eight lags in one lane loop (0.23 ns alone) need more
    # run-time overlap checks between the rows than LLVM allows, and it then leaves the loop scalar.
    # A remainder of two or three elements takes two per pass, as before.
    # The additions stay in time order, so float sums keep their bits. A last odd element, and lags
    # that are not consecutive, take the general loop below.
    done = 0
    if n > 0 and lag[j1 - 1] == l0 + n - 1:
        while done + 3 < n_new:
            rc = n_hist + done
            q0 = 0
            while q0 + 4 <= n:
                ja = j0 + q0
                r = rc - l0 - q0
                for i in range(TILE):
                    e0 = buf[rc, i]
                    e1 = buf[rc + 1, i]
                    e2 = buf[rc + 2, i]
                    e3 = buf[rc + 3, i]
                    p3 = buf[r + 3, i]
                    p2 = buf[r + 2, i]
                    p1 = buf[r + 1, i]
                    p0 = buf[r, i]
                    m1 = buf[r - 1, i]
                    m2 = buf[r - 2, i]
                    m3 = buf[r - 3, i]
                    out[ja, i] = (((out[ja, i] + e0 * p0) + e1 * p1) + e2 * p2) + e3 * p3
                    out[ja + 1, i] = (((out[ja + 1, i] + e0 * m1) + e1 * p0) + e2 * p1) + e3 * p2
                    out[ja + 2, i] = (((out[ja + 2, i] + e0 * m2) + e1 * m1) + e2 * p0) + e3 * p1
                    out[ja + 3, i] = (((out[ja + 3, i] + e0 * m3) + e1 * m2) + e2 * m1) + e3 * p0
                q0 += 4
            for q in range(q0, n):
                jq = j0 + q
                rq = rc - l0 - q
                for i in range(TILE):
                    out[jq, i] = (
                        ((out[jq, i] + buf[rc, i] * buf[rq, i]) + buf[rc + 1, i] * buf[rq + 1, i])
                        + buf[rc + 2, i] * buf[rq + 2, i]
                    ) + buf[rc + 3, i] * buf[rq + 3, i]
            done += 4
        n4 = n - n % 4
        while done + 1 < n_new:
            rc = n_hist + done
            for q0 in range(0, n4, 4):
                ja = j0 + q0
                r = rc - l0 - q0
                for i in range(TILE):
                    x = buf[rc, i]
                    y = buf[rc + 1, i]
                    b0 = buf[r + 1, i]
                    b1 = buf[r, i]
                    b2 = buf[r - 1, i]
                    b3 = buf[r - 2, i]
                    b4 = buf[r - 3, i]
                    out[ja, i] = (out[ja, i] + x * b1) + y * b0
                    out[ja + 1, i] = (out[ja + 1, i] + x * b2) + y * b1
                    out[ja + 2, i] = (out[ja + 2, i] + x * b3) + y * b2
                    out[ja + 3, i] = (out[ja + 3, i] + x * b4) + y * b3
            for q in range(n4, n):
                jq = j0 + q
                rq = rc - l0 - q
                for i in range(TILE):
                    out[jq, i] = (out[jq, i] + buf[rc, i] * buf[rq, i]) + buf[rc + 1, i] * buf[rq + 1, i]
            done += 2
    for t in range(done, n_new):
        rc = n_hist + t
        for j in range(j0, j1):
            rp = rc - lag[j]
            for i in range(TILE):
                out[j, i] += buf[rc, i] * buf[rp, i]
    for t in range(min(n_new, n_hist - k_first)):
        for i in range(TILE):
            head[lev, k_first + t, i] = buf[n_hist + t, i]
    for h in range(n_hist):
        for i in range(TILE):
            hist[lev, h, i] = buf[n_new + h, i]


@njit(cache=True, nogil=True, error_model="numpy", boundscheck=False)
def _pairs(buf: np.ndarray, n_new: int, k_first: int, out: np.ndarray, hist: np.ndarray, lev: int) -> int:
    """Write the pair sums completed by the new elements of level ``lev`` into ``out[H:]``, after
    the history of level ``lev + 1``; return how many."""
    n_hist = hist.shape[1]
    for h in range(n_hist):
        for i in range(TILE):
            out[h, i] = hist[lev + 1, h, i]
    first_odd = k_first | 1
    n_par = 0
    for kk in range(first_odd, k_first + n_new, 2):
        ra = n_hist + kk - k_first - 1
        ro = n_hist + n_par
        for i in range(TILE):
            out[ro, i] = buf[ra, i] + buf[ra + 1, i]
        n_par += 1
    return n_par


@njit(cache=True, nogil=True, error_model="numpy", boundscheck=False)
def _tile_sub_block(
    src_rows: np.ndarray,
    src_col: int,
    frames: np.ndarray,
    s0: int,
    nb: int,
    first_index: int,
    pixels: np.ndarray,
    p0: int,
    w: int,
    lag: np.ndarray,
    lag_ptr: np.ndarray,
    hist_r: np.ndarray,
    head_r: np.ndarray,
    acc_r: np.ndarray,
    seg_r: np.ndarray,
    seg_of_frame: np.ndarray,
    fs_part: np.ndarray,
    buf_a: np.ndarray,
    buf_b: np.ndarray,
    acc32: np.ndarray,
    seg32: np.ndarray,
    tmax: np.ndarray,
    r: int,
) -> None:
    """Frames s0 … s0+nb-1 for one tile: rows from ``src_rows[t, src_col:+TILE]`` if src_col >= 0,
    else gathered from ``frames`` at ``pixels[p0:p0+w]``. ``tmax[r]`` is the tile's running maximum
    value (integer input), which decides whether uint32 partial sums are safe for this sub-block."""
    n_levels, n_hist = hist_r.shape[0], hist_r.shape[1]
    for h in range(n_hist):
        for i in range(TILE):
            buf_a[h, i] = hist_r[0, h, i]
    # unsigned column offset: numba then emits no negative-index fix-up, and the lane loops vectorise
    c0 = np.uint64(max(src_col, 0))
    use32 = False
    if acc32.shape[0] > 0:
        mx = tmax[r]  # (builtin max() on mixed integer types is an out-of-line call per element)
        for t in range(nb):
            if src_col >= 0:
                for i in range(TILE):
                    v = src_rows[t, c0 + np.uint64(i)]
                    mx = v if v > mx else mx
            else:
                for i in range(w):
                    v = frames[s0 + t, pixels[p0 + i]]
                    mx = v if v > mx else mx
        tmax[r] = mx
        m = mx
        # level l: <= nb/2^l + 1 new products, each <= (m·2^l)^2  =>  sum <= m²·2^l·(nb + 2^l)
        top = 1 << (n_levels - 1)
        use32 = float(m) * float(m) * top * (nb + top) < 4294967296.0
    sg_open = seg_of_frame[s0]
    for t in range(nb):
        rc = n_hist + t
        if src_col >= 0:
            for i in range(TILE):
                buf_a[rc, i] = src_rows[t, c0 + np.uint64(i)]
        else:
            for i in range(w):
                buf_a[rc, i] = frames[s0 + t, pixels[p0 + i]]
            for i in range(w, TILE):  # lanes past the last pixel (scratch is reused across tiles)
                buf_a[rc, i] = 0
        sg = seg_of_frame[s0 + t]
        if use32:
            if sg != sg_open:
                for i in range(TILE):
                    seg_r[sg_open, i] += seg32[i]
                    seg32[i] = 0
                sg_open = sg
            fs32 = np.uint32(0)
            for i in range(TILE):
                v = buf_a[rc, i]
                seg32[i] += v
                fs32 += v
            fs_part[s0 + t] = fs32
        else:
            fs = fs_part[s0 + t] * 0
            for i in range(TILE):
                seg_r[sg, i] += buf_a[rc, i]
                fs += buf_a[rc, i]
            fs_part[s0 + t] = fs
    if use32:
        for i in range(TILE):
            seg_r[sg_open, i] += seg32[i]
            seg32[i] = 0
    k = first_index + s0
    n_new = nb
    cur, nxt = buf_a, buf_b
    for lev in range(n_levels):
        if use32:
            _level(cur, n_new, k, lev, hist_r, head_r, acc32, lag, lag_ptr)
        else:
            _level(cur, n_new, k, lev, hist_r, head_r, acc_r, lag, lag_ptr)
        if lev + 1 >= n_levels:
            break
        n_par = _pairs(cur, n_new, k, nxt, hist_r, lev)
        if n_par == 0:
            break
        k = (k | 1) >> 1
        n_new = n_par
        cur, nxt = nxt, cur
    if use32:
        for j in range(acc32.shape[0]):
            for i in range(TILE):
                acc_r[j, i] += acc32[j, i]
                acc32[j, i] = 0


VEC_LIMIT = 4096
"""Integer inputs whose every multi-tau element (a level-l element is at most 2**l times the tile's
largest value) stays below this take the register path: their products are below 2**24, exact in
float32 (:mod:`beambridge.xpcs.multitau.simd`)."""
_F32_EXACT = (1 << 24) - 1
AHEAD = 4
"""Frames ahead whose strip run the staging copy asks the caches for (software prefetch): 6-9 % less
CPU for the register path at 256² and 1 Mpx, measured against none; 8 and 16 ahead gained less."""


def register_schedule(lag: np.ndarray, lag_ptr: np.ndarray, n_hist: int) -> bool:
    """Whether the delay schedule is the one the register path is written for: APS's dpl = 4, i.e.
    lags 1 … 8 at level 0 and 5 … 8 (the last level possibly fewer) above, history 8."""
    if n_hist != 8 or lag_ptr.shape[0] < 2 or lag_ptr[1] - lag_ptr[0] != 8:
        return False
    if not np.array_equal(lag[lag_ptr[0] : lag_ptr[1]], np.arange(1, 9)):
        return False
    for lev in range(1, lag_ptr.shape[0] - 1):
        n = int(lag_ptr[lev + 1] - lag_ptr[lev])
        if not 1 <= n <= 4 or not np.array_equal(lag[lag_ptr[lev] : lag_ptr[lev + 1]], np.arange(5, 5 + n)):
            return False
    return True


@njit(cache=True, nogil=True, error_model="numpy", boundscheck=False, inline="always")
def _every(m: int, lev: int) -> int:
    """Elements of level ``lev`` whose products (each at most (m·2**lev)**2) sum below 2**24."""
    top = m << lev
    return _F32_EXACT // (top * top) if top > 0 else 1 << 30


@njit(cache=True, nogil=True, error_model="numpy", boundscheck=False, inline="always")
def _hist_load(hist_r: np.ndarray, base: int) -> tuple[Lanes, ...]:
    """A level's last eight elements of 16 lanes, oldest first (``h8 … h1``), from history rows
    ``base``, ``base + TILE`` … (the state keeps them oldest first)."""
    return (
        vload(hist_r, base + 0 * TILE),
        vload(hist_r, base + 1 * TILE),
        vload(hist_r, base + 2 * TILE),
        vload(hist_r, base + 3 * TILE),
        vload(hist_r, base + 4 * TILE),
        vload(hist_r, base + 5 * TILE),
        vload(hist_r, base + 6 * TILE),
        vload(hist_r, base + 7 * TILE),
    )


@njit(cache=True, nogil=True, error_model="numpy", boundscheck=False, inline="always")
def _hist_store(
    hist_r: np.ndarray, base: int, h8: Lanes, h7: Lanes, h6: Lanes, h5: Lanes, h4: Lanes, h3: Lanes, h2: Lanes,
    h1: Lanes,
) -> None:  # fmt: skip
    """The inverse of :func:`_hist_load`."""
    vstore(hist_r, base + 0 * TILE, h8)
    vstore(hist_r, base + 1 * TILE, h7)
    vstore(hist_r, base + 2 * TILE, h6)
    vstore(hist_r, base + 3 * TILE, h5)
    vstore(hist_r, base + 4 * TILE, h4)
    vstore(hist_r, base + 5 * TILE, h3)
    vstore(hist_r, base + 6 * TILE, h2)
    vstore(hist_r, base + 7 * TILE, h1)


@njit(cache=True, nogil=True, error_model="numpy", boundscheck=False, inline="always")
def _flush4(acc_r: np.ndarray, base: int, n: int, a: Lanes, b: Lanes, c: Lanes, d: Lanes) -> None:
    """Add the float32 product sums of ``n`` ≤ 4 consecutive delays into their integer rows ``base``,
    ``base + TILE`` … (exact: the caller flushes before a sum could reach 2**24)."""
    vadd_into(acc_r, base, a)
    if n > 1:
        vadd_into(acc_r, base + TILE, b)
    if n > 2:
        vadd_into(acc_r, base + 2 * TILE, c)
    if n > 3:
        vadd_into(acc_r, base + 3 * TILE, d)


@njit(cache=True, nogil=True, error_model="numpy", boundscheck=False, inline="always")
def _vec_level0(
    rows: np.ndarray,
    stride: int,
    rcol: int,
    col: int,
    nb: int,
    k: int,
    seg_of_frame: np.ndarray,
    s0: int,
    hist_r: np.ndarray,
    head_r: np.ndarray,
    acc_r: np.ndarray,
    seg_r: np.ndarray,
    fsv: np.ndarray,
    dst: np.ndarray,
    every: int,
) -> int:
    """Level 0 of the state's 16 lanes ``col …`` for frames ``rows[t·stride + rcol …]``, t < nb (k …):
    the eight lags' products, the segment sums, the head, the history, the frame sums' lanes (added
    into ``fsv[t·16 …]``) and the pair sums (level 1's new elements) into ``dst``; return how many
    pairs. Every carried value is a register."""
    h8, h7, h6, h5, h4, h3, h2, h1 = _hist_load(hist_r, col)
    a1 = vzero()
    a2 = vzero()
    a3 = vzero()
    a4 = vzero()
    a5 = vzero()
    a6 = vzero()
    a7 = vzero()
    a8 = vzero()
    sacc = vzero()
    sg_open = seg_of_frame[s0]
    n_par = 0
    cnt = 0
    for t in range(nb):
        sg = seg_of_frame[s0 + t]  # (an L1 hit; comparing t with the next switch measured 5-11 % slower)
        if sg != sg_open:
            vadd_into(seg_r, sg_open * TILE + col, sacc)
            sacc = vzero()
            sg_open = sg
        x = vload(rows, t * stride + rcol)
        sacc = vadd(sacc, x)
        vstore(fsv, t * LANES, vadd(vload(fsv, t * LANES), x))
        a1 = vfma(x, h1, a1)
        a2 = vfma(x, h2, a2)
        a3 = vfma(x, h3, a3)
        a4 = vfma(x, h4, a4)
        a5 = vfma(x, h5, a5)
        a6 = vfma(x, h6, a6)
        a7 = vfma(x, h7, a7)
        a8 = vfma(x, h8, a8)
        if k & 1:
            vstore(dst, n_par * LANES, vadd(h1, x))
            n_par += 1
        if k < 8:
            vstore(head_r, k * TILE + col, x)
        h8 = h7
        h7 = h6
        h6 = h5
        h5 = h4
        h4 = h3
        h3 = h2
        h2 = h1
        h1 = x
        k += 1
        cnt += 1
        if cnt == every:
            _flush4(acc_r, col, 4, a1, a2, a3, a4)
            _flush4(acc_r, 4 * TILE + col, 4, a5, a6, a7, a8)
            a1 = vzero()
            a2 = vzero()
            a3 = vzero()
            a4 = vzero()
            a5 = vzero()
            a6 = vzero()
            a7 = vzero()
            a8 = vzero()
            cnt = 0
    _flush4(acc_r, col, 4, a1, a2, a3, a4)
    _flush4(acc_r, 4 * TILE + col, 4, a5, a6, a7, a8)
    vadd_into(seg_r, sg_open * TILE + col, sacc)
    _hist_store(hist_r, col, h8, h7, h6, h5, h4, h3, h2, h1)
    return n_par


@njit(cache=True, nogil=True, error_model="numpy", boundscheck=False, inline="always")
def _vec_level(
    src: np.ndarray,
    n_new: int,
    k: int,
    lev: int,
    col: int,
    hist_r: np.ndarray,
    head_r: np.ndarray,
    acc_r: np.ndarray,
    j0: int,
    n_lags: int,
    dst: np.ndarray,
    every: int,
) -> int:
    """Level ``lev`` ≥ 1 of the 16 lanes ``col …``: its ``n_new`` new elements ``src[q·16 …]`` (index
    k …), the products at lags 5 … 4 + n_lags (delay rows j0 …), head, history, and the pair sums
    into ``dst`` (return how many)."""
    hb = lev * 8 * TILE + col
    h8, h7, h6, h5, h4, h3, h2, h1 = _hist_load(hist_r, hb)
    a5 = vzero()
    a6 = vzero()
    a7 = vzero()
    a8 = vzero()
    n_par = 0
    cnt = 0
    ab = j0 * TILE + col
    for q in range(n_new):
        x = vload(src, q * LANES)
        a5 = vfma(x, h5, a5)
        a6 = vfma(x, h6, a6)
        a7 = vfma(x, h7, a7)
        a8 = vfma(x, h8, a8)
        if k & 1:
            vstore(dst, n_par * LANES, vadd(h1, x))
            n_par += 1
        if k < 8:
            vstore(head_r, hb + k * TILE, x)
        h8 = h7
        h7 = h6
        h6 = h5
        h5 = h4
        h4 = h3
        h3 = h2
        h2 = h1
        h1 = x
        k += 1
        cnt += 1
        if cnt == every or q == n_new - 1:
            _flush4(acc_r, ab, n_lags, a5, a6, a7, a8)
            a5 = vzero()
            a6 = vzero()
            a7 = vzero()
            a8 = vzero()
            cnt = 0
    _hist_store(hist_r, hb, h8, h7, h6, h5, h4, h3, h2, h1)
    return n_par


@njit(cache=True, nogil=True, error_model="numpy", boundscheck=False, inline="always")
def _keep_maxima(mxs: np.ndarray, tmax: np.ndarray, r0: int, limit: int) -> bool:
    """Store the strip's tile maxima ``mxs`` into ``tmax[r0 …]``, unless ``limit`` >= 0 and one is
    above it: then leave ``tmax`` as it was and return False."""
    if limit >= 0:
        for q in range(mxs.shape[0]):
            if np.int64(mxs[q]) > limit:
                return False
    for q in range(mxs.shape[0]):
        tmax[r0 + q] = mxs[q]
    return True


@njit(cache=True, nogil=True, error_model="numpy", boundscheck=False)
def _stage_tiles(
    frames: np.ndarray,
    s0: int,
    nb: int,
    src: int,
    n_t: int,
    stage: np.ndarray,
    tmax: np.ndarray,
    r0: int,
    limit: int,
) -> bool:
    """Copy ``frames[s0 : s0 + nb, src : src + n_t·TILE]`` (tiles r0 …, contiguous on the detector) into
    ``stage`` in the same pass as each tile's running maximum (register path: integer values; a tile
    whose maximum turns out too large for it is summed by the lane loops). Frame by frame, so each frame
    is one contiguous run for the hardware prefetcher. With ``limit`` >= 0, a value above it leaves
    ``tmax`` as it was and returns False (the caller then leaves the state alone)."""
    mxs = np.zeros(n_t, dtype=frames.dtype)
    for q in range(n_t):
        mxs[q] = tmax[r0 + q]
    s = np.uint64(src)
    flat = frames.reshape(-1)
    width = frames.shape[1]
    for t in range(nb):
        if t + AHEAD < nb:  # the run of frame t + AHEAD: 2 kB on another page, where the hardware
            row = (s0 + t + AHEAD) * width + src  # prefetcher does not follow by itself
            for b in range(0, n_t * TILE, 64 // frames.itemsize):  # one per cache line
                prefetch(flat, row + b)
        for q in range(n_t):
            c0 = np.uint64(q * TILE)
            mx = frames[s0 + t, s + c0] * 0  # the frames' own type: the maximum is one SIMD instruction
            for i in range(TILE):
                v = frames[s0 + t, s + c0 + np.uint64(i)]
                stage[t, c0 + np.uint64(i)] = v
                mx = v if v > mx else mx
            if mx > mxs[q]:
                mxs[q] = mx
    return _keep_maxima(mxs, tmax, r0, limit)


@njit(cache=True, nogil=True, error_model="numpy", boundscheck=False)
def _gather_tiles(
    frames: np.ndarray,
    s0: int,
    nb: int,
    pixels: np.ndarray,
    p0: int,
    n_t: int,
    stage: np.ndarray,
    tmax: np.ndarray,
    r0: int,
    limit: int,
) -> bool:
    """:func:`_stage_tiles` for a strip whose pixels are not consecutive on the detector: gather the
    analysed pixels ``pixels[p0 …]`` of tiles r0 … r0 + n_t − 1 into ``stage`` (tile q at columns
    q·TILE …, lanes past the last pixel zero), with each tile's running maximum, frame by frame. With
    ``limit`` >= 0, a value above it leaves ``tmax`` as it was and returns False."""
    n_pix = pixels.shape[0]
    mxs = np.zeros(n_t, dtype=frames.dtype)
    for q in range(n_t):
        mxs[q] = tmax[r0 + q]
    for t in range(nb):
        for q in range(n_t):
            a = p0 + q * TILE
            w = min(TILE, n_pix - a)
            c0 = q * TILE
            for i in range(w):
                stage[t, c0 + i] = frames[s0 + t, pixels[a + i]]
            for i in range(w, TILE):
                stage[t, c0 + i] = 0
    for q in range(n_t):  # apart from the gather, which stays scalar: this loop is SIMD
        c0 = q * TILE
        mx = mxs[q]
        for t in range(nb):
            for i in range(TILE):
                v = stage[t, c0 + i]
                mx = v if v > mx else mx
        mxs[q] = mx
    return _keep_maxima(mxs, tmax, r0, limit)


@njit(cache=True, nogil=True, error_model="numpy", boundscheck=False)
def _exceeds(frames: np.ndarray, s0: int, nb: int, pixels: np.ndarray, p0: int, p1: int, limit: int) -> bool:
    """Whether a value of the analysed pixels ``pixels[p0:p1]`` in frames ``s0 … s0 + nb − 1`` is above
    ``limit`` (the lane loops gather such a strip tile by tile themselves)."""
    mx = frames[s0, 0] * 0
    for t in range(nb):
        for i in range(p0, p1):
            v = frames[s0 + t, pixels[i]]
            mx = v if v > mx else mx
    return bool(np.int64(mx) > limit)


@njit(cache=True, nogil=True, error_model="numpy", boundscheck=False, inline="always")
def _prefetch_lanes(hist_r: np.ndarray, acc_r: np.ndarray, seg_r: np.ndarray, c: int) -> None:
    """Ask for the state lines of the 16 lanes ``c …`` (history, product sums, segment sums)."""
    for row in range(hist_r.shape[0] * hist_r.shape[1]):
        prefetch_l2(hist_r, row * TILE + c)
    for row in range(acc_r.shape[0]):
        prefetch_l2(acc_r, row * TILE + c)
        prefetch_l2(acc_r, row * TILE + c + 8)
    for row in range(seg_r.shape[0]):
        prefetch_l2(seg_r, row * TILE + c)
        prefetch_l2(seg_r, row * TILE + c + 8)


@njit(cache=True, nogil=True, error_model="numpy", boundscheck=False)
def _tile_sub_block_vec(
    rows: np.ndarray,
    col: int,
    nb: int,
    k0: int,
    s0: int,
    m: int,
    lag_ptr: np.ndarray,
    hist_r: np.ndarray,
    head_r: np.ndarray,
    acc_r: np.ndarray,
    seg_r: np.ndarray,
    seg_of_frame: np.ndarray,
    lvl: np.ndarray,
    fsv: np.ndarray,
    fs_part: np.ndarray,
    hist_n: np.ndarray,
    acc_n: np.ndarray,
    seg_n: np.ndarray,
) -> None:
    """One tile's sub-block on the register path (see :func:`_vec_level0`): 16 lanes at a time, all
    levels of those lanes before the next 16. ``m`` bounds the tile's values (m·2**(L-1) < VEC_LIMIT);
    ``lvl`` (2, SUB_BLOCK // 2 + 1, 16) float32 scratch holds one level's new elements for the next;
    ``fsv`` (SUB_BLOCK·16,) float32 the frame sums by lane, added up into ``fs_part[s0 + t]`` at the end
    (exact: at most TILE·VEC_LIMIT)."""
    n_levels = hist_r.shape[0]
    stride = rows.shape[1]
    flat = rows.reshape(-1)
    for q in range(nb * LANES):
        fsv[q] = 0
    for v in range(TILE // LANES):
        c = v * LANES
        if v + 1 < TILE // LANES:
            _prefetch_lanes(hist_r, acc_r, seg_r, c + LANES)
        else:
            _prefetch_lanes(hist_n, acc_n, seg_n, 0)
        n_new = _vec_level0(
            flat, stride, col + c, c, nb, k0, seg_of_frame, s0, hist_r, head_r, acc_r, seg_r, fsv, lvl[0],
            _every(m, 0),
        )  # fmt: skip
        k = (k0 | 1) >> 1
        cur = 0
        for lev in range(1, n_levels):
            if n_new == 0:
                break
            j0 = lag_ptr[lev]
            n_par = _vec_level(
                lvl[cur], n_new, k, lev, c, hist_r, head_r, acc_r, j0, lag_ptr[lev + 1] - j0, lvl[1 - cur],
                _every(m, lev),
            )  # fmt: skip
            k = (k | 1) >> 1
            n_new = n_par if lev + 1 < n_levels else 0
            cur = 1 - cur
    for t in range(nb):
        fs = np.float32(0)
        for i in range(LANES):
            fs += fsv[t * LANES + i]
        fs_part[s0 + t] = np.uint64(fs)


@njit(cache=True, parallel=True, nogil=True, error_model="numpy", boundscheck=False)
def dense_update(
    frames: np.ndarray,
    first_index: int,
    pixels: np.ndarray,
    tile_src: np.ndarray,
    strip_src: np.ndarray,
    lag: np.ndarray,
    lag_ptr: np.ndarray,
    hist: np.ndarray,
    head: np.ndarray,
    acc: np.ndarray,
    seg: np.ndarray,
    seg_of_frame: np.ndarray,
    frame_sum_part: np.ndarray,
    tmax: np.ndarray,
    n_workers: int,
    vec: bool,
    limit: int,
    resume: np.ndarray,
) -> int:
    """Feed ``frames`` (B, n_detector_pixels), the level-0 elements ``first_index … first_index+B-1``;
    return how many (tile, sub-block) pieces took the register path.

    ``limit`` >= 0 (integer input): the state's types hold values up to ``limit`` only (the caller did
    not know the block's maximum, and the check is cheaper here, where the frames pass anyway). Each
    strip then checks every sub-block before any of its tiles takes it, and stops at the first with a
    larger value. ``resume`` (n_strips,): on entry the frame of the block each strip starts from (0, or
    where it stopped in a previous call: a multiple of ``SUB_BLOCK``); on return B for the strips that
    took every frame, else the sub-block where they stopped. The caller widens the state and calls
    again with the same ``resume`` and ``frame_sum_part``: the same sums as one call.

    Tile r holds the analysed pixels ``pixels[r·TILE : (r+1)·TILE]``; ``tile_src[r]`` is the detector
    index of its first pixel when they are consecutive (else -1: gather). Strips of ``STRIP`` tiles
    are the parallel work items; ``strip_src[s]`` is the detector index of a strip whose pixels are
    all consecutive (its frames are then staged once per sub-block, one contiguous run per frame, so
    the hardware prefetcher sees long runs instead of 128-byte pieces a frame apart), else -1.
    ``frame_sum_part[r, t]`` receives the sum of frame t over tile r; ``seg_of_frame[t]`` is frame
    t's time segment. Products of uint32 values are uint64 (numba widens integer arithmetic).
    ``tmax`` (n_tiles,) is each tile's running maximum (integer input; empty for float input).
    ``n_workers`` parallel work items (the thread count) each own one scratch set. ``vec``: the
    schedule is :func:`register_schedule`'s, so integer tiles whose values allow it take the register
    path (:func:`_tile_sub_block_vec`); the others, and float input, the lane loops (same sums).
    """
    rows = hist.shape[2] + SUB_BLOCK + 1  # hist.shape[3] == TILE
    # one scratch set per worker, allocated once per call (allocating ~1 MB per strip made the
    # kernel page-fault bound at 1 Mpx with small blocks); rows are always written before read.
    # Worker ch takes strips ch, ch + n_workers, …: static, so no thread id is needed.
    n_workers = max(1, min(n_workers, strip_src.shape[0]))
    all_a = np.empty((n_workers, rows, TILE), dtype=hist.dtype)
    all_b = np.empty((n_workers, rows, TILE), dtype=hist.dtype)
    all_acc32 = np.zeros((n_workers, acc.shape[1] if tmax.shape[0] > 0 else 0, TILE), dtype=np.uint32)
    all_seg32 = np.zeros((n_workers, TILE), dtype=np.uint32)
    all_stage = np.empty((n_workers, SUB_BLOCK, STRIP * TILE), dtype=frames.dtype)
    all_lvl = np.empty((n_workers, 2, SUB_BLOCK // 2 + 1, LANES), dtype=np.float32)
    all_fsv = np.empty((n_workers, SUB_BLOCK * LANES), dtype=np.float32)
    vec = vec and tmax.shape[0] > 0
    n_vec = 0
    for ch in prange(n_workers):
        buf_a = all_a[ch]
        buf_b = all_b[ch]
        acc32 = all_acc32[ch]
        seg32 = all_seg32[ch]
        stage = all_stage[ch]
        lvl = all_lvl[ch]
        fsv = all_fsv[ch]
        for st in range(ch, strip_src.shape[0], n_workers):
            if resume[st] >= frames.shape[0]:
                continue
            n_vec += _strip(
                st,
                strip_src[st],
                frames,
                first_index,
                pixels,
                tile_src,
                lag,
                lag_ptr,
                hist,
                head,
                acc,
                seg,
                seg_of_frame,
                frame_sum_part,
                tmax,
                buf_a,
                buf_b,
                acc32,
                seg32,
                stage,
                lvl,
                fsv,
                vec,
                limit,
                resume,
            )
    return n_vec


@njit(cache=True, nogil=True, error_model="numpy", boundscheck=False)
def _strip(
    st: int,
    ssrc: int,
    frames: np.ndarray,
    first_index: int,
    pixels: np.ndarray,
    tile_src: np.ndarray,
    lag: np.ndarray,
    lag_ptr: np.ndarray,
    hist: np.ndarray,
    head: np.ndarray,
    acc: np.ndarray,
    seg: np.ndarray,
    seg_of_frame: np.ndarray,
    frame_sum_part: np.ndarray,
    tmax: np.ndarray,
    buf_a: np.ndarray,
    buf_b: np.ndarray,
    acc32: np.ndarray,
    seg32: np.ndarray,
    stage: np.ndarray,
    lvl: np.ndarray,
    fsv: np.ndarray,
    vec: bool,
    limit: int,
    resume: np.ndarray,
) -> int:
    """The frames of the block from ``resume[st]`` on for strip ``st`` (detector index ``ssrc`` if
    contiguous, else -1), up to a sub-block with a value above ``limit`` (see :func:`dense_update`); how
    many (tile, sub-block) pieces took the register path."""
    n_vec = 0
    n_tiles = hist.shape[0]
    n_b = frames.shape[0]
    n_pix = pixels.shape[0]
    r0 = st * STRIP
    r1 = min(n_tiles, r0 + STRIP)
    for s0 in range(resume[st], n_b, SUB_BLOCK):
        nb = min(SUB_BLOCK, n_b - s0)
        # the strip's frames staged (or gathered, for the register path) with its tiles' maxima, which
        # must fit ``limit`` before any tile takes the sub-block
        if ssrc >= 0 and tmax.shape[0] > 0:
            fits = _stage_tiles(frames, s0, nb, ssrc, r1 - r0, stage, tmax, r0, limit)
        elif ssrc >= 0:  # float frames
            for t in range(nb):
                for i in range(STRIP * TILE):
                    stage[t, i] = frames[s0 + t, ssrc + i]
            fits = True
        elif vec:  # each pixel gathered once, all the strip's tiles before any of them runs
            fits = _gather_tiles(frames, s0, nb, pixels, r0 * TILE, r1 - r0, stage, tmax, r0, limit)
        else:
            fits = limit < 0 or not _exceeds(frames, s0, nb, pixels, r0 * TILE, min(n_pix, r1 * TILE), limit)
        if not fits:
            resume[st] = s0
            return n_vec
        for r in range(r0, r1):
            p0 = r * TILE
            w = min(TILE, n_pix - p0)
            if vec:
                col = (r - r0) * TILE  # staged or gathered above
                m = tmax[r]
                if (np.int64(m) << (hist.shape[1] - 1)) < VEC_LIMIT:
                    nr = r + 1 if r + 1 < r1 else r0  # the next tile of this strip (or its first again)
                    _tile_sub_block_vec(
                        stage, col, nb, first_index + s0, s0, int(m), lag_ptr, hist[r], head[r], acc[r],
                        seg[r], seg_of_frame, lvl, fsv, frame_sum_part[r], hist[nr], acc[nr], seg[nr],
                    )  # fmt: skip
                    n_vec += 1
                    continue
            if ssrc >= 0:
                rows_src, col = stage, (r - r0) * TILE
            else:
                rows_src, col = frames[s0 : s0 + nb], tile_src[r]
            _tile_sub_block(
                rows_src,
                col,
                frames,
                s0,
                nb,
                first_index,
                pixels,
                p0,
                w,
                lag,
                lag_ptr,
                hist[r],
                head[r],
                acc[r],
                seg[r],
                seg_of_frame,
                frame_sum_part[r],
                buf_a,
                buf_b,
                acc32,
                seg32,
                tmax,
                r,
            )
    resume[st] = n_b
    return n_vec


def float_zero_tolerance(n_frames: int, n_hist: int) -> float:
    """Relative bound of the rounding of a float64 sum of ``n_frames + n_hist`` non-negative terms
    (with margin): a difference of two such sums within it of zero is zero."""
    return 4.0 * (n_frames + n_hist) * 2.0**-52


@njit(cache=True, nogil=True, error_model="numpy", boundscheck=False, inline="always")
def level_totals(
    tail: np.ndarray, seg: np.ndarray, g: int, w: int, level_len: np.ndarray, tot: np.ndarray
) -> None:
    """Σ_k x_l(k) of every level (L, lanes) for group ``g``'s first ``w`` lanes: level 0 from the
    segment sums (added in segment order), level l+1 is level l minus its last element when level l
    has an odd length (that element has no pair). Shared by :func:`finalize` and
    :func:`beambridge.xpcs.multitau.bins.bin_group`, which therefore give the same bits."""
    n_levels, n_hist = tail.shape[1], tail.shape[2]
    for i in range(w):
        tot[0, i] = 0
    for q in range(seg.shape[1]):
        for i in range(w):
            tot[0, i] += seg[g, q, i]
    for lev in range(1, n_levels):
        odd = level_len[lev - 1] & 1
        for i in range(w):
            tot[lev, i] = tot[lev - 1, i] - tail[g, lev - 1, n_hist - 1, i] if odd else tot[lev - 1, i]


@njit(cache=True, parallel=True, nogil=True, error_model="numpy", boundscheck=False)
def finalize(
    acc: np.ndarray,
    head: np.ndarray,
    tail: np.ndarray,
    seg: np.ndarray,
    n_pix: int,
    level: np.ndarray,
    lag: np.ndarray,
    n_pairs: np.ndarray,
    level_len: np.ndarray,
    seg_len: np.ndarray,
    g2: np.ndarray,
    ip: np.ndarray,
    if_: np.ndarray,
    mean: np.ndarray,
    seg_mean: np.ndarray,
    zero_tol: float,
) -> None:
    """Per-pixel G2, IP, IF (n_tau, P), time mean (P,) and segment means (n_seg, P) from the sums.

    ``zero_tol`` (0 for integer sums): with float sums IP and IF are differences of sums added in
    different orders, so a window without photons can come out as a rounding residue (1e-18) instead of
    0, and such a pixel would count as valid in the error bars. A difference within
    ``zero_tol·|Σ_k x_0(k)|`` of zero is therefore taken as zero (:func:`float_zero_tolerance`).

    Inputs are grouped (n_groups, ..., lanes), pixel p = group·lanes + lane: ``acc`` (·, n_tau, ·)
    in delay order, ``head``/``tail`` (·, L, H, ·) the first/last H elements of every level (oldest
    first), ``seg`` (·, n_seg, ·). Sums of level elements are exact for integers and in time order
    for floats, so dense and sparse state give the same bits.
    """
    n_groups, n_tau, lanes = acc.shape
    n_levels, n_hist = head.shape[1], head.shape[2]
    n_seg = seg.shape[1]
    for g in prange(n_groups):
        base = g * lanes
        tot = np.zeros((n_levels, lanes), dtype=acc.dtype)
        w = min(lanes, n_pix - base)
        level_totals(tail, seg, g, w, level_len, tot)
        for i in range(w):
            mean[base + i] = np.float64(tot[0, i]) / np.float64(level_len[0])
            for q in range(n_seg):
                seg_mean[q, base + i] = np.float64(seg[g, q, i]) / seg_len[q]
        # prefix sums of the first elements / suffix sums of the last ones, in time order
        hp = np.zeros((n_levels, n_hist + 1, lanes), dtype=tot.dtype)
        ts = np.zeros((n_levels, n_hist + 1, lanes), dtype=tot.dtype)
        for lev in range(n_levels):
            for q in range(n_hist):
                for i in range(lanes):
                    hp[lev, q + 1, i] = hp[lev, q, i] + head[g, lev, q, i]
            for c in range(1, n_hist + 1):
                for i in range(lanes):
                    ts[lev, c, i] = ts[lev, c - 1, i] + tail[g, lev, n_hist - c, i]
        for j in range(n_tau):
            lev = level[j]
            c = lag[j]
            inv = 1.0 / np.float64(1 << lev)  # exact (power of two)
            n = np.float64(n_pairs[j])
            for i in range(min(lanes, n_pix - base)):
                p = base + i
                g2[j, p] = np.float64(acc[g, j, i]) * (inv * inv) / n
                ip_sum = tot[lev, i] - ts[lev, c, i]
                if_sum = tot[lev, i] - hp[lev, c, i]
                limit = zero_tol * abs(np.float64(tot[0, i]))
                if zero_tol > 0.0 and abs(np.float64(ip_sum)) <= limit:
                    ip_sum = 0
                if zero_tol > 0.0 and abs(np.float64(if_sum)) <= limit:
                    if_sum = 0
                ip[j, p] = np.float64(ip_sum) * inv / n
                if_[j, p] = np.float64(if_sum) * inv / n
