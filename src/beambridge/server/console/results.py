"""Result artifacts drawn on the server as PNG: g2(q, τ) curves with their fits, two-time maps.

The artifacts were checked when they were stored (``schemas/artifacts.py``), so sizes are bounded: a g2
plot has at most 128 curves of 512 points, a two-time map at most 256 × 256 cells.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from beambridge.schemas.artifacts import XpcsG2, XpcsTwoTime, artifact_adapter

WIDTH_PX, HEIGHT_PX = 900, 560
MAX_CURVES = 12
"""Curves drawn on one g2 plot (evenly chosen among the bins; the legend stays readable)."""


def _figure(width: int = WIDTH_PX, height: int = HEIGHT_PX) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure(figsize=(width / 100, height / 100), dpi=100)


def _as_array(rows: list[list[float | None]]) -> np.ndarray:
    return np.array([[np.nan if v is None else v for v in row] for row in rows], dtype=float)


def _png(figure: Any, right: float = 0.98) -> bytes:
    # Fixed margins (tight_layout draws the figure once more) and quick PNG compression.
    figure.subplots_adjust(left=0.1, right=right, top=0.93, bottom=0.1)
    out = io.BytesIO()
    figure.savefig(out, format="png", pil_kwargs={"compress_level": 1})
    return out.getvalue()


def render_g2(artifact: XpcsG2) -> bytes:
    """g2 − 1 against τ (log axis), one colour per q, error bars, the fit as a line over each curve."""
    figure = _figure()
    axes = figure.add_subplot()
    tau = np.asarray(artifact.tau_s)
    g2 = _as_array(artifact.g2)
    err = _as_array(artifact.g2_err) if artifact.g2_err is not None else None
    chosen = np.unique(
        np.linspace(0, len(artifact.q) - 1, min(len(artifact.q), MAX_CURVES)).round().astype(int)
    )
    from matplotlib import colormaps

    palette = colormaps["viridis"]
    smooth = np.geomspace(tau[0], tau[-1], 200)
    for rank, k in enumerate(chosen):
        colour = palette(rank / max(len(chosen) - 1, 1))
        label = f"q = {artifact.q[k]:.4g} Å⁻¹"
        if err is not None:
            axes.errorbar(tau, g2[k], yerr=err[k], fmt="o", ms=3, color=colour, label=label, elinewidth=0.8)
        else:
            axes.plot(tau, g2[k], "o", ms=3, color=colour, label=label)
        fit = artifact.fit[k] if artifact.fit is not None else None
        if fit is not None:
            axes.plot(
                smooth, fit.baseline + fit.beta * np.exp(-2.0 * fit.gamma * smooth), "-", color=colour, lw=1
            )
    from matplotlib.ticker import LogFormatter, NullFormatter

    axes.set_xscale("log")
    axes.xaxis.set_major_formatter(LogFormatter(labelOnlyBase=True))  # plain text: no mathtext to parse
    axes.xaxis.set_minor_formatter(NullFormatter())
    axes.set_xlabel("delay τ (s)")
    axes.set_ylabel("g2(q, τ)")
    title = artifact.title or "g2"
    if artifact.D is not None:
        title += f" — D = {artifact.D:.4g}" + (
            f" ± {artifact.D_err:.2g}" if artifact.D_err is not None else ""
        )
        title += " Å²/s"
    shown = f" ({len(chosen)} of {len(artifact.q)} q bins)" if len(chosen) < len(artifact.q) else ""
    axes.set_title(title + shown, fontsize=10)
    axes.legend(fontsize=7, loc="upper right", ncols=2 if len(chosen) > 6 else 1)
    if artifact.fit is not None and any(f is not None for f in artifact.fit):
        axes.text(0.01, 0.01, "lines: fits g2 = b + β·exp(−2Γτ)", transform=axes.transAxes, fontsize=7)
    axes.grid(True, alpha=0.2)
    return _png(figure)


def render_twotime(artifact: XpcsTwoTime) -> bytes:
    """C(t1, t2) as an image with its colour bar, times in seconds."""
    figure = _figure(700, 600)
    axes = figure.add_subplot()
    c2 = _as_array(artifact.c2)
    extent_s = len(c2) * artifact.dt_s
    finite = c2[np.isfinite(c2)]
    low, high = np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0)
    image = axes.imshow(
        c2, origin="lower", extent=(0, extent_s, 0, extent_s), cmap="viridis", vmin=low, vmax=max(high, low + 1e-12),
        interpolation="nearest",
    )  # fmt: skip
    figure.colorbar(image, ax=axes, label="C(t1, t2)")
    axes.set_xlabel("t1 (s)")
    axes.set_ylabel("t2 (s)")
    title = artifact.title or "two-time correlation"
    if artifact.q is not None:
        title += f", q = {artifact.q:.4g} Å⁻¹"
    axes.set_title(title, fontsize=10)
    return _png(figure, right=0.9)


def render(content: dict[str, Any]) -> bytes:
    """The PNG of a stored artifact's content."""
    artifact = artifact_adapter.validate_python(content)
    if isinstance(artifact, XpcsG2):
        return render_g2(artifact)
    return render_twotime(artifact)
