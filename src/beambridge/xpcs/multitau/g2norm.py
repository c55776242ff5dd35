"""From per-pixel multi-tau sums to g2(q, tau) with error bars (XPCS-Eigen ``Corr::normalizeG2s``).

With ⟨·⟩_s the mean over the pixels of static bin s:

    g2_s(tau)  = ⟨G2⟩_s / (⟨IP⟩_s · ⟨IF⟩_s)
    g2(q, tau) = unweighted mean of g2_s over the static bins s inside dynamic bin q (NaN bins skipped)
    err(q, tau) = std_p(g2_p) / √n,   g2_p = G2_p / (IP_p · IF_p)

where the standard deviation is the population one (÷n, XPCS-Eigen's Welford) over the n pixels of q
whose ``IP_p · IF_p > 0``. Shapes: g2 and err are (n_tau, n_dynamic).

:func:`normalize_g2` computes this from per-pixel :class:`PixelSums`, plainly, for callers that want
those too; ``MultiTauCorrelator.g2`` (:mod:`beambridge.xpcs.multitau.bins`) computes the same straight
from the correlator's state, which is what the pipeline uses. The two agree to rounding.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from beambridge.xpcs.multitau.bins import BinLabels, G2Result, dynamic_mean_of_static
from beambridge.xpcs.multitau.correlator import PixelSums

__all__ = ["BinLabels", "G2Result", "normalize_g2"]


def _bin_mean(
    values: npt.NDArray[np.float64], labels: npt.NDArray[np.int64], n: int
) -> npt.NDArray[np.float64]:
    count = np.bincount(labels, minlength=n).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.bincount(labels, weights=values, minlength=n) / count


def normalize_g2(sums: PixelSums, labels: BinLabels) -> G2Result:
    """Return g2, its error and the static-bin intensities for the per-pixel ``sums``."""
    n_tau = sums.schedule.n_tau
    g2s = np.empty((n_tau, labels.n_static))
    err = np.empty((n_tau, labels.n_dynamic))
    for j in range(n_tau):
        with np.errstate(invalid="ignore", divide="ignore"):
            g2s[j] = _bin_mean(sums.G2[j], labels.static, labels.n_static) / (
                _bin_mean(sums.IP[j], labels.static, labels.n_static)
                * _bin_mean(sums.IF[j], labels.static, labels.n_static)
            )
        denom = sums.IP[j] * sums.IF[j]
        valid = denom > 0
        gp = np.zeros_like(denom)
        np.divide(sums.G2[j], denom, out=gp, where=valid)
        q = labels.dynamic[valid]
        n = np.bincount(q, minlength=labels.n_dynamic).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.bincount(q, weights=gp[valid], minlength=labels.n_dynamic) / n
            dev = gp[valid] - mean[q]
            var = np.bincount(q, weights=dev * dev, minlength=labels.n_dynamic) / n
            err[j] = np.sqrt(var) / np.sqrt(n)
    return G2Result(
        tau=sums.schedule.tau.copy(),
        g2=dynamic_mean_of_static(g2s, labels),
        g2_err=err,
        scattering_1d=_bin_mean(sums.mean_intensity, labels.static, labels.n_static),
        scattering_1d_segments=np.stack(
            [_bin_mean(seg, labels.static, labels.n_static) for seg in sums.segment_mean]
        ),
        mean_intensity=sums.mean_intensity,
        frame_sum=sums.frame_sum,
    )
