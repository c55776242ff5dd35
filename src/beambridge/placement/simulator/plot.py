"""The picture of a simulation: jobs finished per site over time, one panel per policy."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from beambridge.placement.simulator.engine import SimulationResult


def plot_jobs_per_site(
    results: Sequence[SimulationResult], path: str | Path, *, bin_s: float | None = None
) -> Path:
    """Write a PNG (or any format matplotlib knows from the suffix) of jobs/min per site over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    if not results:
        raise ValueError("nothing to plot")
    end = max((max(times, default=0.0) for r in results for times in r.finish_times.values()), default=0.0)
    width = bin_s or max(60.0, math.ceil(end / 120 / 60) * 60)
    edges = np.arange(0.0, end + width, width)
    fig, axes = plt.subplots(
        len(results), 1, figsize=(11, 2.6 * len(results) + 0.6), sharex=True, squeeze=False
    )
    sites = list(results[0].finish_times)
    colours = {site: plt.cm.tab10(i % 10) for i, site in enumerate(sites)}
    for ax, result in zip(axes[:, 0], results, strict=True):
        for site in sites:
            counts, _ = np.histogram(result.finish_times.get(site, []), bins=edges)
            ax.plot(edges[:-1] / 60, counts * 60 / width, label=site, color=colours[site], lw=1.2)
        ax.set_title(
            f"{result.policy}: {result.jobs_per_min:.1f} jobs/min, latency median {result.latency_median_s:.0f} s, "
            f"p95 {result.latency_p95_s:.0f} s, re-placed {result.replaced}, stranded {result.stranded}",
            fontsize=9,
        )
        ax.set_ylabel("jobs/min")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7, ncol=min(len(sites), 5), loc="upper right")
    axes[-1, 0].set_xlabel("minutes since the first arrival")
    fig.suptitle(f"{results[0].scenario}: jobs finished per site over time", fontsize=11)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
