"""From per-pixel multi-tau sums to g2(q, tau) with error bars (XPCS-Eigen ``Corr::normalizeG2s``).

With ⟨·⟩_s the mean over the pixels of static bin s:

    g2_s(tau)  = ⟨G2⟩_s / (⟨IP⟩_s · ⟨IF⟩_s)
    g2(q, tau) = unweighted mean of g2_s over the static bins s inside dynamic bin q (NaN bins skipped)
    err(q, tau) = std_p(g2_p) / √n,   g2_p = G2_p / (IP_p · IF_p)

where the standard deviation is the population one (÷n, XPCS-Eigen's Welford) over the n pixels of q
whose ``IP_p · IF_p > 0``. Shapes: g2 and err are (n_tau, n_dynamic).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from beambridge.xpcs.multitau import PixelSums


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
    """Normalised multi-tau result: ``g2``, ``g2_err`` (n_tau, n_dynamic); ``tau`` (n_tau,) frames."""

    tau: npt.NDArray[np.int64]
    g2: npt.NDArray[np.float64]
    g2_err: npt.NDArray[np.float64]
    scattering_1d: npt.NDArray[np.float64]
    scattering_1d_segments: npt.NDArray[np.float64]


def _bin_mean(
    values: npt.NDArray[np.float64], labels: npt.NDArray[np.int64], n: int
) -> npt.NDArray[np.float64]:
    count = np.bincount(labels, minlength=n).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.bincount(labels, weights=values, minlength=n) / count


def normalize_g2(sums: PixelSums, labels: BinLabels) -> G2Result:
    """Return g2, its error and the static-bin intensities for the per-pixel ``sums``."""
    n_tau = sums.schedule.n_tau
    g2 = np.empty((n_tau, labels.n_dynamic))
    err = np.empty((n_tau, labels.n_dynamic))
    s2d = labels.static_to_dynamic
    for j in range(n_tau):
        g2s = _bin_mean(sums.G2[j], labels.static, labels.n_static) / (
            _bin_mean(sums.IP[j], labels.static, labels.n_static)
            * _bin_mean(sums.IF[j], labels.static, labels.n_static)
        )
        ok = np.isfinite(g2s)
        with np.errstate(invalid="ignore", divide="ignore"):
            g2[j] = np.bincount(s2d[ok], weights=g2s[ok], minlength=labels.n_dynamic) / np.bincount(
                s2d[ok], minlength=labels.n_dynamic
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
        g2=g2,
        g2_err=err,
        scattering_1d=_bin_mean(sums.mean_intensity, labels.static, labels.n_static),
        scattering_1d_segments=np.stack(
            [_bin_mean(seg, labels.static, labels.n_static) for seg in sums.segment_mean]
        ),
    )
