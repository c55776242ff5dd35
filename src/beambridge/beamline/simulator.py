"""A simulated beamline: XPCS datasets written into a folder frame by frame, at a steady cadence.

The speckle comes from :func:`beambridge.xpcs.simulate.simulate_speckle` (known dynamics: g2 = 1 +
β·exp(-2Dq²τ)); one stack is simulated per distinct D and then *written again* for each dataset, in
blocks of frames with a flush after each, the way a detector's file writer fills its HDF5 file: the
watcher sees a file that grows and then closes, never a file that appears whole. With ``swmr`` the file is
written as a detector writes for readers that follow it (SWMR mode, the frame count announced), and the
moment each dataset's last frame reached the disk is kept in ``last_frame_at``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import h5py
import numpy as np

from beambridge.xpcs.simulate import SpeckleParameters, simulate_speckle


@dataclass(frozen=True)
class BeamlineRun:
    """What the simulated beamline does."""

    rows: int = 64
    cols: int = 64
    frames: int = 200
    frame_time: float = 5.0e-3
    photons_per_pixel: float = 0.5
    cadence_s: float = 1.0
    write_s: float = 0.2
    blocks: int = 10
    swmr: bool = False


class SimulatedBeamline:
    """Writes datasets ``<prefix>_<NNNN>.h5`` into ``folder``; the q partition lives in ``cache``."""

    def __init__(self, folder: Path, cache: Path, run: BeamlineRun | None = None) -> None:
        self.folder = folder
        self.cache = cache
        self.run = run or BeamlineRun()
        self._stacks: dict[float, np.ndarray] = {}
        self.last_frame_at: dict[Path, float] = {}
        folder.mkdir(parents=True, exist_ok=True)
        cache.mkdir(parents=True, exist_ok=True)
        self.qmap = self.cache / "template_qmap.h5"

    def parameters(self, diffusion: float, seed: int = 0) -> SpeckleParameters:
        """The speckle parameters of one dataset."""
        r = self.run
        return SpeckleParameters(
            shape=(r.rows, r.cols),
            n_frames=r.frames,
            photons_per_pixel=r.photons_per_pixel,
            diffusion=diffusion,
            frame_time=r.frame_time,
            beam_center=(r.cols / 2, r.rows / 2),
            r_min=r.rows / 16,
            r_max=r.rows * 7 / 16,
            seed=seed,
        )

    def stack(self, diffusion: float) -> np.ndarray:
        """The frames of a dataset with diffusion coefficient ``diffusion`` (simulated once, then reused)."""
        if diffusion not in self._stacks:
            target = self.cache / f"template_D{diffusion:.6g}.h5"
            paths = simulate_speckle(target, self.parameters(diffusion, seed=len(self._stacks)))
            qmap = Path(paths.get("qmap", f"{target.with_suffix('')}_qmap.h5"))
            if not self.qmap.exists():
                qmap.replace(self.qmap)
            with h5py.File(target, "r") as handle:
                self._stacks[diffusion] = handle["/entry/data/data"][...]
        return self._stacks[diffusion]

    def write(self, name: str, diffusion: float, *, metadata: dict[str, float | str] | None = None) -> Path:
        """Write one dataset frame block by frame block over ``write_s``; return its path once closed."""
        frames = self.stack(diffusion)
        path = self.folder / name
        r = self.run
        per_block = max(1, -(-frames.shape[0] // r.blocks))
        pause = r.write_s / max(1, r.blocks)
        if r.swmr:
            return self._write_swmr(path, frames, diffusion, per_block, pause, metadata or {})
        with h5py.File(path, "w") as handle:
            handle.attrs["diffusion"] = diffusion
            handle.attrs["frame_time"] = r.frame_time
            for key, value in (metadata or {}).items():
                handle.attrs[key] = value
            handle["/entry/instrument/detector_1/frame_time"] = r.frame_time  # where readers look for it
            data = handle.create_dataset(
                "/entry/data/data",
                shape=frames.shape,
                dtype=frames.dtype,
                chunks=(per_block, *frames.shape[1:]),
            )
            for start in range(0, frames.shape[0], per_block):
                data[start : start + per_block] = frames[start : start + per_block]
                handle.flush()
                if pause:
                    time.sleep(pause)
        self.last_frame_at[path] = time.time()
        return path

    def _write_swmr(
        self,
        path: Path,
        frames: np.ndarray,
        diffusion: float,
        per_block: int,
        pause: float,
        metadata: dict[str, float | str],
    ) -> Path:
        from beambridge.xpcs.io.live import SwmrFrameWriter

        r = self.run
        attrs = {"diffusion": diffusion, "frame_time": r.frame_time, **metadata}
        with SwmrFrameWriter(
            path, frames.shape[1:], frames.shape[0], r.frame_time, dtype=frames.dtype, attrs=attrs
        ) as writer:
            for start in range(0, frames.shape[0], per_block):
                writer.append(frames[start : start + per_block])
                if start + per_block >= frames.shape[0]:
                    self.last_frame_at[path] = time.time()
                elif pause:
                    time.sleep(pause)
        return path

    def datasets(
        self, diffusions: Sequence[float], *, prefix: str = "scan", start: int = 0
    ) -> Iterator[tuple[Path, float]]:
        """Write one dataset per entry of ``diffusions``, one every ``cadence_s``; yield (path, closed at)."""
        next_at = time.monotonic()
        for index, diffusion in enumerate(diffusions, start=start):
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            next_at += self.run.cadence_s
            path = self.write(f"{prefix}_{index:04d}.h5", diffusion)
            yield path, time.time()


def with_frames(run: BeamlineRun, frames: int) -> BeamlineRun:
    """``run`` with another number of frames."""
    return replace(run, frames=frames)
