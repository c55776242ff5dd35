"""The XPCS apps: one job per dataset, correlating a raw frame stack over a q-partition."""

from __future__ import annotations

import math
from typing import Any, ClassVar

from pydantic import JsonValue

from beambridge.apps.artifacts import ArtifactError
from beambridge.apps.base import ApplicationDefinition
from beambridge.logs import get_logger
from beambridge.schemas.apps import AppParameter, ParameterType, TransferDirection, TransferSlot
from beambridge.schemas.artifacts import MAX_Q, MAX_TAU, BinFit, XpcsG2
from beambridge.schemas.artifacts import XpcsTwoTime as TwoTimeArtifact

log = get_logger(__name__)

_SLOTS = {
    "raw": TransferSlot(
        direction=TransferDirection.IN,
        local_path="raw.h5",
        required=False,
        description="Raw frames (HDF5, IMM, Rigaku); leave empty when the data is already at the facility",
    ),
    "qmap": TransferSlot(
        direction=TransferDirection.IN,
        local_path="qmap.h5",
        required=False,
        description="q-partition (APS layout)",
    ),
    "result": TransferSlot(
        direction=TransferDirection.OUT,
        local_path="result.hdf",
        required=False,
        description="Result file pyXPCSViewer reads, sent back to the beamline",
    ),
}

_COMMON: dict[str, AppParameter] = {
    "raw": AppParameter(
        required=False, default="raw.h5", type=ParameterType.STR, help="Raw file in the workdir"
    ),
    "qmap": AppParameter(required=False, default="qmap.h5", type=ParameterType.STR, help="q-partition file"),
    "output": AppParameter(required=False, default="result.hdf", type=ParameterType.STR, help="Result file"),
    "frames": AppParameter(required=False, default=None, type=ParameterType.ANY, help="'a:b:stride' or null"),
    "delays_per_level": AppParameter(required=False, default=4, type=ParameterType.INT),
    "frame_time": AppParameter(
        required=False,
        default=None,
        type=ParameterType.FLOAT,
        help="Seconds per frame; default: the raw file's own (a value that contradicts it is an error)",
    ),
    "force_frame_time": AppParameter(
        required=False,
        default=False,
        type=ParameterType.BOOL,
        help="Use frame_time even where the raw file records another",
    ),
    "avg": AppParameter(required=False, default=1, type=ParameterType.INT, help="Frames averaged into one"),
    "follow": AppParameter(
        required=False,
        default=False,
        type=ParameterType.BOOL,
        help="Correlate while the detector writes the raw HDF5 file (SWMR; it must announce expected_frames)",
    ),
    "follow_timeout": AppParameter(
        required=False, default=30.0, type=ParameterType.FLOAT, help="With follow: s without a new frame"
    ),
    "normalize_frames": AppParameter(required=False, default=False, type=ParameterType.BOOL),
    "mpi": AppParameter(
        required=False,
        default=None,
        type=ParameterType.BOOL,
        help="Share the pixels among the job's MPI ranks (default: when the job has several ranks)",
    ),
    "fit": AppParameter(
        required=False, default=False, type=ParameterType.BOOL, help="Also fit g2 and add D to the result"
    ),
}


def _options(params: dict[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {
        key: params[key]
        for key in (
            "frames",
            "delays_per_level",
            "frame_time",
            "force_frame_time",
            "avg",
            "normalize_frames",
            "follow",
            "follow_timeout",
            "mpi",
        )
        if key in params
    }
    return options


TWOTIME_ROWS = 128
"""Rows of a two-time map as the console gets it (frames block-averaged): ~100 KiB of JSON."""


def _cells(values: Any) -> list[float | None]:
    """Finite values to 6 significant digits (what a plot shows; a third of the JSON), None elsewhere."""
    return [float(f"{v:.6g}") if math.isfinite(v) else None for v in values]


def g2_artifact(result: Any, report: Any = None, title: str = "") -> XpcsG2:
    """The g2 curves of a multi-tau result (at most ``MAX_Q`` bins, evenly chosen) and their per-bin fits."""
    import numpy as np

    q = result.qmap.dynamic_bin_q()
    chosen = np.unique(np.linspace(0, len(q) - 1, min(len(q), MAX_Q)).round().astype(int))
    tau = result.delay_s[:MAX_TAU]
    fits: list[BinFit | None] | None = None
    if report is not None:
        by_bin = {b.bin - 1: b for b in report.bins}
        fits = []
        for k in chosen:
            b = by_bin.get(int(k))
            if b is None or not b.ok or not all(map(math.isfinite, (b.contrast, b.gamma, b.baseline))):
                fits.append(None)
                continue
            fits.append(BinFit(beta=b.contrast, gamma=max(b.gamma, 0.0), baseline=b.baseline))
    exact = None if report is None else report.exact
    return XpcsG2(
        q=[float(q[k]) for k in chosen],
        tau_s=[float(t) for t in tau],
        g2=[_cells(result.g2[: len(tau), k]) for k in chosen],
        g2_err=[_cells(result.g2_err[: len(tau), k]) for k in chosen],
        fit=fits,
        D=None if exact is None or not math.isfinite(exact.D) else float(exact.D),
        D_err=None if exact is None or not math.isfinite(exact.err) else float(exact.err),
        title=title[:200],
    )


def twotime_artifacts(path: str) -> list[tuple[str, TwoTimeArtifact]]:
    """Each two-time map of a result file (the first 8), block-averaged to at most ``TWOTIME_ROWS`` rows."""
    import numpy as np

    from beambridge.xpcs.result_file import read_twotime

    found = read_twotime(path)
    if found is None:
        return []
    q = found.qmap.dynamic_bin_q()
    out = []
    for bin_number, c2 in list(zip(found.bins, found.maps, strict=True))[:8]:
        n = c2.shape[0]
        factor = max(1, math.ceil(n / TWOTIME_ROWS))
        m = n // factor
        binned = c2[: m * factor, : m * factor].reshape(m, factor, m, factor).mean(axis=(1, 3))
        rows = [_cells(row) for row in np.asarray(binned)]
        q_value = float(q[bin_number - 1]) if 0 < bin_number <= len(q) else None
        out.append((
            f"twotime-{bin_number}",
            TwoTimeArtifact(c2=rows, dt_s=found.step_s * factor, q=q_value, bin=bin_number,
                        title=f"two-time C(t1, t2), bin {bin_number}"),
        ))  # fmt: skip
    return out


def _finish(
    app: ApplicationDefinition, summary: dict[str, JsonValue], params: dict[str, Any]
) -> dict[str, JsonValue]:
    """Add the fit to the summary (when asked) and save the console's artifacts (g2, two-time maps)."""
    from beambridge.xpcs.result_file import read_multitau

    result = read_multitau(params["output"])
    report = None
    if params.get("fit"):
        from beambridge.xpcs.fitting import fit_result

        report = fit_result(result, delays_per_level=params["delays_per_level"])
        summary = _with_fit(summary, report)
    made: list[tuple[str, XpcsG2 | TwoTimeArtifact]] = [
        ("g2", g2_artifact(result, report, title=f"g2 of {params['raw']}"))
    ]
    for name, artifact in [*made, *twotime_artifacts(params["output"])]:
        try:
            app.save_artifact(name, artifact)
        except ArtifactError as exc:  # the result file is what matters; the console's summary is extra
            log.warning("artifact_not_saved", artifact=name, reason=str(exc))
    return summary


def _with_fit(summary: dict[str, JsonValue], report: Any) -> dict[str, JsonValue]:
    exact = report.exact
    summary["fit"] = {
        "D": None if exact is None else exact.D,
        "D_err": None if exact is None else exact.err,
        "chi2_red": None if exact is None else exact.chi2_red,
        "D_from_rates": None if report.from_rates is None else report.from_rates.D,
    }
    return summary


def warm_xpcs() -> None:
    """Run the whole multi-tau pipeline (both correlator modes, the fit, a followed file) on a tiny simulated
    dataset, so that this process has every numba kernel compiled or loaded and every module imported."""
    import tempfile

    from beambridge.apps.quicklook import features
    from beambridge.xpcs.pipeline import run_multitau
    from beambridge.xpcs.simulate import SpeckleParameters, simulate_speckle
    from beambridge.xpcs.warmup import compiling_once

    with compiling_once(), tempfile.TemporaryDirectory(prefix="bb-warm-") as tmp:
        params = SpeckleParameters(
            shape=(16, 16), n_frames=64, photons_per_pixel=0.5, beam_center=(8, 8), r_min=2, r_max=7, seed=0
        )
        paths = simulate_speckle(f"{tmp}/raw.h5", params)
        for mode in ("dense", "sparse"):
            run_multitau(paths["raw"], paths["qmap"], f"{tmp}/{mode}.hdf", mode=mode)
        features(f"{tmp}/dense.hdf")
        live = simulate_speckle(f"{tmp}/live.h5", params, live=True)
        run_multitau(live["raw"], live["qmap"], f"{tmp}/live.hdf", follow=True, follow_timeout=10)
        from beambridge.xpcs.fitting import fit_result
        from beambridge.xpcs.result_file import read_multitau

        result = read_multitau(f"{tmp}/live.hdf")
        g2_artifact(result, fit_result(result, delays_per_level=4))


class XpcsMultiTau(ApplicationDefinition):
    """Multi-tau g2(q, τ) of one XPCS dataset, written where pyXPCSViewer reads it."""

    transfer_slots = _SLOTS
    parameters = _COMMON
    mpi_capable = True

    @classmethod
    def warm_up(cls) -> None:
        warm_xpcs()

    def run(self, **params: Any) -> JsonValue:
        from beambridge.xpcs.mpi import this_rank
        from beambridge.xpcs.pipeline import run_multitau
        from beambridge.xpcs.warmup import announce_if_cold

        announce_if_cold()

        summary: dict[str, JsonValue] = run_multitau(
            params["raw"], params["qmap"], params["output"], **_options(params)
        )
        if this_rank() > 0:  # rank 0 wrote the file; it alone fits and keeps the console's summary
            return summary
        return _finish(self, summary, params)


class XpcsTwoTime(ApplicationDefinition):
    """Two-time correlation C(t1, t2) of chosen dynamic bins (with multi-tau alongside)."""

    transfer_slots = _SLOTS
    parameters: ClassVar[dict[str, AppParameter]] = {
        **_COMMON,
        "bins": AppParameter(type=ParameterType.LIST, help="Dynamic bins (1-based) to correlate"),
    }

    def run(self, **params: Any) -> JsonValue:
        from beambridge.xpcs.pipeline import run_twotime
        from beambridge.xpcs.warmup import announce_if_cold

        announce_if_cold()

        summary: dict[str, JsonValue] = run_twotime(
            params["raw"], params["qmap"], params["output"], list(params["bins"]), **_options(params)
        )
        return _finish(self, summary, params)


class XpcsSimulate(ApplicationDefinition):
    """Simulated speckle with known dynamics (raw HDF5 + q-partition + truth), for demos and checks."""

    def run(
        self,
        output: str = "raw.h5",
        rows: int = 128,
        cols: int = 128,
        n_frames: int = 1000,
        photons_per_pixel: float = 0.1,
        diffusion: float = 2.0e6,
        frame_time: float = 1.0e-3,
        seed: int = 0,
    ) -> JsonValue:
        from beambridge.xpcs.simulate import SpeckleParameters, simulate_speckle

        params = SpeckleParameters(
            shape=(rows, cols),
            n_frames=n_frames,
            photons_per_pixel=photons_per_pixel,
            diffusion=diffusion,
            frame_time=frame_time,
            beam_center=(rows / 2, cols / 2),
            r_min=rows / 16,
            r_max=rows * 7 / 16,
            seed=seed,
        )
        paths: dict[str, JsonValue] = {**simulate_speckle(output, params)}
        return paths
