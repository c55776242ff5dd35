"""Figures: g2 curves (with fits) and Γ vs q². Uses matplotlib's Agg backend; PNG or SVG by suffix."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from beambridge.xpcs.fitting import FitReport
from beambridge.xpcs.result_file import MultitauFile


def plot_g2(res: MultitauFile, out: str | Path, report: FitReport | None = None) -> Path:
    """g2(τ) of every dynamic bin with error bars (and fitted curves), plus Γ vs q² when fitted."""
    n = res.g2.shape[1]
    q = res.qmap.dynamic_bin_q()
    ncols = 2 if report is not None else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6.5 * ncols, 4.8), squeeze=False)
    ax = axes[0, 0]
    colors = plt.get_cmap("viridis")(np.linspace(0, 0.9, n))
    t = np.geomspace(res.delay_s[0], res.delay_s[-1], 200)
    for k in range(n):
        ax.errorbar(
            res.delay_s,
            res.g2[:, k],
            yerr=res.g2_err[:, k],
            fmt="o",
            ms=3,
            color=colors[k],
            label=f"q={q[k]:.2e} Å⁻¹",
        )
        if report is not None and report.bins[k].ok:
            f = report.bins[k]
            ax.plot(
                t, f.baseline + f.contrast * np.exp(-2.0 * (f.gamma * t) ** f.alpha), color=colors[k], lw=1
            )
    ax.set_xscale("log")
    ax.set_xlabel("delay τ (s)")
    ax.set_ylabel("g2(q, τ)")
    ax.legend(fontsize=7, ncol=2)
    if report is not None:
        ax2 = axes[0, 1]
        good = [b for b in report.bins if b.ok]
        q2 = np.asarray([b.q**2 for b in good])
        ax2.errorbar(
            q2, [b.gamma for b in good], yerr=[b.gamma_err for b in good], fmt="o", label="per-bin fit"
        )
        xs = np.linspace(0, q2.max() * 1.05, 50)
        if report.from_rates is not None:
            ax2.plot(xs, report.from_rates.D * xs, label=f"Γ = D q², D = {report.from_rates.D:.4g} Å²/s")
        if report.exact is not None:
            ax2.plot(xs, report.exact.D * xs, "--", label=f"exact model, D = {report.exact.D:.4g} Å²/s")
        ax2.set_xlabel("q² (Å⁻²)")
        ax2.set_ylabel("Γ (1/s)")
        ax2.legend(fontsize=8)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
