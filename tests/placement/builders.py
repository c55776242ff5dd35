"""Hand-built sites and jobs for the placement tests."""

from __future__ import annotations

from typing import Any

from beambridge.placement import AppSpec, JobRequest, SitePriors, SiteSnapshot
from beambridge.placement.estimators import RunTimeEstimate
from beambridge.schemas.apps import AppParameter, ParameterType, TransferDirection, TransferSlot

APP = "XpcsMultiTau"
SLOTS = {
    "raw": TransferSlot(direction=TransferDirection.IN, local_path="raw.h5"),
    "result": TransferSlot(direction=TransferDirection.OUT, local_path="result.hdf", required=False),
}
PARAMETERS = {
    "frame_time": AppParameter(type=ParameterType.FLOAT),
    "fit": AppParameter(type=ParameterType.BOOL, required=False, default=False),
}
XPCS = AppSpec(APP, PARAMETERS, SLOTS)


def site(
    name: str,
    *,
    run_s: float | None = 100.0,
    slots: int = 8,
    free: int | None = None,
    locations: frozenset[str] = frozenset({"aps"}),
    **fields: Any,
) -> SiteSnapshot:
    """A site running XPCS with ``slots`` slots in running pilots (all free unless said), whose measured
    run time is ``run_s`` (``None``: no history, the prior of 600 s applies)."""
    measured = RunTimeEstimate(run_s, spread=1.5, samples=10, source="history") if run_s is not None else None
    run_times = {APP: measured} if measured is not None else {}
    fields.setdefault("priors", SitePriors(transfer_rate_bps=200e6, transfer_overhead_s=5.0))
    return SiteSnapshot(
        name,
        {APP: XPCS},
        locations,
        running_slots=slots,
        free_slots=slots if free is None else free,
        run_times=run_times,
        **fields,
    )


def job(key: int | str, **fields: Any) -> JobRequest:
    """An XPCS job with a 1 GB input at ``aps`` and a 50 MB result."""
    fields.setdefault("parameters", {"frame_time": 1e-3})
    fields.setdefault("transfers", {"raw": "aps:/data/A001.h5", "result": "aps:/results/A001.hdf"})
    fields.setdefault("input_bytes", {"aps": 1e9})
    fields.setdefault("output_bytes", {"aps": 5e7})
    return JobRequest(key, APP, **fields)
