"""Detector frame sources: raw HDF5, APS IMM and Rigaku ``.bin``, behind one small interface.

Every reader streams: it reads a requested frame range and never the whole stack. Dense sources
return ``(b, H, W)`` arrays in the file's own dtype; sparse sources (compressed IMM, Rigaku) return
events ``(frame_ptr, pixel, value)`` where frame t of the range owns
``pixel[frame_ptr[t]:frame_ptr[t+1]]`` (flat row-major detector indices) and the same slice of
``value``. ``read_dense`` works for every source (sparse ones are expanded on the fly).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from beambridge.xpcs.errors import InputFileError

Events = tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]]


class FrameReader(Protocol):
    """What the analysis needs from a raw-data file."""

    path: str
    shape: tuple[int, int]
    n_frames: int
    is_sparse: bool
    frame_time: float | None
    """Seconds from one frame to the next as the file records it (None: the file does not say)."""
    count_time: float | None
    """Exposure of one frame in seconds as the file records it (None: the file does not say)."""

    def read_dense(self, start: int, stop: int) -> npt.NDArray[np.generic]:
        """Frames ``start … stop-1`` as an array of shape (stop-start, H, W)."""
        ...

    def read_events(self, start: int, stop: int) -> Events:
        """Frames ``start … stop-1`` as events (sparse sources only)."""
        ...

    def close(self) -> None:
        """Release the file."""
        ...


def events_to_dense(events: Events, n: int, shape: tuple[int, int], dtype: npt.DTypeLike) -> np.ndarray:
    """Expand events of ``n`` frames to a dense (n, H, W) array (duplicate pixels are summed)."""
    frame_ptr, pixel, value = events
    out = np.zeros((n, shape[0] * shape[1]), dtype=dtype)
    rows = np.repeat(np.arange(n), np.diff(frame_ptr))
    np.add.at(out, (rows, pixel), value.astype(out.dtype))
    return out.reshape(n, *shape)


def open_frames(
    path: str | Path, shape: tuple[int, int] | None = None, n_frames: int | None = None
) -> FrameReader:
    """Open a raw-data file, choosing the reader from its name.

    ``*.h5, *.hdf, *.hdf5, *.nxs`` → :class:`~beambridge.xpcs.frames_hdf5.Hdf5Frames`;
    ``*.imm`` → :class:`~beambridge.xpcs.frames_imm.ImmFrames`;
    ``*.bin``, ``*.bin.000`` → :class:`~beambridge.xpcs.frames_rigaku.RigakuFrames` (``shape`` needed
    unless the detector is the 512×1024 Rigaku 500K; ``n_frames``, the acquisition's frame count,
    because the format does not store it and trailing empty frames are otherwise invisible).
    """
    from beambridge.xpcs.frames_hdf5 import Hdf5Frames
    from beambridge.xpcs.frames_imm import ImmFrames
    from beambridge.xpcs.frames_rigaku import RigakuFrames

    p = Path(path)
    if not p.is_file():
        raise InputFileError(p, "raw-data file does not exist")
    name = p.name.lower()
    if name.endswith((".h5", ".hdf", ".hdf5", ".nxs")):
        return Hdf5Frames(p)
    if name.endswith(".imm"):
        return ImmFrames(p)
    if ".bin" in name:
        return RigakuFrames(p, shape or (512, 1024), n_frames)
    with p.open("rb") as f:
        magic = f.read(8)
    if magic.startswith(b"\x89HDF"):
        return Hdf5Frames(p)
    raise InputFileError(p, "unknown raw-data format (expected .h5/.hdf, .imm or Rigaku .bin)")
