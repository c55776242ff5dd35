"""Fitting g2(q, τ): relaxation rates per q and the diffusion coefficient D.

Per dynamic bin (τ in s, weights 1/err²):

* single exponential      g2 = b + β·exp(-2Γτ)
* stretched exponential   g2 = b + β·exp(-2(Γτ)^α)

D from the rates: weighted least squares of Γ = D·q² through the origin,
``D = Σ w q²Γ / Σ w q⁴`` with ``w = 1/σ_Γ²`` and ``σ_D = (Σ w q⁴)^(-1/2)``.

A single exponential with Γ = D·⟨q²⟩ per ring is biased low, because a ring averages pixels of
different q. :func:`fit_diffusion_exact` therefore fits the exact expectation of what the correlator
computes (equal weight per static bin, pixel mean inside it, and the multi-tau averaging factor for
coarse levels; ``λ = 2Γ_pΔt``, ``m = 2^level``):

    g2_q(τ) = b + β · mean_{s∈q} mean_{p∈s} [ e^{-2Γ_p τ} · (sinh(λm/2) / (m·sinh(λ/2)))² ],  Γ_p = D q_p²

jointly over all bins, with free D, β and b.

**Uncertainties.** g2 at neighbouring multi-tau delays is correlated (the same photons enter both), so
when the result file holds the covariance of g2 across delays (``normalized_g2_cov``, a pixel-group
jackknife, :mod:`beambridge.xpcs.multitau.bins`) every fit is a generalised least-squares fit with
it: residuals are whitened by the Cholesky factor of the covariance, shrunk half-way towards its
diagonal (:data:`SHRINKAGE`; 32 jackknife groups estimate a 34×34 matrix only roughly, and the inverse
of a noisy covariance over-weights its noise). Every quoted σ is then scaled by √χ²ᵣ when χ²ᵣ > 1
(the data scatter more than the errors say: the model or the errors are not the whole story). Over
40 simulated seeds the truth lies within ±1σ / ±2σ of D about as often as it should
(``tests/xpcs/test_error_bars.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy.optimize import curve_fit, least_squares

from beambridge.xpcs.result_file import MultitauFile


@dataclass
class BinFit:
    """Fit of one dynamic bin: rate ``gamma`` (1/s) ± ``gamma_err``, contrast, baseline, stretch α."""

    bin: int
    q: float
    gamma: float
    gamma_err: float
    contrast: float
    baseline: float
    alpha: float = 1.0
    ok: bool = True
    chi2_red: float = float("nan")


@dataclass
class DiffusionFit:
    """D (Å²/s) ± ``err`` with the reduced χ² of the fit and the method used."""

    D: float
    err: float
    chi2_red: float
    method: str
    contrast: float = float("nan")
    baseline: float = float("nan")


@dataclass
class FitReport:
    """Per-bin fits, D from Γ vs q², and D from the exact joint model."""

    model: str
    bins: list[BinFit] = field(default_factory=list)
    from_rates: DiffusionFit | None = None
    exact: DiffusionFit | None = None

    def as_dict(self) -> dict[str, object]:
        """JSON-able summary."""
        return {
            "model": self.model,
            "bins": [b.__dict__ for b in self.bins],
            "D_from_rates": None if self.from_rates is None else self.from_rates.__dict__,
            "D_exact": None if self.exact is None else self.exact.__dict__,
        }


SHRINKAGE = 0.5
"""Weight of the diagonal in the covariance used by the fits: (1 − λ)·C + λ·diag(C)."""


def _chi2_scale(chi2_red: float) -> float:
    """Factor for σ: √χ²ᵣ when the fit is worse than its errors say, else 1."""
    return float(np.sqrt(chi2_red)) if np.isfinite(chi2_red) and chi2_red > 1.0 else 1.0


def shrunk_covariance(cov: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """The covariance of the kept delays, shrunk towards its diagonal by :data:`SHRINKAGE`."""
    c = cov[np.ix_(keep, keep)]
    d = np.diag(np.diag(c))
    return np.asarray((1.0 - SHRINKAGE) * c + SHRINKAGE * d)


def _whitener(cov: np.ndarray | None, err: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """W with Wᵀ W = C⁻¹ over the kept delays (C diagonal from ``err`` without a covariance)."""
    if cov is None:
        return np.diag(1.0 / err[keep])
    chol = np.linalg.cholesky(shrunk_covariance(cov, keep))
    return np.asarray(np.linalg.inv(chol))


def _single(t: np.ndarray, b: float, beta: float, gamma: float) -> np.ndarray:
    return b + beta * np.exp(-2.0 * gamma * t)


def _stretched(t: np.ndarray, b: float, beta: float, gamma: float, alpha: float) -> np.ndarray:
    return b + beta * np.exp(-2.0 * (gamma * t) ** alpha)


def fit_bin(
    tau: np.ndarray,
    g2: np.ndarray,
    err: np.ndarray,
    q: float,
    bin_no: int,
    model: str = "single",
    cov: np.ndarray | None = None,
) -> BinFit:
    """Fit one g2 curve (τ in s) with the single or stretched exponential; with ``cov`` (n_tau, n_tau)
    by generalised least squares. σ of the rate is scaled by √χ²ᵣ when χ²ᵣ > 1."""
    ok = np.isfinite(g2) & np.isfinite(err) & (err > 0)
    t, y, s = tau[ok], g2[ok], err[ok]
    if t.size < 4:
        return BinFit(bin_no, q, float("nan"), float("nan"), float("nan"), float("nan"), ok=False)
    sigma = s if cov is None else shrunk_covariance(cov, ok)
    beta0 = max(float(y[0] - 1.0), 1e-3)
    half = np.flatnonzero(y - 1.0 < beta0 / np.e)
    gamma0 = 0.5 / float(t[half[0]]) if half.size else 0.5 / float(t[-1])
    func = _single if model == "single" else _stretched
    p0: tuple[float, ...] = (1.0, beta0, gamma0) if model == "single" else (1.0, beta0, gamma0, 1.0)
    lower = [0.5, 0.0, 0.0] + ([] if model == "single" else [0.1])
    upper = [1.5, 2.0, np.inf] + ([] if model == "single" else [2.0])
    try:
        popt, pcov = curve_fit(
            func, t, y, p0=p0, sigma=sigma, absolute_sigma=True, bounds=(lower, upper), maxfev=20000
        )
        white = _whitener(cov, err, ok)
    except (RuntimeError, ValueError, np.linalg.LinAlgError):
        return BinFit(bin_no, q, float("nan"), float("nan"), float("nan"), float("nan"), ok=False)
    r = white @ (func(t, *popt) - y)
    chi2 = float(r @ r) / max(t.size - len(popt), 1)
    perr = np.sqrt(np.diag(pcov)) * _chi2_scale(chi2)
    alpha = 1.0 if model == "single" else float(popt[3])
    return BinFit(
        bin_no, q, float(popt[2]), float(perr[2]), float(popt[1]), float(popt[0]), alpha, chi2_red=chi2
    )


def diffusion_from_rates(fits: list[BinFit]) -> DiffusionFit:
    """Weighted fit of Γ = D·q² through the origin."""
    good = [f for f in fits if f.ok and np.isfinite(f.gamma_err) and f.gamma_err > 0]
    q2 = np.asarray([f.q**2 for f in good])
    g = np.asarray([f.gamma for f in good])
    w = 1.0 / np.asarray([f.gamma_err for f in good]) ** 2
    d = float(np.sum(w * q2 * g) / np.sum(w * q2 * q2))
    chi2 = float(np.sum(w * (g - d * q2) ** 2) / max(len(good) - 1, 1))
    err = float(1.0 / np.sqrt(np.sum(w * q2 * q2))) * _chi2_scale(chi2)
    return DiffusionFit(d, err, chi2, "gamma_vs_q2")


def multitau_level(tau_frames: npt.ArrayLike, delays_per_level: int = 4) -> npt.NDArray[np.int64]:
    """Level l of each multi-tau delay (τ = c·2^l with c <= 2·dpl at level 0, dpl < c <= 2·dpl above)."""
    t = np.asarray(tau_frames, dtype=np.float64)
    lev = np.zeros(t.shape, dtype=np.int64)
    big = t > 2 * delays_per_level
    lev[big] = np.floor(np.log2(t[big] / (delays_per_level + 1))).astype(np.int64)
    return lev


def fit_diffusion_exact(res: MultitauFile, delays_per_level: int = 4) -> DiffusionFit:
    """Joint fit of the exact bin-averaged model over all bins (see module docstring)."""
    qm = res.qmap
    dt = res.frame_time_s
    tau = res.delay_s
    m = (2.0 ** multitau_level(np.rint(tau / dt), delays_per_level))[:, None]
    q2 = qm.pixel_q().ravel() ** 2
    dq, sq = qm.dqmap.ravel(), qm.sqmap.ravel()
    sel = dq > 0
    n_s = np.bincount(sq[sel], minlength=qm.n_static + 1).astype(float)
    k_q = np.bincount(qm.static_to_dynamic(), minlength=qm.n_dynamic + 1).astype(float)
    weight = 1.0 / (n_s[sq[sel]] * k_q[dq[sel]])
    pix_q2, pix_bin = q2[sel], dq[sel] - 1
    y, e = res.g2, res.g2_err
    ok = np.isfinite(y) & np.isfinite(e) & (e > 0)
    cov = res.g2_cov
    white = [_whitener(None if cov is None else cov[k], e[:, k], ok[:, k]) for k in range(y.shape[1])]

    def model(theta: np.ndarray) -> np.ndarray:
        d, beta, base = theta
        lam = 2.0 * d * pix_q2 * dt  # (P,)
        decay = np.exp(-np.outer(tau, 2.0 * d * pix_q2))  # (n_tau, P)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            lam_m = lam[None, :] * m
            bfac = np.where(m > 1, (np.sinh(lam_m / 2) / (m * np.sinh(lam[None, :] / 2))) ** 2, 1.0)
        bfac = np.nan_to_num(bfac, nan=1.0)
        per_pixel = decay * bfac * weight[None, :]
        out = np.empty_like(y)
        for j in range(y.shape[0]):
            out[j] = np.bincount(pix_bin, weights=per_pixel[j], minlength=y.shape[1])
        return base + beta * out

    def resid(theta: np.ndarray) -> np.ndarray:
        diff = model(theta) - y
        return np.concatenate([w @ diff[ok[:, k], k] for k, w in enumerate(white)])

    q = qm.dynamic_bin_q()
    fits = [
        fit_bin(tau, y[:, k], e[:, k], float(q[k]), k + 1, cov=None if cov is None else cov[k])
        for k in range(y.shape[1])
    ]
    d0 = diffusion_from_rates(fits).D
    beta0 = float(np.nanmedian([f.contrast for f in fits if f.ok]))
    sol = least_squares(resid, x0=[d0, beta0, 1.0], x_scale=[abs(d0) or 1.0, 0.1, 0.01], method="lm")
    jac = sol.jac
    param_cov = np.linalg.inv(jac.T @ jac)
    dof = max(int(ok.sum()) - 3, 1)
    chi2 = float(np.sum(sol.fun**2) / dof)
    return DiffusionFit(
        float(sol.x[0]),
        float(np.sqrt(param_cov[0, 0])) * _chi2_scale(chi2),
        chi2,
        "exact_joint",
        float(sol.x[1]),
        float(sol.x[2]),
    )


def fit_result(res: MultitauFile, model: str = "single", delays_per_level: int = 4) -> FitReport:
    """Per-bin fits, D from Γ vs q², and (for the single model) the exact joint D."""
    q = res.qmap.dynamic_bin_q()
    report = FitReport(model=model)
    cov = res.g2_cov
    report.bins = [
        fit_bin(
            res.delay_s,
            res.g2[:, k],
            res.g2_err[:, k],
            float(q[k]),
            k + 1,
            model,
            None if cov is None else cov[k],
        )
        for k in range(res.g2.shape[1])
    ]
    report.from_rates = diffusion_from_rates(report.bins)
    if model == "single":
        report.exact = fit_diffusion_exact(res, delays_per_level)
    return report
