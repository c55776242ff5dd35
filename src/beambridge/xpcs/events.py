"""Sparse frames as photon events, the form shared by the event readers and the correlators.

``Events = (frame_ptr, pixel, value)``: frame t of a block owns ``pixel[frame_ptr[t]:frame_ptr[t+1]]``
(flat row-major detector indices) and the same slice of ``value``. Kept apart from the readers
(:mod:`beambridge.xpcs.io`) so that readers, pre-processing and correlators all depend on it and not on
each other.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Events = tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]]


def events_to_dense(events: Events, n: int, shape: tuple[int, int], dtype: npt.DTypeLike) -> np.ndarray:
    """Expand events of ``n`` frames to a dense (n, H, W) array (duplicate pixels are summed)."""
    frame_ptr, pixel, value = events
    out = np.zeros((n, shape[0] * shape[1]), dtype=dtype)
    rows = np.repeat(np.arange(n), np.diff(frame_ptr))
    np.add.at(out, (rows, pixel), value.astype(out.dtype))
    return out.reshape(n, *shape)
