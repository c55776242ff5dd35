"""Rigaku ``.bin`` photon-event files: little-endian uint64 words, one per (frame, pixel) event.

Word layout (XPCS-Eigen ``io/rigaku.cpp``)::

    frame = w >> 40            pixel = (w >> 16) & 0xFFFFF (flat row-major index)      count = w & 0x7FF

Words are in frame order. The number of frames is the last frame number + 1; the detector shape is
not stored (512×1024 for a Rigaku 500K).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from beambridge.xpcs.errors import InputFileError
from beambridge.xpcs.frames import Events, events_to_dense


def encode_rigaku(frame: npt.ArrayLike, pixel: npt.ArrayLike, count: npt.ArrayLike) -> npt.NDArray[np.uint64]:
    """Pack events into Rigaku words (inverse of the reader; frame order is the caller's)."""
    f = np.asarray(frame, dtype=np.uint64)
    p = np.asarray(pixel, dtype=np.uint64)
    c = np.asarray(count, dtype=np.uint64)
    return np.asarray(
        (f << np.uint64(40)) | ((p & np.uint64(0xFFFFF)) << np.uint64(16)) | (c & np.uint64(0x7FF))
    )


class RigakuFrames:
    """Sparse frames from a Rigaku ``.bin`` file."""

    is_sparse = True
    frame_time: float | None = None  # the format records no times
    count_time: float | None = None

    def __init__(self, path: str | Path, shape: tuple[int, int] = (512, 1024)) -> None:
        self.path = str(path)
        size = Path(path).stat().st_size
        if size == 0 or size % 8:
            raise InputFileError(
                path, f"truncated Rigaku file: {size} bytes is not a whole number of 8-byte words"
            )
        self._words = np.memmap(path, dtype="<u8", mode="r")
        self.shape = (int(shape[0]), int(shape[1]))
        frames = self._words >> np.uint64(40)
        if np.any(frames[1:] < frames[:-1]):
            raise InputFileError(path, "Rigaku events are not in frame order")
        self.n_frames = int(frames[-1]) + 1
        # first word of every frame (frames may be empty)
        self._frame_start = np.searchsorted(frames, np.arange(self.n_frames + 1, dtype=np.uint64)).astype(
            np.int64
        )
        self.dtype = np.dtype(np.uint16)
        pix_max = int(((self._words >> np.uint64(16)) & np.uint64(0xFFFFF)).max())
        if pix_max >= self.shape[0] * self.shape[1]:
            raise InputFileError(
                path, f"pixel index {pix_max} lies outside a {self.shape[0]}x{self.shape[1]} detector"
            )

    def read_events(self, start: int, stop: int) -> Events:
        """Frames ``start … stop-1`` as events."""
        a, b = int(self._frame_start[start]), int(self._frame_start[stop])
        w = np.asarray(self._words[a:b])
        ptr = (self._frame_start[start : stop + 1] - a).astype(np.int64)
        pix = ((w >> np.uint64(16)) & np.uint64(0xFFFFF)).astype(np.int64)
        val = (w & np.uint64(0x7FF)).astype(np.float64)
        return ptr, pix, val

    def read_dense(self, start: int, stop: int) -> npt.NDArray[np.generic]:
        """Frames ``start … stop-1`` expanded to shape (stop-start, H, W), uint16."""
        return events_to_dense(self.read_events(start, stop), stop - start, self.shape, np.uint16)

    def close(self) -> None:
        """Release the memory map."""
        del self._words
