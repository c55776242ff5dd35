"""Shared fixtures: small stacks with a q partition built from geometry."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from beambridge.xpcs.qmap import QMap
from beambridge.xpcs.qmap_geometry import build_qmap


def small_qmap(shape: tuple[int, int] = (24, 32), n_q: int = 3, n_phi: int = 2) -> QMap:
    """A q partition of a small detector with a masked beam stop."""
    rows, cols = np.indices(shape)
    mask = np.hypot(cols - 15.5, rows - 11.5) > 3
    return build_qmap(
        shape,
        (15.5, 11.5),
        2.0,
        75e-6,
        10.0,
        n_q=n_q,
        n_phi=n_phi,
        static_q_per_dynamic=2,
        static_phi_per_dynamic=2,
        mask=mask,
    )


def write_raw(path: Path, frames: np.ndarray) -> Path:
    """Raw frames at /entry/data/data."""
    with h5py.File(path, "w") as f:
        f.create_dataset("/entry/data/data", data=frames, chunks=(7, *frames.shape[1:]))
    return path


def write_qmap_file(path: Path, qmap: QMap) -> Path:
    """A q-partition file in the APS layout."""
    with h5py.File(path, "w") as f:
        qmap.write_group(f.create_group("qmap"))
    return path


@pytest.fixture
def small_run(tmp_path: Path) -> tuple[Path, Path, np.ndarray, QMap]:
    """200 Poisson frames (mean 0.6) of 24x32 pixels with a 3-ring x 2-sector partition."""
    rng = np.random.default_rng(7)
    frames = rng.poisson(0.6, (200, 24, 32)).astype(np.uint16)
    qmap = small_qmap()
    return write_raw(tmp_path / "raw.h5", frames), write_qmap_file(tmp_path / "qmap.h5", qmap), frames, qmap
