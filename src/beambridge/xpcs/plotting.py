"""Figures for a logbook: g2 curves (with fits and their residuals), Γ vs q², two-time maps.

Every figure carries a title naming the sample (``/entry/sample/name`` when the raw file had one), the
raw and result files and the frames; every axis carries its unit, with any power of ten in the label
rather than as a detached "1e−5" offset. matplotlib's Agg backend; PNG or SVG by the file's suffix.
:func:`g2_figure` and :func:`twotime_figure` return the figure (for notebooks and tests);
:func:`plot_g2` and :func:`plot_twotime` save it.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from beambridge.xpcs.fitting import BinFit, FitReport
from beambridge.xpcs.result_file import MultitauFile, TwoTimeFile

_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def scaled_axis(values: npt.ArrayLike, quantity: str, unit: str) -> tuple[float, str]:
    """(factor, label) so that ``values / factor`` reads 0.1 … 1000 and the label holds the power of
    ten with the unit, e.g. ``(1e-5, "q² (10⁻⁵ Å⁻²)")``."""
    v = np.abs(np.asarray(values, dtype=np.float64))
    v = v[np.isfinite(v) & (v > 0)]
    if v.size == 0:
        return 1.0, f"{quantity} ({unit})"
    exp = math.floor(math.log10(float(v.max())))
    exp = 3 * math.floor(exp / 3) if abs(exp) >= 3 else 0
    if exp == 0:
        return 1.0, f"{quantity} ({unit})"
    return 10.0**exp, f"{quantity} (10{str(exp).translate(_SUPERSCRIPT)} {unit})"


def _title(
    fig: Figure, result: str, raw: str | None, sample: str | None, frames: int | None, step: float
) -> None:
    who = sample or (Path(raw).stem if raw else Path(result).stem)
    files = f"{Path(raw).name} → {Path(result).name}" if raw else Path(result).name
    n = f"{frames} frames × {step:g} s" if frames is not None else f"frame step {step:g} s"
    fig.suptitle(f"{who}\n{files} · {n}", fontsize=10)


def _model(fit: BinFit, t: np.ndarray) -> np.ndarray:
    return np.asarray(fit.baseline + fit.contrast * np.exp(-2.0 * (fit.gamma * t) ** fit.alpha))


def g2_figure(res: MultitauFile, report: FitReport | None = None) -> Figure:
    """g2(τ) of every dynamic bin with error bars; with a fit report, the fitted curves, a panel of
    normalised residuals (g2 − fit)/σ under them, and Γ vs q² beside them."""
    n = res.g2.shape[1]
    q = res.qmap.dynamic_bin_q()
    colors = plt.get_cmap("viridis")(np.linspace(0, 0.9, n))
    if report is None:
        fig, ax = plt.subplots(figsize=(7.0, 5.0))
        ax_res: Axes | None = None
        ax_rate: Axes | None = None
    else:
        fig = plt.figure(figsize=(13.0, 6.2))
        grid = fig.add_gridspec(2, 2, height_ratios=(3, 1), hspace=0.05)
        ax = fig.add_subplot(grid[0, 0])
        ax_res = fig.add_subplot(grid[1, 0], sharex=ax)
        ax_rate = fig.add_subplot(grid[:, 1])
    t = np.geomspace(res.delay_s[0], res.delay_s[-1], 200)
    for k in range(n):
        ax.errorbar(
            res.delay_s, res.g2[:, k], yerr=res.g2_err[:, k], fmt="o", ms=3, color=colors[k],
            label=f"q = {q[k]:.3g} Å⁻¹",
        )  # fmt: skip
        if report is not None and ax_res is not None and report.bins[k].ok:
            fit = report.bins[k]
            ax.plot(t, _model(fit, t), color=colors[k], lw=1)
            err = res.g2_err[:, k]
            with np.errstate(invalid="ignore", divide="ignore"):  # no error bar: no residual
                r = np.where(err > 0, (res.g2[:, k] - _model(fit, res.delay_s)) / err, np.nan)
            ax_res.plot(res.delay_s, r, "o", ms=3, color=colors[k])
    ax.set_xscale("log")
    ax.set_ylabel("g2(q, τ)")
    ax.legend(fontsize=7, ncol=2)
    if ax_res is None:
        ax.set_xlabel("delay τ (s)")
    else:
        ax.tick_params(labelbottom=False)
        ax_res.axhspan(-2, 2, color="0.9", zorder=0)
        ax_res.axhline(0, color="0.4", lw=0.8)
        ax_res.set_xlabel("delay τ (s)")
        ax_res.set_ylabel("(g2 − fit) / σ")
    if report is not None and ax_rate is not None:
        _rates(ax_rate, report)
    _title(fig, res.path, res.raw_path, res.sample, res.n_frames, res.frame_time_s)
    fig.subplots_adjust(top=0.86, left=0.07, right=0.98, bottom=0.1, wspace=0.22)
    return fig


def _rates(ax: Axes, report: FitReport) -> None:
    good = [b for b in report.bins if b.ok]
    q2 = np.asarray([b.q**2 for b in good])
    gamma = np.asarray([b.gamma for b in good])
    xf, xlabel = scaled_axis(q2, "q²", "Å⁻²")
    yf, ylabel = scaled_axis(gamma, "Γ", "s⁻¹")
    ax.errorbar(
        q2 / xf, gamma / yf, yerr=np.asarray([b.gamma_err for b in good]) / yf, fmt="o", label="per-bin fit"
    )
    xs = np.linspace(0, (q2.max() if q2.size else 1.0) * 1.05, 50)
    if report.from_rates is not None:
        d = report.from_rates
        ax.plot(xs / xf, d.D * xs / yf, label=f"Γ = D q²: D = {d.D:.4g} ± {d.err:.2g} Å²/s")
    if report.exact is not None:
        d = report.exact
        ax.plot(
            xs / xf, d.D * xs / yf, "--",
            label=f"exact model: D = {d.D:.4g} ± {d.err:.2g} Å²/s (χ²ᵣ {d.chi2_red:.2f})",
        )  # fmt: skip
    for axis in (ax.xaxis, ax.yaxis):
        axis.get_major_formatter().set_useOffset(False)  # type: ignore[attr-defined]
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title("relaxation rate vs q²", fontsize=9)
    ax.legend(fontsize=8)


def plot_g2(res: MultitauFile, out: str | Path, report: FitReport | None = None) -> Path:
    """Save :func:`g2_figure` to ``out`` (.png or .svg)."""
    fig = g2_figure(res, report)
    out = Path(out)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def twotime_figure(tt: TwoTimeFile) -> Figure:
    """The two-time maps C(t1, t2) side by side, time in seconds, one colour scale per map (1st-99th
    percentile off the diagonal, which holds the shot-noise spike)."""
    n = len(tt.bins)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 4.3 * rows + 0.6), squeeze=False)
    q = tt.qmap.dynamic_bin_q()
    span = tt.n_frames * tt.step_s
    for k, (b, c2) in enumerate(zip(tt.bins, tt.maps, strict=True)):
        ax = axes[k // cols, k % cols]
        off = c2[~np.eye(c2.shape[0], dtype=bool)]
        lo, hi = np.nanpercentile(off, [1, 99]) if off.size else (None, None)
        image = ax.imshow(c2, origin="lower", extent=(0, span, 0, span), vmin=lo, vmax=hi, cmap="viridis")
        ax.set_xlabel("t₁ (s)")
        ax.set_ylabel("t₂ (s)")
        ax.set_title(f"bin {b}: q = {q[b - 1]:.3g} Å⁻¹", fontsize=9)
        fig.colorbar(image, ax=ax, label="C(t₁, t₂)", shrink=0.85)
    for k in range(n, rows * cols):
        axes[k // cols, k % cols].set_axis_off()
    _title(fig, tt.path, tt.raw_path, tt.sample, tt.n_frames, tt.step_s)
    fig.subplots_adjust(top=0.8 if rows == 1 else 0.88, wspace=0.35, hspace=0.3)
    return fig


def plot_twotime(tt: TwoTimeFile, out: str | Path) -> Path:
    """Save :func:`twotime_figure` to ``out`` (.png or .svg)."""
    fig = twotime_figure(tt)
    out = Path(out)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
