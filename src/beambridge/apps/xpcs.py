"""The XPCS apps: one job per dataset, correlating a raw frame stack over a q-partition."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import JsonValue

from beambridge.apps.base import ApplicationDefinition
from beambridge.schemas.apps import AppParameter, ParameterType, TransferDirection, TransferSlot

_SLOTS = {
    "raw": TransferSlot(
        direction=TransferDirection.IN, local_path="raw.h5", description="Raw frames (HDF5, IMM, Rigaku)"
    ),
    "qmap": TransferSlot(
        direction=TransferDirection.IN, local_path="qmap.h5", description="q-partition (APS layout)"
    ),
    "result": TransferSlot(
        direction=TransferDirection.OUT, local_path="result.hdf", description="Result file pyXPCSViewer reads"
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
        required=False, default=1.0, type=ParameterType.FLOAT, help="Seconds per frame"
    ),
    "avg": AppParameter(required=False, default=1, type=ParameterType.INT, help="Frames averaged into one"),
    "normalize_frames": AppParameter(required=False, default=False, type=ParameterType.BOOL),
}


def _options(params: dict[str, Any]) -> dict[str, Any]:
    options = {
        key: params[key] for key in ("frames", "delays_per_level", "frame_time", "avg", "normalize_frames")
    }
    return options


class XpcsMultiTau(ApplicationDefinition):
    """Multi-tau g2(q, τ) of one XPCS dataset, written where pyXPCSViewer reads it."""

    transfer_slots = _SLOTS
    parameters = _COMMON

    def run(self, **params: Any) -> JsonValue:
        from beambridge.xpcs.pipeline import run_multitau

        summary: dict[str, JsonValue] = run_multitau(
            params["raw"], params["qmap"], params["output"], **_options(params)
        )
        return summary


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
        return summary
