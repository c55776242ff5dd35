"""The XPCS apps: one job per dataset, correlating a raw frame stack over a q-partition."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import JsonValue

from beambridge.apps.base import ApplicationDefinition
from beambridge.schemas.apps import AppParameter, ParameterType, TransferDirection, TransferSlot

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
        )
        if key in params
    }
    return options


def _with_fit(summary: dict[str, JsonValue], params: dict[str, Any]) -> dict[str, JsonValue]:
    if not params.get("fit"):
        return summary
    from beambridge.xpcs.fitting import fit_result
    from beambridge.xpcs.result_file import read_multitau

    report = fit_result(read_multitau(params["output"]), delays_per_level=params["delays_per_level"])
    exact = report.exact
    summary["fit"] = {
        "D": None if exact is None else exact.D,
        "D_err": None if exact is None else exact.err,
        "chi2_red": None if exact is None else exact.chi2_red,
        "D_from_rates": None if report.from_rates is None else report.from_rates.D,
    }
    return summary


class XpcsMultiTau(ApplicationDefinition):
    """Multi-tau g2(q, τ) of one XPCS dataset, written where pyXPCSViewer reads it."""

    transfer_slots = _SLOTS
    parameters = _COMMON

    def run(self, **params: Any) -> JsonValue:
        from beambridge.xpcs.pipeline import run_multitau

        summary: dict[str, JsonValue] = run_multitau(
            params["raw"], params["qmap"], params["output"], **_options(params)
        )
        return _with_fit(summary, params)


class XpcsTwoTime(ApplicationDefinition):
    """Two-time correlation C(t1, t2) of chosen dynamic bins (with multi-tau alongside)."""

    transfer_slots = _SLOTS
    parameters: ClassVar[dict[str, AppParameter]] = {
        **_COMMON,
        "bins": AppParameter(type=ParameterType.LIST, help="Dynamic bins (1-based) to correlate"),
    }

    def run(self, **params: Any) -> JsonValue:
        from beambridge.xpcs.pipeline import run_twotime

        summary: dict[str, JsonValue] = run_twotime(
            params["raw"], params["qmap"], params["output"], list(params["bins"]), **_options(params)
        )
        return _with_fit(summary, params)


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
