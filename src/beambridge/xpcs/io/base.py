"""What every raw-data reader offers (:class:`FrameReader`).

Every reader streams: it reads a requested frame range and never the whole stack. Dense sources
return ``(b, H, W)`` arrays in the file's own dtype; sparse sources (compressed IMM, Rigaku) return
:data:`~beambridge.xpcs.events.Events`. ``read_dense`` works for every source (sparse ones are
expanded on the fly).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from beambridge.xpcs.events import Events


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


@runtime_checkable
class InPlaceReader(Protocol):
    """A reader that can also read dense frames into a buffer it is given (one buffer for every block:
    no page faults per block)."""

    dtype: np.dtype[np.generic]

    def read_dense_into(self, start: int, out: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
        """Frames ``start … start + len(out) - 1`` into ``out`` (b, H, W); return ``out``."""
        ...
