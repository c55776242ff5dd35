"""Raw-data readers: HDF5 (``hdf5``), APS IMM (``imm``), Rigaku ``.bin`` (``rigaku``), behind one
small interface (:class:`~beambridge.xpcs.io.base.FrameReader`); :func:`open_frames` picks the reader
from the file's name."""

from __future__ import annotations

from pathlib import Path

from beambridge.xpcs.errors import InputFileError
from beambridge.xpcs.io.base import FrameReader

__all__ = ["FrameReader", "open_frames"]


def open_frames(
    path: str | Path, shape: tuple[int, int] | None = None, n_frames: int | None = None
) -> FrameReader:
    """Open a raw-data file, choosing the reader from its name.

    ``*.h5, *.hdf, *.hdf5, *.nxs`` → :class:`~beambridge.xpcs.io.hdf5.Hdf5Frames`;
    ``*.imm`` → :class:`~beambridge.xpcs.io.imm.ImmFrames`;
    ``*.bin``, ``*.bin.000`` → :class:`~beambridge.xpcs.io.rigaku.RigakuFrames` (``shape`` needed
    unless the detector is the 512×1024 Rigaku 500K; ``n_frames``, the acquisition's frame count,
    because the format does not store it and trailing empty frames are otherwise invisible).
    """
    from beambridge.xpcs.io.hdf5 import Hdf5Frames
    from beambridge.xpcs.io.imm import ImmFrames
    from beambridge.xpcs.io.rigaku import RigakuFrames

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
