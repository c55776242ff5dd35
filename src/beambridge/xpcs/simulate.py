"""Speckle stacks with known dynamics, for tests and demonstrations.

Each pixel carries ``M`` independent complex Gaussian fields (modes), each an exact Ornstein–Uhlenbeck
process with the pixel's rate Γ_p = D·q_p² (q_p in Å⁻¹, D in Å²/s):

    E(t+Δt) = a·E(t) + √(1-a²)·ξ,   a = exp(-Γ_p·Δt),   ξ ~ CN(0, 1),   E(0) ~ CN(0, 1)

The intensity ``I = (1/M) Σ_m |E_m|²`` has mean 1 and ``g1(τ) = exp(-Γτ)``; photon counts are
``n ~ Poisson(k̄·I)``, so for every τ ≥ Δt

    g2(q, τ) = 1 + β·exp(-2Γ(q)·τ),   β = 1/M,

exactly (Poisson noise adds no bias at non-zero lag). The stack goes to ``/entry/data/data`` (uint16)
of ``<name>.h5`` with the acquisition metadata a detector writes (``/entry/instrument/detector_1/
frame_time`` and ``count_time``, the incident energy, the start time), the q partition to
``<name>_qmap.h5`` (``/qmap``), the true parameters to ``<name>_truth.json`` and to the attributes of
``/entry/simulation``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from beambridge.xpcs.errors import OptionError
from beambridge.xpcs.qmap import QMap
from beambridge.xpcs.qmap_geometry import build_qmap, pixel_q_phi
from beambridge.xpcs.result_file import atomic_h5, write_metadata


@dataclass(frozen=True)
class SpeckleParameters:
    """True parameters of a simulated run (units: Å, s, keV, m)."""

    shape: tuple[int, int] = (256, 256)
    n_frames: int = 1000
    photons_per_pixel: float = 0.1
    diffusion: float = 2.0e6
    frame_time: float = 1.0e-3
    modes: int = 1
    energy: float = 10.0
    detector_distance: float = 5.0
    pixel_size: float = 75e-6
    beam_center: tuple[float, float] = (128.0, 128.0)
    r_min: float = 16.0
    r_max: float = 112.0
    n_q: int = 9
    n_phi: int = 1
    static_q_per_dynamic: int = 4
    seed: int = 0

    @property
    def contrast(self) -> float:
        """β = 1/M."""
        return 1.0 / self.modes


def _qmap_for(p: SpeckleParameters) -> QMap:
    q, _ = pixel_q_phi(p.shape, p.beam_center, p.detector_distance, p.pixel_size, p.energy)
    rows, cols = np.indices(p.shape)
    r = np.hypot(cols - p.beam_center[0], rows - p.beam_center[1])
    mask = (r >= p.r_min) & (r <= p.r_max)
    if not mask.any():
        raise OptionError("no pixel lies between r_min and r_max")
    return build_qmap(
        p.shape,
        p.beam_center,
        p.detector_distance,
        p.pixel_size,
        p.energy,
        n_q=p.n_q,
        n_phi=p.n_phi,
        static_q_per_dynamic=p.static_q_per_dynamic,
        q_range=(float(q[mask].min()), float(q[mask].max())),
        mask=mask,
    )


def _frame_blocks(p: SpeckleParameters, block: int) -> Iterator[np.ndarray]:
    """The frames of run ``p`` in blocks of up to ``block`` (uint16); the same values for any block."""
    rng = np.random.default_rng(p.seed)
    q, _ = pixel_q_phi(p.shape, p.beam_center, p.detector_distance, p.pixel_size, p.energy)
    a = np.exp(-p.diffusion * q**2 * p.frame_time).astype(np.float32)
    b = np.sqrt(1.0 - a.astype(np.float64) ** 2).astype(np.float32)
    shape = (p.modes, *p.shape)
    inv_sqrt2 = np.float32(np.sqrt(0.5))

    def noise() -> np.ndarray:
        return (rng.standard_normal((*shape, 2), dtype=np.float32) * inv_sqrt2).view(np.complex64)[..., 0]

    field = noise()
    buf = np.empty((block, *p.shape), dtype=np.uint16)
    for t0 in range(0, p.n_frames, block):
        nb = min(block, p.n_frames - t0)
        for k in range(nb):
            if t0 + k:
                field = a * field + b * noise()
            intensity = (field.real**2 + field.imag**2).mean(axis=0)
            buf[k] = rng.poisson(p.photons_per_pixel * intensity)
        yield buf[:nb]


def _sample_name(p: SpeckleParameters) -> str:
    return f"simulated speckle, D = {p.diffusion:g} Å²/s, seed {p.seed}"


def simulate_speckle(
    out: str | Path, params: SpeckleParameters | None = None, *, live: bool = False
) -> dict[str, str]:
    """Write a simulated run to ``out`` (``.h5``) plus its q partition and truth; return the paths.

    ``live=True`` plays a detector: the q partition and truth are written first, then the frames are
    appended to ``out`` in real time (one frame per ``frame_time``) through an HDF5 SWMR writer
    (:class:`~beambridge.xpcs.io.live.SwmrFrameWriter`) that ``correlate(..., follow=True)`` can
    follow; the call returns when the last frame is written. The frames are the same as without it.
    """
    p = params or SpeckleParameters()
    if p.n_frames < 2 or p.modes < 1 or p.photons_per_pixel <= 0 or p.diffusion < 0 or p.frame_time <= 0:
        raise OptionError(
            "need n_frames >= 2, modes >= 1, photons_per_pixel > 0, diffusion >= 0, frame_time > 0"
        )
    out = Path(out)
    stem = out.with_suffix("")
    qmap_path = Path(f"{stem}_qmap.h5")
    truth_path = Path(f"{stem}_truth.json")
    paths = {"raw": str(out), "qmap": str(qmap_path), "truth": str(truth_path)}
    if live:
        _write_qmap_and_truth(p, qmap_path, truth_path)
        _play(p, out)
        return paths
    with atomic_h5(out) as f:
        ds = f.create_dataset(
            "/entry/data/data",
            shape=(p.n_frames, *p.shape),
            dtype=np.uint16,
            chunks=(min(16, p.n_frames), *p.shape),
        )
        t0 = 0
        for frames in _frame_blocks(p, 64):
            ds[t0 : t0 + frames.shape[0]] = frames
            t0 += frames.shape[0]
        write_metadata(
            f,
            energy=p.energy,
            frame_time=p.frame_time,
            count_time=p.frame_time,
            start_time=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        f["/entry/sample/name"] = _sample_name(p)
        sim = f.create_group("/entry/simulation")
        for key, value in asdict(p).items():
            sim.attrs[key] = value
        sim.attrs["contrast"] = p.contrast
    _write_qmap_and_truth(p, qmap_path, truth_path)
    return paths


def _play(p: SpeckleParameters, out: Path) -> None:
    """Append the frames to ``out`` as a detector would: in real time, visible to SWMR readers."""
    from beambridge.xpcs.io.live import SwmrFrameWriter

    block = max(1, min(16, int(0.02 / p.frame_time)))  # appends about every 20 ms
    with SwmrFrameWriter(out, p.shape, p.n_frames, p.frame_time, sample=_sample_name(p)) as writer:
        start = time.perf_counter()
        for frames in _frame_blocks(p, block):
            due = start + (writer.written + frames.shape[0]) * p.frame_time
            time.sleep(max(0.0, due - time.perf_counter()))
            writer.append(frames)


def _write_qmap_and_truth(p: SpeckleParameters, qmap_path: Path, truth_path: Path) -> None:
    qmap = _qmap_for(p)
    with atomic_h5(qmap_path) as f:
        qmap.write_group(f.create_group("qmap"))
    truth = {
        **asdict(p),
        "contrast": p.contrast,
        "model": "g2 = 1 + contrast*exp(-2*diffusion*q^2*tau)",
        "units": {
            "diffusion": "A^2/s",
            "frame_time": "s",
            "energy": "keV",
            "detector_distance": "m",
            "pixel_size": "m",
            "r_min": "pixel",
            "r_max": "pixel",
        },
    }
    truth_path.write_text(json.dumps(truth, indent=2))
