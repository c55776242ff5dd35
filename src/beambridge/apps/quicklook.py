"""The quick look: multi-tau g2 on the first frames of a dataset, reduced to the few numbers a change
detector follows — mean intensity, speckle contrast β and a model-free relaxation estimate of D.

D is estimated per dynamic bin from the delays where the normalised correlation r(τ) = (g2-1)/β lies in
(0.15, 0.85): ln r = -2Γτ, fitted through the origin, D = Γ/q²; the result is the median over bins.
It is robust to the few frames a quick look has, which a full non-linear fit is not.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import JsonValue

from beambridge.apps.xpcs import XpcsMultiTau
from beambridge.schemas.apps import AppParameter


def features(result_path: str) -> dict[str, float | None]:
    """Mean intensity (photons/pixel/frame), contrast β and relaxation D (Å²/s) of a multi-tau result."""
    import h5py
    import numpy as np

    from beambridge.xpcs.result_file import read_multitau

    result = read_multitau(result_path)
    with h5py.File(result_path, "r") as handle:
        intensity = float(np.mean(handle["/xpcs/spatial_mean/intensity_vs_time"][1]))
    g2 = result.g2  # (n_tau, n_q)
    beta_q = g2[0] - 1.0
    valid = np.isfinite(beta_q) & (beta_q > 0)
    contrast = float(np.median(beta_q[valid])) if valid.any() else None
    q = result.qmap.dynamic_bin_q()
    rates: list[float] = []
    for k in np.flatnonzero(valid):
        r = (g2[:, k] - 1.0) / beta_q[k]
        use = (r > 0.15) & (r < 0.85)
        tau = result.delay_s[use]
        if tau.size == 0 or q[k] <= 0:
            continue
        gamma = -float(np.sum(tau * np.log(r[use]))) / (2.0 * float(np.sum(tau * tau)))
        rates.append(gamma / float(q[k]) ** 2)
    diffusion = float(np.median(rates)) if rates else None
    return {"mean_intensity": intensity, "contrast": contrast, "D": diffusion}


class XpcsQuickLook(XpcsMultiTau):
    """Multi-tau g2 on the first frames (``frames``, default the first 100), plus the quick-look features
    (mean intensity, contrast β, relaxation D) in the result, for the change detector."""

    name: ClassVar[str] = "XpcsQuickLook"  # a subclass would otherwise inherit its parent's name

    parameters: ClassVar[dict[str, AppParameter]] = {
        **XpcsMultiTau.parameters,
        "frames": AppParameter(
            required=False, default="0:100", help="Frames to correlate, 'a:b[:stride]' (the first 100)"
        ),
        "output": AppParameter(required=False, default="quick.hdf", help="Result file"),
    }

    def run(self, **params: Any) -> JsonValue:
        summary: dict[str, Any] = dict(super().run(**params))  # type: ignore[arg-type]
        summary["features"] = features(params["output"])
        return summary
