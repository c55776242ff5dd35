"""APS IMM files: a sequence of frames, each a 1024-byte header followed by its data.

Header fields used (little-endian byte offsets, from XPCS-Eigen ``io/imm_header.h``)::

    4  compression int32   0 = dense; otherwise sparse ("compressed")
    108 rows int32, 112 cols int32, 116 bytes int32 (bytes per value)
    128 elapsed float64 (clock timestamp), 152 dlen uint32 (number of values), 620 corecotick int32

The frame time is the period of the ``elapsed`` timestamps when they are strictly increasing and
regular (every step within 1 % of the median step); otherwise the file is taken to say nothing.

Dense frames store ``dlen = rows·cols`` uint16 values; compressed frames store ``dlen`` int32 pixel
indices then ``dlen`` uint16 values (6 bytes per event). Sparse detection follows XPCS-Eigen
(``compression != 0``). The file is indexed once on open (headers only), then read by memory map.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from beambridge.xpcs.errors import InputFileError
from beambridge.xpcs.events import Events, events_to_dense

HEADER_BYTES = 1024
HEADER_DTYPE = np.dtype(
    {
        "names": ["mode", "compression", "rows", "cols", "bytes", "elapsed", "dlen", "corecotick"],
        "formats": ["<i4", "<i4", "<i4", "<i4", "<i4", "<f8", "<u4", "<i4"],
        "offsets": [0, 4, 108, 112, 116, 128, 152, 620],
        "itemsize": HEADER_BYTES,
    }
)


class ImmFrames:
    """Frames from an IMM file (dense or compressed)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._mm = np.memmap(path, dtype=np.uint8, mode="r") if Path(path).stat().st_size else None
        if self._mm is None or self._mm.size < HEADER_BYTES:
            raise InputFileError(path, "truncated IMM file: no complete 1024-byte frame header")
        first = self._mm[:HEADER_BYTES].view(HEADER_DTYPE)[0]
        self.is_sparse = int(first["compression"]) != 0
        rows, cols = int(first["rows"]), int(first["cols"])
        if rows <= 0 or cols <= 0 or rows * cols > 1 << 28:
            raise InputFileError(path, f"IMM header gives an impossible frame size {rows}x{cols}")
        self.shape = (rows, cols)
        self._value_dtype = np.dtype("<u2") if int(first["bytes"]) in (0, 2) else np.dtype("<u4")
        per_value = (4 if self.is_sparse else 0) + self._value_dtype.itemsize
        offsets: list[int] = []
        dlens: list[int] = []
        clock: list[float] = []
        tick: list[float] = []
        pos, size = 0, self._mm.size
        while pos < size:
            if pos + HEADER_BYTES > size:
                raise InputFileError(path, f"truncated IMM file: frame {len(offsets)} header is incomplete")
            h = self._mm[pos : pos + HEADER_BYTES].view(HEADER_DTYPE)[0]
            dlen = int(h["dlen"])
            end = pos + HEADER_BYTES + dlen * per_value
            if end > size:
                raise InputFileError(
                    path, f"truncated IMM file: frame {len(offsets)} needs {end} bytes, file has {size}"
                )
            if not self.is_sparse and dlen != rows * cols:
                raise InputFileError(
                    path, f"IMM frame {len(offsets)} holds {dlen} values, expected {rows * cols}"
                )
            offsets.append(pos + HEADER_BYTES)
            dlens.append(dlen)
            clock.append(float(h["elapsed"]))
            tick.append(float(h["corecotick"]))
            pos = end
        self._offsets = np.asarray(offsets, dtype=np.int64)
        self._dlen = np.asarray(dlens, dtype=np.int64)
        self.n_frames = len(offsets)
        self.timestamp_clock = np.asarray(clock)
        self.timestamp_tick = np.asarray(tick)
        self.dtype = self._value_dtype
        self.frame_time = regular_period(self.timestamp_clock)
        self.count_time: float | None = None

    def _frame_values(self, i: int) -> tuple[npt.NDArray[np.int64] | None, npt.NDArray[np.generic]]:
        assert self._mm is not None
        off, n = int(self._offsets[i]), int(self._dlen[i])
        if self.is_sparse:
            idx = self._mm[off : off + 4 * n].view("<i4").astype(np.int64)
            off += 4 * n
        else:
            idx = None
        vals = self._mm[off : off + n * self._value_dtype.itemsize].view(self._value_dtype)
        return idx, vals

    def read_events(self, start: int, stop: int) -> Events:
        """Frames ``start … stop-1`` as events (compressed files only)."""
        if not self.is_sparse:
            raise NotImplementedError("uncompressed IMM frames are dense")
        ptr = np.zeros(stop - start + 1, dtype=np.int64)
        ptr[1:] = np.cumsum(self._dlen[start:stop])
        pix = np.empty(int(ptr[-1]), dtype=np.int64)
        val = np.empty(int(ptr[-1]), dtype=np.float64)
        npix = self.shape[0] * self.shape[1]
        for j, i in enumerate(range(start, stop)):
            idx, v = self._frame_values(i)
            assert idx is not None
            if idx.size and (idx.min() < 0 or idx.max() >= npix):
                raise InputFileError(
                    self.path, f"IMM frame {i} has a pixel index outside the {npix}-pixel frame"
                )
            pix[ptr[j] : ptr[j + 1]] = idx
            val[ptr[j] : ptr[j + 1]] = v
        return ptr, pix, val

    def read_dense(self, start: int, stop: int) -> npt.NDArray[np.generic]:
        """Frames ``start … stop-1``, shape (stop-start, H, W)."""
        if self.is_sparse:
            return events_to_dense(self.read_events(start, stop), stop - start, self.shape, self._value_dtype)
        out = np.empty((stop - start, *self.shape), dtype=self._value_dtype)
        for j, i in enumerate(range(start, stop)):
            out[j] = self._frame_values(i)[1].reshape(self.shape)
        return out

    def close(self) -> None:
        """Release the memory map."""
        self._mm = None


def regular_period(stamps: npt.NDArray[np.float64]) -> float | None:
    """The step of strictly increasing, regular timestamps (within 1 % of the median), else None."""
    if stamps.size < 2:
        return None
    steps = np.diff(stamps)
    if not np.all(np.isfinite(steps)) or np.any(steps <= 0):
        return None
    step = float(np.median(steps))
    return step if float(np.max(np.abs(steps - step))) <= 0.01 * step else None
