"""Rigaku ``.bin`` photon-event files: little-endian uint64 words, one per (frame, pixel) event.

Word layout::

    bits 40-63  frame     (w >> 40)
    bits 16-35  pixel     ((w >> 16) & 0xFFFFF)   flat row-major index: pixel = row·W + col
    bits 11-15  zero
    bits  0-10  count     (w & 0x7FF)             at most 2047

**Pixel order.** The one order read here is the flat **row-major** index, as boost-corr 0.1.7 (the
APS 8-ID-I production correlator, whose result files pyXPCSViewer displays) reads it: an event of
pixel p lands at row ``p // W``, column ``p % W``. XPCS-Eigen (``io/rigaku.cpp``) instead remaps
``p -> (p mod H)·W + p div H`` (column-major); a file read in the other order gives g2 off by tens of
per cent, so the order is fixed and tested (``tests/xpcs/test_rigaku.py``), not guessed.

**Counts.** The count field is 11 bits (XPCS-Eigen masks ``0x7FF``). A word with any of bits 11-15
set holds a count the format cannot (2048 or more, written by a wider writer) or is corrupt: it is
refused, never wrapped (3000 would otherwise read as 952); :func:`encode_rigaku` refuses such counts.

**Frame count.** Words are in frame order and the format stores no frame count: without one given,
the count is the last frame with an event + 1, so trailing empty frames cannot be seen. Pass
``n_frames`` (``--rigaku-frames``) when the acquisition's count is known; a file with events beyond
it is refused. The detector shape is not stored either (512×1024 for a Rigaku 500K).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from beambridge.xpcs.errors import InputFileError, OptionError
from beambridge.xpcs.events import Events, events_to_dense

MAX_COUNT = 0x7FF
MAX_PIXEL = 0xFFFFF
MAX_FRAME = (1 << 24) - 1
_UNUSED_BITS = np.uint64(0xF800)  # bits 11-15


def encode_rigaku(frame: npt.ArrayLike, pixel: npt.ArrayLike, count: npt.ArrayLike) -> npt.NDArray[np.uint64]:
    """Pack events into Rigaku words (inverse of the reader; frame order is the caller's).

    Raises:
        OptionError: a count above 2047, a pixel above 2^20 - 1 or a frame above 2^24 - 1 (the
            format cannot hold them), or a negative value.
    """
    f, p, c = (np.asarray(x, dtype=np.int64) for x in (frame, pixel, count))
    for name, arr, top in (("count", c, MAX_COUNT), ("pixel", p, MAX_PIXEL), ("frame", f, MAX_FRAME)):
        outside = arr[(arr < 0) | (arr > top)]
        if outside.size:
            raise OptionError(f"a Rigaku {name} must lie in 0 … {top}, got {int(outside[0])}")
    return np.asarray(
        (f.astype(np.uint64) << np.uint64(40)) | (p.astype(np.uint64) << np.uint64(16)) | c.astype(np.uint64)
    )


class RigakuFrames:
    """Sparse frames from a Rigaku ``.bin`` file (see the module docstring for the layout)."""

    is_sparse = True
    frame_time: float | None = None  # the format records no times
    count_time: float | None = None

    def __init__(
        self, path: str | Path, shape: tuple[int, int] = (512, 1024), n_frames: int | None = None
    ) -> None:
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
        bad = np.flatnonzero(self._words & _UNUSED_BITS)
        if bad.size:
            w = int(self._words[bad[0]])
            raise InputFileError(
                path,
                f"word {int(bad[0])} (frame {w >> 40}) has bits 11-15 set: a count of {w & 0xFFFF} "
                f"does not fit the 11-bit count field (at most {MAX_COUNT})",
            )
        last = int(frames[-1])
        if n_frames is None:
            self.n_frames = last + 1
        elif n_frames <= last:
            raise InputFileError(
                path, f"holds events of frame {last} but the acquisition has {n_frames} frames"
            )
        else:
            self.n_frames = int(n_frames)
        # first word of every frame (frames may be empty)
        self._frame_start = np.searchsorted(frames, np.arange(self.n_frames + 1, dtype=np.uint64)).astype(
            np.int64
        )
        self.dtype = np.dtype(np.uint16)
        pix_max = int(((self._words >> np.uint64(16)) & np.uint64(MAX_PIXEL)).max())
        if pix_max >= self.shape[0] * self.shape[1]:
            raise InputFileError(
                path, f"pixel index {pix_max} lies outside a {self.shape[0]}x{self.shape[1]} detector"
            )

    def read_events(self, start: int, stop: int) -> Events:
        """Frames ``start … stop-1`` as events."""
        a, b = int(self._frame_start[start]), int(self._frame_start[stop])
        w = np.asarray(self._words[a:b])
        ptr = (self._frame_start[start : stop + 1] - a).astype(np.int64)
        pix = ((w >> np.uint64(16)) & np.uint64(MAX_PIXEL)).astype(np.int64)
        val = (w & np.uint64(MAX_COUNT)).astype(np.float64)
        return ptr, pix, val

    def read_dense(self, start: int, stop: int) -> npt.NDArray[np.generic]:
        """Frames ``start … stop-1`` expanded to shape (stop-start, H, W), uint16."""
        return events_to_dense(self.read_events(start, stop), stop - start, self.shape, np.uint16)

    def close(self) -> None:
        """Release the memory map."""
        del self._words
