"""Result files in the layout pyXPCSViewer (``xpcs-viewer`` 1.2.2) reads — the boost-corr Nexus layout.

::

    /entry/start_time                                   str (ISO 8601)
    /entry/instrument/incident_beam/incident_energy     keV
    /entry/instrument/detector_1/{frame_time, count_time}  s
    /xpcs/qmap/*                                        the q partition, group attribute ``hash``
    /xpcs/multitau/delay_list                           (n_tau,) int64, frames (× frame_time·stride·avg = s)
    /xpcs/multitau/normalized_g2, normalized_g2_err     (n_tau, n_dynamic) float32; the error is the
                                                        jackknife one (√ of the covariance's diagonal)
    /xpcs/multitau/normalized_g2_cov                    (n_dynamic, n_tau, n_tau) float64, covariance
                                                        of g2 across delays (pixel-group jackknife)
    /xpcs/multitau/normalized_g2_err_pixel_spread       (n_tau, n_dynamic) XPCS-Eigen's error bar
    /xpcs/multitau/config/*                             stride_frame, avg_frame, delays_per_level, …
    /xpcs/temporal_mean/scattering_2d                   (1, H, W) float32, time-mean intensity
    /xpcs/temporal_mean/scattering_1d                   (1, n_static) float32
    /xpcs/temporal_mean/scattering_1d_segments          (n_seg, n_static) float32
    /xpcs/spatial_mean/intensity_vs_time                (2, N): frame number, mean intensity per pixel
    /xpcs/twotime/correlation_map/c2_NNNNN              (N, N) float32, upper triangle of C
    /xpcs/twotime/{normalized_g2 (N, n_bins), normalized_g2_segments (w, n_seg, n_bins),
                   processed_bins (n_bins,) 1-based, config/*}
    /xpcs/rawdata_path                                  str

The file is written to ``<out>.partial-<pid>`` and renamed into place only when complete, so a
failure never leaves a half-written result under the requested name.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt

from beambridge.xpcs.errors import InputFileError, MissingDatasetError
from beambridge.xpcs.qmap import QMap, read_qmap


@contextlib.contextmanager
def atomic_h5(out: str | Path) -> Iterator[h5py.File]:
    """Open a temporary HDF5 file beside ``out``; rename it to ``out`` on success, delete it on error."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    try:
        with h5py.File(tmp, "w") as f:
            yield f
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def write_metadata(
    f: h5py.File, energy: float, frame_time: float, count_time: float, start_time: str
) -> None:
    """Write the ``/entry`` metadata pyXPCSViewer requires."""
    f["/entry/start_time"] = start_time
    f["/entry/instrument/incident_beam/incident_energy"] = np.float64(energy)
    f["/entry/instrument/incident_beam/incident_energy"].attrs["units"] = "keV"
    f["/entry/instrument/detector_1/frame_time"] = np.float64(frame_time)
    f["/entry/instrument/detector_1/frame_time"].attrs["units"] = "s"
    f["/entry/instrument/detector_1/count_time"] = np.float64(count_time)
    f["/entry/instrument/detector_1/count_time"].attrs["units"] = "s"


def write_config(group: h5py.Group, config: dict[str, Any]) -> None:
    """Write analysis options as scalar datasets (strings for anything that is not a number)."""
    for key, value in config.items():
        if value is None:
            value = "none"
        if isinstance(value, bool):
            value = int(value)
        group[key] = value if isinstance(value, (int, float, str)) else str(value)


def write_qmap(f: h5py.File, qmap: QMap) -> None:
    """Copy the q partition to ``/xpcs/qmap`` (with its ``hash`` attribute)."""
    qmap.write_group(f.require_group("/xpcs/qmap"))


def as_f32(a: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """float32 copy (the on-disk precision of every g2 and intensity dataset)."""
    return np.asarray(a, dtype=np.float32)


@dataclass
class MultitauFile:
    """What :func:`read_multitau` returns: delays in seconds and g2 per dynamic bin."""

    path: str
    delay_s: npt.NDArray[np.float64]
    g2: npt.NDArray[np.float64]
    g2_err: npt.NDArray[np.float64]
    qmap: QMap
    frame_time_s: float
    n_frames: int | None = None
    """Frames correlated (after stride/averaging), when the file says."""
    raw_path: str | None = None
    """The raw-data file the result came from, when the file says."""
    sample: str | None = None
    """``/entry/sample/name``, when the file has it."""
    g2_cov: npt.NDArray[np.float64] | None = None
    """(n_dynamic, n_tau, n_tau) covariance of g2 across delays, when the file has it."""


def _text(f: h5py.File, key: str) -> str | None:
    if key not in f:
        return None
    value = f[key][()]
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def read_multitau(path: str | Path) -> MultitauFile:
    """Read the multi-tau result of a file written by :mod:`beambridge.xpcs` (or boost-corr)."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "result file does not exist")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise InputFileError(path, f"not a readable HDF5 file ({exc})") from None
    with f:
        for key in (
            "/xpcs/multitau/normalized_g2",
            "/xpcs/multitau/delay_list",
            "/entry/instrument/detector_1/frame_time",
        ):
            if key not in f:
                raise MissingDatasetError(path, key)
        g2 = np.asarray(f["/xpcs/multitau/normalized_g2"][()], dtype=np.float64)
        err = np.asarray(f["/xpcs/multitau/normalized_g2_err"][()], dtype=np.float64)
        tau = np.asarray(f["/xpcs/multitau/delay_list"][()], dtype=np.float64).ravel()
        t0 = float(f["/entry/instrument/detector_1/frame_time"][()])
        cfg = f["/xpcs/multitau/config"]
        step = t0 * float(cfg["stride_frame"][()]) * float(cfg["avg_frame"][()])
        n_frames = int(cfg["num_frames"][()]) if "num_frames" in cfg else None
        raw_path = _text(f, "/xpcs/rawdata_path")
        sample = _text(f, "/entry/sample/name")
        cov = None
        if "/xpcs/multitau/normalized_g2_cov" in f:
            cov = np.asarray(f["/xpcs/multitau/normalized_g2_cov"][()], dtype=np.float64)
            if cov.shape != (g2.shape[1], g2.shape[0], g2.shape[0]):
                raise InputFileError(
                    path, f"normalized_g2_cov has shape {cov.shape}, not (n_q, n_tau, n_tau)"
                )
    qmap = read_qmap(path, "/xpcs/qmap")
    return MultitauFile(str(path), tau * step, g2, err, qmap, step, n_frames, raw_path, sample, cov)


@dataclass
class TwoTimeFile:
    """The two-time maps of a result file: ``maps[k]`` is C(t1, t2), symmetric (N, N), of dynamic bin
    ``bins[k]`` (1-based); ``step_s`` the time between analysed frames."""

    path: str
    bins: list[int]
    maps: list[npt.NDArray[np.float64]]
    step_s: float
    qmap: QMap
    n_frames: int
    raw_path: str | None = None
    sample: str | None = None


def read_twotime(path: str | Path) -> TwoTimeFile | None:
    """The two-time maps of a result file (None if it has none), rebuilt as full symmetric matrices
    from the stored upper triangles."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "result file does not exist")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise InputFileError(path, f"not a readable HDF5 file ({exc})") from None
    with f:
        if "/xpcs/twotime/correlation_map" not in f:
            return None
        for key in ("/xpcs/twotime/processed_bins", "/entry/instrument/detector_1/frame_time"):
            if key not in f:
                raise MissingDatasetError(path, key)
        bins = [int(b) for b in np.asarray(f["/xpcs/twotime/processed_bins"][()]).ravel()]
        maps = []
        for k in range(1, len(bins) + 1):
            key = f"/xpcs/twotime/correlation_map/c2_{k:05d}"
            if key not in f:
                raise MissingDatasetError(path, key)
            half = np.asarray(f[key][()], dtype=np.float64)
            maps.append(np.triu(half) + np.triu(half, 1).T)
        step = float(f["/entry/instrument/detector_1/frame_time"][()])
        cfg = f.get("/xpcs/twotime/config")
        if isinstance(cfg, h5py.Group):
            for key in ("stride_frame", "avg_frame"):
                if key in cfg:
                    step *= float(cfg[key][()])
        raw_path = _text(f, "/xpcs/rawdata_path")
        sample = _text(f, "/entry/sample/name")
    qmap = read_qmap(path, "/xpcs/qmap")
    n = maps[0].shape[0] if maps else 0
    return TwoTimeFile(str(path), bins, maps, step, qmap, n, raw_path, sample)
