"""From the correlator's per-pixel sums straight to g2(q, τ), without per-pixel result arrays.

:func:`~beambridge.xpcs.multitau.dense.finalize` writes G2, IP and IF for every pixel and delay (three
float64 arrays of ``n_tau × P``: 670 MB at 1 Mpx and 200 frames), which the normalisation then reads
back: at 1 Mpx that took longer than correlating the frames. Here each pixel's sums are added at once
into the sums of the pixel's static and dynamic bins, in one pass over the finished state
(:func:`bin_sums`). Doing it inside the dense kernel as the last block passes, while the state is in
cache, was measured and dropped: per strip no faster at 1 Mpx and 20 % slower at 256², per tile 1 %
faster at 1 Mpx.

Integer state (counts) takes :func:`exact_bin_sums`: Σ_p IP_p and Σ_p IF_p over a bin are linear in the
pixels' state (a level's total less the sum of its last or first c elements), so each pixel's state is
added as it is to its sub-bin's row (8 × 8 transposes of pixel lanes into rows,
:func:`~.simd.transpose_add8`) and IP and IF are formed once per sub-bin (:func:`exact_totals`), not
once per pixel and delay; integer sums are exact, so the workers take the chunks in any order, each into
its own rows. Float state (dark or flat corrected) takes :func:`chunk_bin_sums` (:func:`bin_group` per
group of pixels), whose float sums keep one order: per chunk, pixel by pixel.

With ⟨·⟩_s the mean over the pixels of static bin s (XPCS-Eigen ``Corr::normalizeG2s``):

    g2_s(τ)  = ⟨G2⟩_s / (⟨IP⟩_s · ⟨IF⟩_s)
    g2(q, τ) = unweighted mean of the finite g2_s over the static bins s of dynamic bin q
    err(q, τ) = std_p(g_p) / √n,   g_p = G2_p / (IP_p · IF_p)  over the n pixels of q with IP_p·IF_p > 0

(population standard deviation). The bin sums behind ⟨G2⟩_s, ⟨IP⟩_s, ⟨IF⟩_s are sums of the pixels'
integer sums (Σ_p acc_p, Σ_p (tot − last c), Σ_p (tot − first c)), scaled once at the end: exact for
counts, so they do not depend on the order in which pixels are added, and the event-driven path
(:mod:`beambridge.xpcs.multitau.sparse`) adds only the pixels and elements that saw photons. The
spread is accumulated in one pass over the **non-zero** ratios g_p, as sums of g_p − K around a shift K
that is a value of the data itself (each chunk's first such g_p of the bin); the valid pixels whose
ratio is zero (no product at that delay) are only counted and added in at the end, and chunks are
merged with Chan et al.'s formula: no second pass over the state, and no cancellation.

Determinism: pixels are cut into a fixed number of chunks that depends only on the shapes (never on
the thread count); each chunk adds its pixels' ratios in order into its own partial sums; chunks are
merged in order. Dense and event state are cut at the same pixels and compute each ratio with the same
expression (:func:`~beambridge.xpcs.multitau.sparse.pixel_ratio`). The result is the same bits for any
number of threads, any block sizes, and either path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from numba import njit, prange

from beambridge.xpcs.multitau.dense import level_totals
from beambridge.xpcs.multitau.simd import prefetch_l2, transpose_add8
from beambridge.xpcs.multitau.sparse import claim

CHUNK_PIXELS = 1024
"""Chunks are cut at multiples of this many pixels (a multiple of the dense kernel's 256-pixel tiles)."""
CHUNKS = 16
"""Pixel chunks (parallel work items, each with its own partial bin sums)."""
PARTIAL_BYTES = 256 << 20
"""Upper bound of all chunks' partial sums together; fewer chunks if the bins are very many."""


@dataclass
class BinLabels:
    """Bin of every analysed pixel (0-based) and the static→dynamic map.

    Attributes:
        static: (P,) static bin of each analysed pixel. dynamic: (P,) its dynamic bin.
        n_static, n_dynamic: numbers of bins. static_to_dynamic: (n_static,) 0-based dynamic bin.
    """

    static: npt.NDArray[np.int64]
    dynamic: npt.NDArray[np.int64]
    n_static: int
    n_dynamic: int
    static_to_dynamic: npt.NDArray[np.int64]


@dataclass
class G2Result:
    """Normalised multi-tau result: ``g2``, ``g2_err`` (n_tau, n_dynamic); ``tau`` (n_tau,) frames;
    ``scattering_1d`` (n_static,) and ``scattering_1d_segments`` (n_seg, n_static) mean intensities;
    ``mean_intensity`` (P,) every analysed pixel's time mean; ``frame_sum`` (N,) every frame's sum.

    ``g2_err`` is XPCS-Eigen's error bar (the spread of the per-pixel ratios; None where not computed:
    ``MultiTauCorrelator.g2(labels, pixel_spread=True)`` computes it); ``g2_cov`` the covariance of the
    g2 actually computed (a ratio of bin means), which is what a fit should use."""

    tau: npt.NDArray[np.int64]
    g2: npt.NDArray[np.float64]
    g2_err: npt.NDArray[np.float64] | None
    scattering_1d: npt.NDArray[np.float64]
    scattering_1d_segments: npt.NDArray[np.float64]
    mean_intensity: npt.NDArray[np.float64]
    frame_sum: npt.NDArray[np.float64]
    g2_cov: npt.NDArray[np.float64] | None = None
    """(n_dynamic, n_tau, n_tau): covariance of g2 across delays, per dynamic bin, from pixel-group
    resampling (see :class:`BinPartials`); None where not computed."""

    @property
    def g2_err_resampled(self) -> npt.NDArray[np.float64] | None:
        """(n_tau, n_dynamic): √ of the covariance's diagonal, the honest error bar of g2."""
        if self.g2_cov is None:
            return None
        return np.sqrt(np.einsum("qjj->jq", self.g2_cov))


def chunk_pixels(n_pixels: int, n_tau: int, n_static: int, n_dynamic: int, n_seg: int) -> np.ndarray:
    """First pixel of every chunk and the end, shape (n_chunks + 1,): a function of the shapes only."""
    per_chunk = 8 * (n_tau * (3 * n_static + 5 * n_dynamic) + (1 + n_seg) * n_static)
    n_units = max(1, -(-n_pixels // CHUNK_PIXELS))
    n = max(1, min(CHUNKS, n_units, PARTIAL_BYTES // max(per_chunk, 1)))
    units = np.linspace(0, n_units, n + 1).round().astype(np.int64)
    return np.minimum(units * CHUNK_PIXELS, n_pixels)


def chunk_bounds(labels: BinLabels, n_tau: int, n_seg: int) -> np.ndarray:
    """The chunks (:func:`chunk_pixels`) that :class:`BinPartials` cuts the pixels of ``labels`` into."""
    n_sub = labels.n_static * resample_groups(labels.n_static)
    return chunk_pixels(labels.static.size, n_tau, n_sub, labels.n_dynamic, n_seg)


RESAMPLE_GROUPS = 32
"""Pixel groups per static bin for the jackknife covariance of g2 (fewer if the bins are very many)."""
MAX_SUB_BINS = 8192
"""Upper bound of static bins × groups (the partial sums are kept per group)."""


def resample_groups(n_static: int) -> int:
    """Groups per static bin: :data:`RESAMPLE_GROUPS`, fewer when ``n_static`` is large (at least 2)."""
    return max(2, min(RESAMPLE_GROUPS, MAX_SUB_BINS // max(n_static, 1)))


def group_labels(static: npt.NDArray[np.int64], n_static: int, groups: int) -> npt.NDArray[np.int64]:
    """Sub-bin ``s·groups + k`` of every pixel: the pixels of static bin s, in detector order, cut into
    ``groups`` runs of equal size (±1), so each group is a few compact patches of the bin."""
    labels: np.ndarray = group_labels_and_counts(np.asarray(static, dtype=np.int64), n_static, groups)[0]
    return labels


GROUP_PARTS = 8
""":func:`group_labels_and_counts` counts the pixels of every bin in this many parts of the pixels at
once (the labels do not depend on it)."""


@njit(cache=True, parallel=True, nogil=True, error_model="numpy", boundscheck=False)
def group_labels_and_counts(static: np.ndarray, n_static: int, groups: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`group_labels` and the number of pixels of every sub-bin, (n_static, groups). A pixel's
    rank in its bin is how many of the bin came before it: the bins are counted in parts of the pixels
    (in parallel), then each part numbers its pixels on from the counts of the parts before it. Group k
    of a bin of n pixels holds the ranks r with ``floor(r·groups/n) = k``: ``ceil((k+1)·n/groups) −
    ceil(k·n/groups)`` of them."""
    n = static.shape[0]
    per = (n + GROUP_PARTS - 1) // GROUP_PARTS
    seen = np.zeros((GROUP_PARTS, n_static), dtype=np.int64)
    for t in prange(GROUP_PARTS):
        for p in range(t * per, min(n, (t + 1) * per)):
            seen[t, static[p]] += 1
    n_s = np.zeros(n_static, dtype=np.int64)
    for s in range(n_static):
        for t in range(GROUP_PARTS):
            count = seen[t, s]
            seen[t, s] = n_s[s]
            n_s[s] += count
    out = np.empty(n, dtype=np.int64)
    for t in prange(GROUP_PARTS):
        for p in range(t * per, min(n, (t + 1) * per)):
            s = static[p]
            out[p] = s * groups + (seen[t, s] * groups) // max(n_s[s], 1)
            seen[t, s] += 1
    counts = np.empty((n_static, groups), dtype=np.int64)
    for s in range(n_static):
        for k in range(groups):
            counts[s, k] = ((k + 1) * n_s[s] + groups - 1) // groups - (k * n_s[s] + groups - 1) // groups
    return out, counts


class BinPartials:
    """Per-chunk partial sums (see :func:`bin_group`) and the labels they are for.

    The static-bin sums are kept per **pixel group** (:func:`group_labels`): the bin's sums are the sums
    over its groups, and leaving group k out of every bin gives the jackknife replicate g2₍₋ₖ₎(q, τ);
    their spread is the covariance of g2 across delays (``(K−1)/K · Σ_k (g2₍₋ₖ₎ − ḡ2)(g2₍₋ₖ₎ − ḡ2)ᵀ``),
    the honest error of the ratio of bin means that g2 is, with the correlation of neighbouring delays
    that a fit must know.

    Static sums are kept in ``sum_dtype``, the correlator's (uint64 for counts: exact whatever the order,
    which lets the event-driven path add only the pixels that saw photons); ``scale1``/``scale2`` (n_tau,)
    turn them into Σ IP_p, Σ IF_p and Σ G2_p (``2^-l/n`` and ``4^-l/n``). They are kept in one set per
    chunk, or in ``static_sets`` sets (one per worker) where exact integer sums make the order free.
    """

    def __init__(
        self,
        labels: BinLabels,
        n_pixels: int,
        n_tau: int,
        n_seg: int,
        sum_dtype: npt.DTypeLike,
        scale1: npt.NDArray[np.float64],
        scale2: npt.NDArray[np.float64],
        n_frames: int,
        seg_len: npt.NDArray[np.float64],
        static_sets: int | None = None,
        pixel_range: tuple[int, int] | None = None,
    ) -> None:
        n_all = labels.static.size
        lo, hi = (0, n_all) if pixel_range is None else pixel_range
        if labels.dynamic.size != n_all or hi - lo != n_pixels:
            raise ValueError(f"{labels.static.size} bin labels for {n_pixels} analysed pixels")
        self.labels = labels
        self.groups = resample_groups(labels.n_static)
        n_sub = labels.n_static * self.groups
        static_all, self.count_group = group_labels_and_counts(
            np.asarray(labels.static, dtype=np.int64), labels.n_static, self.groups
        )
        bounds = chunk_bounds(labels, n_tau, n_seg)
        c_lo, c_hi = np.searchsorted(bounds, lo), np.searchsorted(bounds, hi)
        if bounds[c_lo] != lo or bounds[c_hi] != hi:
            raise ValueError(f"pixels {lo}…{hi} do not start and end at chunk boundaries {bounds.tolist()}")
        self.chunk_range = (int(c_lo), int(c_hi))
        """The chunks (of all the analysed pixels) that these partials hold."""
        self.pixel_range = (int(lo), int(hi))
        self.static = np.ascontiguousarray(static_all[lo:hi])
        self.dynamic = np.ascontiguousarray(labels.dynamic[lo:hi], dtype=np.int64)
        self.pixel_bounds = bounds[c_lo : c_hi + 1] - lo
        n_chunks = self.pixel_bounds.size - 1
        self.scale1, self.scale2 = scale1, scale2
        self.n_frames, self.seg_len = n_frames, seg_len
        sets = n_chunks if static_sets is None else static_sets
        self.static_sums = np.zeros((sets, 3, n_tau, n_sub), dtype=sum_dtype)
        self.static_intensity = np.zeros((sets, 1 + n_seg, n_sub), dtype=sum_dtype)
        self.dynamic_sums = np.zeros((n_chunks, labels.n_dynamic, n_tau, 4))
        self.valid = np.zeros((n_chunks, n_tau, labels.n_dynamic), dtype=np.int64)
        self.pixel_mean = np.zeros(n_pixels)

    def group_bounds(self, lanes: int) -> np.ndarray:
        """Chunk boundaries in groups of ``lanes`` pixels."""
        return -(-self.pixel_bounds // lanes)

    def folded(self, onto: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The static sums and intensities of all sets added in order, onto ``onto`` (the sums of the
        pixels before these, as :func:`fold` gives them) when given."""
        return (
            fold(self.static_sums, None if onto is None else onto[0]),
            fold(self.static_intensity, None if onto is None else onto[1]),
        )

    def reduce(self, tau: np.ndarray, frame_sum: np.ndarray, spread: bool = True) -> G2Result:
        """Merge the chunks (in order) into g2, its covariance (and with ``spread`` XPCS-Eigen's error
        bar from the dynamic sums), and the static-bin intensities."""
        static_sums, static_intensity = self.folded()
        return self.result(
            static_sums, static_intensity, self.dynamic_sums, self.valid, self.pixel_mean, tau, frame_sum,
            spread,
        )  # fmt: skip

    def result(
        self,
        static_sums: np.ndarray,
        static_intensity: np.ndarray,
        dynamic_sums: np.ndarray,
        valid: np.ndarray,
        pixel_mean: np.ndarray,
        tau: np.ndarray,
        frame_sum: np.ndarray,
        spread: bool,
    ) -> G2Result:
        """g2 and the rest from the folded sums of every pixel (``static_sums`` (3, n_tau, n_sub),
        ``static_intensity`` (1 + n_seg, n_sub)) and every chunk's dynamic sums and valid counts, in
        chunk order: the same arithmetic whichever process computed which chunk."""
        lab, k = self.labels, self.groups
        n_tau = static_sums.shape[1]
        per_group = static_sums.reshape(3, n_tau, lab.n_static, k)
        st = per_group.sum(axis=3)
        intensity = static_intensity.reshape(-1, lab.n_static, k).sum(axis=2)
        count_group = self.count_group
        count = count_group.sum(axis=1).astype(np.float64)
        scale = np.stack([self.scale2, self.scale1, self.scale1])[:, :, None]
        per_time = np.concatenate([[float(self.n_frames)], self.seg_len])[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = st * scale / count
            g2s = mean[0] / (mean[1] * mean[2])
            scattering = intensity / per_time / count
        g2 = dynamic_mean_of_static(g2s, lab)
        return G2Result(
            tau=tau.copy(),
            g2=g2,
            g2_err=_spread(dynamic_sums, valid) if spread else None,
            scattering_1d=scattering[0],
            scattering_1d_segments=scattering[1:],
            mean_intensity=pixel_mean,
            frame_sum=frame_sum,
            g2_cov=self._jackknife(st, per_group, scale, count, count_group),
        )

    def _jackknife(
        self,
        st: np.ndarray,
        per_group: np.ndarray,
        scale: np.ndarray,
        count: np.ndarray,
        count_group: np.ndarray,
    ) -> npt.NDArray[np.float64]:
        """(n_dynamic, n_tau, n_tau) covariance of g2 from the leave-one-group-out replicates."""
        lab = self.labels
        return jackknife_cov(
            st, per_group, scale[:, :, 0], count, count_group, np.asarray(lab.static_to_dynamic, dtype=np.int64),
            lab.n_dynamic,
        )  # fmt: skip


@njit(cache=True, nogil=True, error_model="numpy", boundscheck=False)
def jackknife_cov(
    st: np.ndarray,
    per_group: np.ndarray,
    scale: np.ndarray,
    count: np.ndarray,
    count_group: np.ndarray,
    static_to_dynamic: np.ndarray,
    n_dynamic: int,
) -> np.ndarray:
    """(n_dynamic, n_tau, n_tau) covariance of g2 from its leave-one-group-out replicates, in one pass
    (it was ~15 numpy passes over (3, k, n_tau, n_static) arrays: 4.8 ms of the 6 ms reduction at 1 Mpx).
    Replicate g of static bin s is g2 from the bin's sums ``st`` (3, n_tau, n_static) less group g's
    (``per_group`` (3, n_tau, n_static, k)) over its pixels less the group's (``count`` (n_static,),
    ``count_group`` (n_static, k)): ⟨G2⟩/(⟨IP⟩·⟨IF⟩) with ``scale`` (3, n_tau). A replicate of dynamic
    bin q is the unweighted mean of its static bins' finite replicates; the covariance is
    ``(k−1)/k · Σ_g (r_g − r̄)(r_g − r̄)ᵀ`` around the mean of the finite replicates (a deviation that is
    not finite counts as zero)."""
    n_tau, n_static = st.shape[1], st.shape[2]
    k = per_group.shape[3]
    total = np.zeros((k, n_tau, n_dynamic))
    finite = np.zeros((k, n_tau, n_dynamic))
    for s in range(n_static):
        q = static_to_dynamic[s]
        for j in range(n_tau):
            for g in range(k):
                c = count[s] - count_group[s, g]
                m0 = (st[0, j, s] - per_group[0, j, s, g]) * scale[0, j] / c
                m1 = (st[1, j, s] - per_group[1, j, s, g]) * scale[1, j] / c
                m2 = (st[2, j, s] - per_group[2, j, s, g]) * scale[2, j] / c
                r = m0 / (m1 * m2)
                if np.isfinite(r):
                    total[g, j, q] += r
                    finite[g, j, q] += 1.0
    reps = total / finite  # NaN where a bin has no finite replicate
    dev = np.zeros((k, n_tau, n_dynamic))
    for j in range(n_tau):
        for q in range(n_dynamic):
            acc = 0.0
            n = 0
            for g in range(k):
                if not np.isnan(reps[g, j, q]):
                    acc += reps[g, j, q]
                    n += 1
            mean = acc / n if n else np.nan
            for g in range(k):
                d = reps[g, j, q] - mean
                dev[g, j, q] = d if np.isfinite(d) else 0.0
    cov = np.zeros((n_dynamic, n_tau, n_tau))
    factor = (k - 1) / k
    for q in range(n_dynamic):
        for i in range(n_tau):
            for j in range(i, n_tau):
                acc = 0.0
                for g in range(k):
                    acc += dev[g, i, q] * dev[g, j, q]
                cov[q, i, j] = factor * acc
                cov[q, j, i] = factor * acc
    return cov


def _spread(dynamic_sums: np.ndarray, valid: np.ndarray) -> npt.NDArray[np.float64]:
    """XPCS-Eigen's error bar, std_p(g_p)/√n over the valid pixels of every dynamic bin: the chunks'
    shifted sums of the non-zero ratios, completed by the zero ratios (valid pixels without a
    product) and merged with Chan et al.'s formula."""
    s1, n_nz, s2, shift = (dynamic_sums[..., i].transpose(0, 2, 1) for i in range(4))
    n_c = valid.astype(np.float64)
    zeros = n_c - n_nz
    s1 = s1 - zeros * shift  # each zero ratio adds (0 − K) and (0 − K)²
    s2 = s2 + zeros * shift * shift
    n = n_c.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_c = np.where(n_c > 0, shift + s1 / n_c, 0.0)
        mean = (n_c * mean_c).sum(axis=0) / n
        within = np.where(n_c > 0, s2 - s1 * s1 / n_c, 0.0).sum(axis=0)
        between = (n_c * (mean_c - mean) ** 2).sum(axis=0)
        return np.asarray(np.sqrt(np.maximum(within + between, 0.0) / n) / np.sqrt(n))


def fold(sets: np.ndarray, onto: np.ndarray | None = None) -> np.ndarray:
    """``sets[0] + sets[1] + …`` added strictly in order (onto ``onto`` first when given): the one order
    of float additions that a run split over processes can repeat exactly, each process adding its own
    sets onto the running sum it receives (:mod:`beambridge.xpcs.mpi`). Integer sums are exact anyway."""
    total = None if onto is None else onto.copy()
    for part in sets:
        if total is None:
            total = part.copy()
        elif total.dtype == np.result_type(total, part):
            total += part  # in place: the same additions, no new array per set
        else:
            total = total + part
    if total is None:
        raise ValueError("nothing to fold")
    return total


def dynamic_mean_of_static(g2s: npt.NDArray[np.float64], labels: BinLabels) -> npt.NDArray[np.float64]:
    """Unweighted mean over the finite static-bin g2 of each dynamic bin, row by row (n_tau, n_dynamic)."""
    out = np.empty((g2s.shape[0], labels.n_dynamic))
    s2d = labels.static_to_dynamic
    for j, row in enumerate(g2s):
        ok = np.isfinite(row)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[j] = np.bincount(s2d[ok], weights=row[ok], minlength=labels.n_dynamic) / np.bincount(
                s2d[ok], minlength=labels.n_dynamic
            )
    return out


@njit(cache=True, nogil=True, error_model="numpy", boundscheck=False, inline="always")
def add_ratios(
    acc: np.ndarray,
    g: int,
    j: int,
    lev: int,
    base: int,
    w: int,
    scale1: np.ndarray,
    scale2: np.ndarray,
    dynamic: np.ndarray,
    c: int,
    dynamic_sums: np.ndarray,
    valid: np.ndarray,
    tot: np.ndarray,
    first: np.ndarray,
    last: np.ndarray,
    v: np.ndarray,
    zero_tol: float,
) -> None:
    """Delay ``j`` (level ``lev``) of the ``w`` pixels ``base …`` of group ``g`` into chunk ``c``'s
    ``dynamic_sums`` and ``valid`` (see :func:`bin_group`): each pixel's ratio g_p = G2_p/(IP_p·IF_p)
    from its sums ``acc[g, j]``, ``tot[lev] − last`` and ``tot[lev] − first`` (``first``/``last``: the
    sums of the level's first and last ``lag[j]`` elements). ``v`` (4, lanes) is scratch."""
    # vectorised loops (no branch, no store to shared sums)
    for i in range(w):
        v[1, i] = np.float64(tot[lev, i] - last[i]) * scale1[j]
    for i in range(w):
        v[2, i] = np.float64(tot[lev, i] - first[i]) * scale1[j]
    if zero_tol > 0.0:  # float sums: a window without photons is zero, not a rounding residue
        for i in range(w):
            limit = zero_tol * abs(np.float64(tot[0, i]))
            if abs(np.float64(tot[lev, i] - last[i])) <= limit:
                v[1, i] = 0.0
            if abs(np.float64(tot[lev, i] - first[i])) <= limit:
                v[2, i] = 0.0
    for i in range(w):
        v[0, i] = np.float64(acc[g, j, i]) * scale2[j]
    for i in range(w):  # pixel_ratio's expression, on the values above: the same bits
        v[3, i] = v[0, i] / (v[1, i] * v[2, i])  # used only where IP_p·IF_p > 0
    # the dynamic bin's sums stay in registers too (the steps of add_ratio, on locals)
    d = dynamic[base]
    d0, d1, d2, dk = (dynamic_sums[c, d, j, 0], dynamic_sums[c, d, j, 1], dynamic_sums[c, d, j, 2],
                      dynamic_sums[c, d, j, 3])  # fmt: skip
    dv = valid[c, j, d]
    for i in range(w):
        if v[1, i] * v[2, i] > 0:
            dn = dynamic[base + i]
            if dn != d:
                dynamic_sums[c, d, j, 0], dynamic_sums[c, d, j, 1] = d0, d1
                dynamic_sums[c, d, j, 2], dynamic_sums[c, d, j, 3] = d2, dk
                valid[c, j, d] = dv
                d = dn
                d0, d1, d2, dk = (dynamic_sums[c, d, j, 0], dynamic_sums[c, d, j, 1],
                                  dynamic_sums[c, d, j, 2], dynamic_sums[c, d, j, 3])  # fmt: skip
                dv = valid[c, j, d]
            dv += 1
            if acc[g, j, i] != 0:
                if d1 == 0:
                    dk = v[3, i]
                dev = v[3, i] - dk
                d0 += dev
                d1 += 1.0
                d2 += dev * dev
    dynamic_sums[c, d, j, 0], dynamic_sums[c, d, j, 1] = d0, d1
    dynamic_sums[c, d, j, 2], dynamic_sums[c, d, j, 3] = d2, dk
    valid[c, j, d] = dv


@njit(cache=True, nogil=True, error_model="numpy", boundscheck=False, inline="always")
def bin_group(
    acc: np.ndarray,
    head: np.ndarray,
    tail: np.ndarray,
    seg: np.ndarray,
    g: int,
    base: int,
    w: int,
    level: np.ndarray,
    lag: np.ndarray,
    scale1: np.ndarray,
    scale2: np.ndarray,
    level_len: np.ndarray,
    static: np.ndarray,
    dynamic: np.ndarray,
    c: int,
    pixel_mean: np.ndarray,
    static_sums: np.ndarray,
    static_intensity: np.ndarray,
    dynamic_sums: np.ndarray,
    valid: np.ndarray,
    tot: np.ndarray,
    first: np.ndarray,
    last: np.ndarray,
    v: np.ndarray,
    zero_tol: float,
    spread: bool,
) -> None:
    """Add the ``w`` pixels ``base …`` of group ``g`` (state ``acc[g]`` (n_tau, lanes), ``head[g]``,
    ``tail[g]`` (L, H, lanes), ``seg[g]`` (n_seg, lanes)) into chunk ``c``'s partial sums:

        ``static_sums[c, 0|1|2, j, s]``    Σ acc_p | Σ (tot − last c) | Σ (tot − first c) over the pixels
                                           of static sub-bin s: the sums behind Σ G2_p, Σ IP_p, Σ IF_p
        ``static_intensity[c, 0, s]``      Σ of the pixels' level-0 totals; ``[c, 1 + q, s]`` segment q's
        ``dynamic_sums[c, d, j, 0|1|2|3]`` Σ (g_p − K) | n | Σ (g_p − K)² | K over the pixels of dynamic
                                           bin d whose ratio g_p = G2_p/(IP_p·IF_p) is defined and not
                                           zero (K: the chunk's first such g_p; :func:`add_ratio`)
        ``valid[c, j, d]``                 pixels of d with IP_p·IF_p > 0 (zero ratios included)
        ``pixel_mean[p]``                  the time mean of pixel p

    Static sums are in the state's dtype (integers: exact, so any path and order give the same sums).
    ``tot`` (L, lanes), ``first``/``last`` (lanes,), ``v`` (4, lanes) are scratch. ``zero_tol``: see
    :func:`~beambridge.xpcs.multitau.dense.finalize` (0 for integer sums, which are exact). Without
    ``spread`` the ratios, ``dynamic_sums`` and ``valid`` are left alone.
    """
    n_tau = acc.shape[1]
    n_hist = tail.shape[2]
    n_seg = seg.shape[1]
    level_totals(tail, seg, g, w, level_len, tot)
    for i in range(w):
        s = static[base + i]
        pixel_mean[base + i] = np.float64(tot[0, i]) / np.float64(level_len[0])
        static_intensity[c, 0, s] += tot[0, i]
        for q in range(n_seg):
            static_intensity[c, 1 + q, s] += seg[g, q, i]
    run_level, run_lag = -1, 0
    for j in range(n_tau):
        lev = level[j]
        lg = lag[j]
        # IP = total − last lg elements, IF = total − first lg elements; the lags of a level ascend, so
        # both sums grow one element at a time (in the order finalize adds them)
        if lev != run_level:
            run_level, run_lag = lev, 0
            for i in range(w):
                first[i] = 0
                last[i] = 0
        while run_lag < lg:
            run_lag += 1
            for i in range(w):
                last[i] += tail[g, lev, n_hist - run_lag, i]
                first[i] += head[g, lev, run_lag - 1, i]
        # neighbouring pixels mostly share their bins: a bin's sums stay in registers while its
        # pixels follow one another (the same additions in the same order, without store and reload)
        s = static[base]
        s0, s1, s2 = static_sums[c, 0, j, s], static_sums[c, 1, j, s], static_sums[c, 2, j, s]
        for i in range(w):
            sn = static[base + i]
            if sn != s:
                static_sums[c, 0, j, s] = s0
                static_sums[c, 1, j, s] = s1
                static_sums[c, 2, j, s] = s2
                s = sn
                s0, s1, s2 = static_sums[c, 0, j, s], static_sums[c, 1, j, s], static_sums[c, 2, j, s]
            s0 += acc[g, j, i]
            s1 += tot[lev, i] - last[i]
            s2 += tot[lev, i] - first[i]
        static_sums[c, 0, j, s] = s0
        static_sums[c, 1, j, s] = s1
        static_sums[c, 2, j, s] = s2
        if spread:
            add_ratios(acc, g, j, lev, base, w, scale1, scale2, dynamic, c, dynamic_sums, valid, tot, first, last, v,
                       zero_tol)  # fmt: skip


class BinPass(NamedTuple):
    """What both passes from a finished dense state to the bin sums read (:func:`chunk_bin_sums`,
    :func:`exact_bin_sums`), built once by :func:`bin_sums`: one argument instead of thirteen (numba takes
    it as a heterogeneous tuple; the kernels unpack it before their parallel loops).

    ``acc`` (n_groups, n_tau, lanes), ``head``/``tail`` (n_groups, L, H, lanes), ``seg`` (n_groups, n_seg,
    lanes): the state; ``n_pix`` its pixels; ``level``, ``lag``, ``scale1``, ``scale2`` (n_tau,): the
    schedule and the scales of Σ IP, Σ IF and Σ G2; ``level_len`` (L,) elements per level; ``static``,
    ``dynamic`` (P,): every pixel's sub-bin and dynamic bin (:class:`BinPartials`); ``chunk_ptr``: the
    chunks' first groups and the end (:meth:`BinPartials.group_bounds`)."""

    acc: np.ndarray
    head: np.ndarray
    tail: np.ndarray
    seg: np.ndarray
    n_pix: int
    level: np.ndarray
    lag: np.ndarray
    scale1: np.ndarray
    scale2: np.ndarray
    level_len: np.ndarray
    static: np.ndarray
    dynamic: np.ndarray
    chunk_ptr: np.ndarray


@njit(cache=True, parallel=True, nogil=True, error_model="numpy", boundscheck=False)
def chunk_bin_sums(
    inp: BinPass,
    pixel_mean: np.ndarray,
    static_sums: np.ndarray,
    static_intensity: np.ndarray,
    dynamic_sums: np.ndarray,
    valid: np.ndarray,
    zero_tol: float,
    spread: bool,
) -> None:
    """:func:`bin_group` over a finished state grouped (n_groups, ..., lanes) (``inp``, :class:`BinPass`);
    chunk ``c`` is groups ``chunk_ptr[c] … chunk_ptr[c+1]-1``, into its own set of static sums. Any
    state; :func:`bin_sums` sends float state here."""
    acc, head, tail, seg, n_pix, level, lag, scale1, scale2, level_len, static, dynamic, chunk_ptr = inp
    lanes = acc.shape[2]
    n_levels = tail.shape[1]
    for c in prange(chunk_ptr.shape[0] - 1):
        tot = np.zeros((n_levels, lanes), dtype=acc.dtype)
        first = np.zeros(lanes, dtype=acc.dtype)
        last = np.zeros(lanes, dtype=acc.dtype)
        v = np.empty((4, lanes))
        for g in range(chunk_ptr[c], chunk_ptr[c + 1]):
            base = g * lanes
            bin_group(
                acc, head, tail, seg, g, base, min(lanes, n_pix - base), level, lag, scale1, scale2,
                level_len, static, dynamic, c, pixel_mean, static_sums, static_intensity, dynamic_sums,
                valid, tot, first, last, v, zero_tol, spread,
            )  # fmt: skip


def _pad8(n: int) -> int:
    return -(-n // 8) * 8


def exact_columns(n_tau: int, n_levels: int, n_hist: int, n_seg: int) -> tuple[int, int, int, int]:
    """Where a sub-bin's sums start in a row of :func:`exact_bin_sums`: (head, tail, segments, width).
    Products first (``n_tau``), then the level heads and tails (``n_levels × n_hist`` each), then the
    segments; each part padded to a multiple of 8 columns (the transpose takes 8 rows at a time)."""
    nh = n_levels * n_hist
    head = _pad8(n_tau)
    tail = head + _pad8(nh)
    seg = tail + _pad8(nh)
    return head, tail, seg, seg + _pad8(n_seg)


@njit(cache=True, nogil=True, error_model="numpy", boundscheck=False, inline="always")
def _add_rows(
    out: np.ndarray, col: int, static: np.ndarray, base: int, src: np.ndarray, src_next: np.ndarray
) -> None:
    """Add the ``lanes`` pixels ``base …`` of the rows ``src`` (rows, lanes) to their sub-bins' rows of
    ``out`` from column ``col`` (8 rows × 8 pixels at a time), prefetching the same rows of the next
    group (``src_next``) as these are read: one group ahead, spread over the work."""
    n_rows, lanes = src.shape
    per_line = max(1, 64 // src.itemsize)  # lanes per cache line
    for rb in range(0, n_rows, 8):
        nr = min(8, n_rows - rb)
        for i0 in range(0, lanes, 8):
            if i0 % per_line == 0:
                for r in range(nr):
                    prefetch_l2(src_next, (rb + r) * lanes + i0)
            transpose_add8(out, col + rb, static, base, src, rb, nr, i0)


@njit(cache=True, parallel=True, nogil=True, error_model="numpy", boundscheck=False)
def exact_bin_sums(
    inp: BinPass,
    n_workers: int,
    pixel_mean: np.ndarray,
    rows: np.ndarray,
    dynamic_sums: np.ndarray,
    valid: np.ndarray,
    spread: bool,
) -> None:
    """:func:`chunk_bin_sums` for integer state (exact sums, so any order): instead of IP and IF per pixel
    and delay, every pixel's **state** is added to its sub-bin's row of ``rows[w]`` (n_workers, n_sub,
    width; :func:`exact_columns`), the products, the levels' first and last H elements and the segment
    sums, as they are (8 rows × 8 pixels per vector transpose, :func:`~.simd.transpose_add8`). Σ IP_p
    and Σ IF_p of a sub-bin are linear in those (the level total less the sum of its last or first c
    elements), so :func:`exact_totals` forms them once per sub-bin instead of once per pixel: no work
    per pixel and delay but one vector addition, no branch on the bin.

    Workers take the chunks as they come (:func:`~.sparse.claim`), each into its own ``rows[w]``.
    ``pixel_mean`` as in :func:`bin_group`; with ``spread`` the pixel ratios (:func:`add_ratios`) into
    chunk c's ``dynamic_sums``/``valid``, each chunk by one worker in pixel order as there."""
    acc, head, tail, seg, n_pix, level, lag, scale1, scale2, level_len, static, dynamic, chunk_ptr = inp
    lanes = acc.shape[2]
    n_groups = acc.shape[0]
    n_levels, n_hist = tail.shape[1], tail.shape[2]
    nh = n_levels * n_hist
    n_tau, n_seg = acc.shape[1], seg.shape[1]
    c_head = (n_tau + 7) // 8 * 8
    c_tail = c_head + (nh + 7) // 8 * 8
    c_seg = c_tail + (nh + 7) // 8 * 8
    head2 = head.reshape((n_groups, nh, lanes))
    tail2 = tail.reshape((n_groups, nh, lanes))
    n_chunks = chunk_ptr.shape[0] - 1
    next_chunk = np.zeros(1, dtype=np.int64)
    for wk in prange(n_workers):
        out = rows[wk]
        tot = np.zeros((n_levels, lanes), dtype=acc.dtype)
        first = np.zeros(lanes, dtype=acc.dtype)
        last = np.zeros(lanes, dtype=acc.dtype)
        v = np.empty((4, lanes))
        c = claim(next_chunk)
        while c < n_chunks:
            for g in range(chunk_ptr[c], chunk_ptr[c + 1]):
                base = g * lanes
                w = min(lanes, n_pix - base)
                if spread:
                    level_totals(tail, seg, g, w, level_len, tot)
                else:  # level 0 only, as level_totals adds it
                    for i in range(w):
                        tot[0, i] = 0
                    for q in range(n_seg):
                        for i in range(w):
                            tot[0, i] += seg[g, q, i]
                for i in range(w):
                    pixel_mean[base + i] = np.float64(tot[0, i]) / np.float64(level_len[0])
                if w == lanes and lanes % 8 == 0:
                    gn = min(g + 1, n_groups - 1)
                    _add_rows(out, 0, static, base, acc[g], acc[gn])
                    _add_rows(out, c_head, static, base, head2[g], head2[gn])
                    _add_rows(out, c_tail, static, base, tail2[g], tail2[gn])
                    _add_rows(out, c_seg, static, base, seg[g], seg[gn])
                else:
                    for i in range(w):
                        s = static[base + i]
                        for r in range(n_tau):
                            out[s, r] += acc[g, r, i]
                        for r in range(nh):
                            out[s, c_head + r] += head2[g, r, i]
                        for r in range(nh):
                            out[s, c_tail + r] += tail2[g, r, i]
                        for q in range(n_seg):
                            out[s, c_seg + q] += seg[g, q, i]
                if not spread:
                    continue
                run_level, run_lag = -1, 0
                for j in range(n_tau):  # the running sums of bin_group, for the ratios only
                    lev = level[j]
                    lg = lag[j]
                    if lev != run_level:
                        run_level, run_lag = lev, 0
                        for i in range(w):
                            first[i] = 0
                            last[i] = 0
                    while run_lag < lg:
                        run_lag += 1
                        for i in range(w):
                            last[i] += tail[g, lev, n_hist - run_lag, i]
                            first[i] += head[g, lev, run_lag - 1, i]
                    add_ratios(acc, g, j, lev, base, w, scale1, scale2, dynamic, c, dynamic_sums, valid, tot, first,
                               last, v, 0.0)  # fmt: skip
            c = claim(next_chunk)


@njit(cache=True, parallel=True, nogil=True, error_model="numpy", boundscheck=False)
def exact_totals(
    rows: np.ndarray,
    level: np.ndarray,
    lag: np.ndarray,
    level_len: np.ndarray,
    n_levels: int,
    n_hist: int,
    n_seg: int,
    static_sums: np.ndarray,
    static_intensity: np.ndarray,
) -> None:
    """The sums of :class:`BinPartials` (one set: ``static_sums`` (1, 3, n_tau, n_sub),
    ``static_intensity`` (1, 1 + n_seg, n_sub)) from the workers' rows of :func:`exact_bin_sums`: per
    sub-bin, the level totals as :func:`~.dense.level_totals` forms them per pixel (level 0 the sum of
    the segments, level l+1 level l less its unpaired last element), then Σ IP = total − Σ of the last
    c elements and Σ IF = total − Σ of the first c, in the same unsigned arithmetic as per pixel:
    the same integers. The workers' rows are added into ``rows[0]``."""
    n_w, n_sub, width = rows.shape
    n_tau = level.shape[0]
    nh = n_levels * n_hist
    c_head = (n_tau + 7) // 8 * 8
    c_tail = c_head + (nh + 7) // 8 * 8
    c_seg = c_tail + (nh + 7) // 8 * 8
    for s in prange(n_sub):
        row = rows[0, s]
        for w in range(1, n_w):  # the workers' rows, added into the first one's
            for k in range(width):
                row[k] += rows[w, s, k]
        total = row[c_seg] * 0
        for q in range(n_seg):
            total += row[c_seg + q]
            static_intensity[0, 1 + q, s] = row[c_seg + q]
        static_intensity[0, 0, s] = total
        at, run_lag = 0, 0  # the level that ``total`` is of (the delays come level by level, lags ascending)
        last = row[c_seg] * 0
        first = row[c_seg] * 0
        for j in range(n_tau):
            lev = level[j]
            if lev != at:
                while at < lev:
                    if level_len[at] & 1:
                        total -= row[c_tail + at * n_hist + n_hist - 1]
                    at += 1
                run_lag = 0
                last = row[c_seg] * 0
                first = row[c_seg] * 0
            while run_lag < lag[j]:
                last += row[c_tail + lev * n_hist + n_hist - 1 - run_lag]
                first += row[c_head + lev * n_hist + run_lag]
                run_lag += 1
            static_sums[0, 0, j, s] = row[j]
            static_sums[0, 1, j, s] = total - last
            static_sums[0, 2, j, s] = total - first


def bin_sums(
    acc: np.ndarray,
    head: np.ndarray,
    tail: np.ndarray,
    seg: np.ndarray,
    n_pix: int,
    level: np.ndarray,
    lag: np.ndarray,
    scale1: np.ndarray,
    scale2: np.ndarray,
    level_len: np.ndarray,
    partials: BinPartials,
    zero_tol: float,
    spread: bool,
    n_workers: int,
) -> None:
    """Fill ``partials`` from a finished dense state (n_groups, ..., lanes): integer state with one set of
    static sums by :func:`exact_bin_sums` on ``n_workers`` threads (any number: the sums are exact),
    float state (one set per chunk, each added in pixel order) by :func:`chunk_bin_sums`."""
    p = partials
    chunk_ptr = p.group_bounds(acc.shape[2])
    n_chunks = chunk_ptr.size - 1
    inp = BinPass(
        acc, head, tail, seg, n_pix, level, lag, scale1, scale2, level_len, p.static, p.dynamic, chunk_ptr
    )
    if acc.dtype.kind == "f" or p.static_sums.shape[0] != 1:
        if p.static_sums.shape[0] != n_chunks:
            raise ValueError(f"{p.static_sums.shape[0]} sets of static sums for {n_chunks} chunks")
        chunk_bin_sums(
            inp, p.pixel_mean, p.static_sums, p.static_intensity, p.dynamic_sums, p.valid, zero_tol, spread
        )
        return
    n_levels, n_hist, n_seg = tail.shape[1], tail.shape[2], seg.shape[1]
    workers = max(1, min(n_workers, n_chunks))
    width = exact_columns(acc.shape[1], n_levels, n_hist, n_seg)[3]
    rows = np.zeros((workers, p.static_sums.shape[3], width), dtype=np.uint64)
    exact_bin_sums(inp, workers, p.pixel_mean, rows, p.dynamic_sums, p.valid, spread)
    exact_totals(rows, level, lag, level_len, n_levels, n_hist, n_seg, p.static_sums, p.static_intensity)
