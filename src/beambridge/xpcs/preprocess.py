"""Frame selection and corrections applied before correlation (XPCS-Eigen's order).

For output frame j (0-based) with ``start``, ``stride`` s and ``avg`` a, the raw frames used are
``start + j·s·a + i·s`` for ``i < a``; the output is their mean. N = (stop - start) // (s·a).

Each raw frame v is corrected before averaging:

1. dark (if given): per-pixel mean D and population std σ_D of the **raw** values of the dark frames
   of the file; ``v = max(v - D, 0)``, then ``v = 0`` unless ``v > lld + sigma·σ_D``;
2. flat field: ``v *= flat``;
3. frame-sum normalisation (optional, on output frames): ``v / (mean(frame) / mean over frames)``.

Without corrections the raw integer frames go to the correlator untouched (no float copy), and sparse
sources stay sparse.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from beambridge.xpcs.errors import OptionError, ShapeMismatchError
from beambridge.xpcs.events import Events
from beambridge.xpcs.io.base import FrameReader, InPlaceReader


@dataclass(frozen=True)
class FrameSelection:
    """Which raw frames make the analysed series (0-based, ``stop`` exclusive, None = to the end)."""

    start: int = 0
    stop: int | None = None
    stride: int = 1
    avg: int = 1

    @classmethod
    def parse(cls, text: str | None, avg: int = 1) -> FrameSelection:
        """Parse ``"a:b:stride"`` (any part may be empty), e.g. ``"100:"`` or ``"::2"``."""
        if not text:
            return cls(avg=avg)
        parts = text.split(":")
        if len(parts) > 3:
            raise OptionError(f"frame range {text!r} must look like start:stop:stride")
        try:
            vals = [int(p) if p.strip() else None for p in parts] + [None] * (3 - len(parts))
        except ValueError:
            raise OptionError(f"frame range {text!r} must contain integers") from None
        return cls(start=vals[0] or 0, stop=vals[1], stride=vals[2] or 1, avg=avg)

    def resolve(self, n_raw: int) -> tuple[int, int]:
        """Return (start, N) for a file of ``n_raw`` frames, checking the range."""
        stop = n_raw if self.stop is None else self.stop
        if self.stride < 1 or self.avg < 1:
            raise OptionError("stride and avg must be >= 1")
        if not 0 <= self.start < stop <= n_raw:
            raise OptionError(f"frame range {self.start}:{stop} does not fit the {n_raw} frames of the file")
        n = (stop - self.start) // (self.stride * self.avg)
        if n < 2:
            raise OptionError(
                f"frame range {self.start}:{stop} with stride {self.stride} and avg {self.avg} "
                f"leaves {n} frames"
            )
        return self.start, n

    def raw_indices(self, start: int, j0: int, j1: int) -> npt.NDArray[np.int64]:
        """Raw frame numbers for output frames j0 … j1-1, shape (j1-j0, avg)."""
        j = np.arange(j0, j1, dtype=np.int64)[:, None]
        i = np.arange(self.avg, dtype=np.int64)[None, :]
        return start + j * self.stride * self.avg + i * self.stride


@dataclass
class Corrections:
    """Dark, flat and normalisation settings (all off by default)."""

    dark: tuple[int, int] | None = None
    lld: float = 0.0
    sigma: float = 0.0
    flat: npt.NDArray[np.float64] | None = None
    normalize_frames: bool = False

    @property
    def any(self) -> bool:
        """Whether any correction changes the values."""
        return self.dark is not None or self.flat is not None or self.normalize_frames


class FrameStream:
    """Selected, corrected frames of a reader, delivered in blocks.

    Attributes:
        n_frames: N after selection. shape: (H, W).
        sparse: whether blocks are events (no corrections, avg 1, sparse source).
    """

    def __init__(self, reader: FrameReader, selection: FrameSelection, corrections: Corrections) -> None:
        self.reader = reader
        self.selection = selection
        self.corr = corrections
        self.start, self.n_frames = selection.resolve(reader.n_frames)
        self.shape = reader.shape
        self.sparse = reader.is_sparse and not corrections.any and selection.avg == 1
        if corrections.flat is not None and corrections.flat.shape != reader.shape:
            raise ShapeMismatchError(
                reader.path, f"flat field {corrections.flat.shape} differs from frames {reader.shape}"
            )
        self._dark_mean: npt.NDArray[np.float64] | None = None
        self._dark_std: npt.NDArray[np.float64] | None = None
        if corrections.dark is not None:
            a, b = corrections.dark
            if not 0 <= a < b <= reader.n_frames:
                raise OptionError(
                    f"dark frames {a}:{b} do not fit the {reader.n_frames} frames of {reader.path}"
                )
            # statistics of the raw dark values: they are subtracted from raw values, before the flat
            # field (XPCS-Eigen multiplies the dark by the flat first, which is right only for flat = 1)
            d = reader.read_dense(a, b).astype(np.float64)
            self._dark_mean = d.mean(axis=0)
            self._dark_std = d.std(axis=0)
        self._frame_scale: npt.NDArray[np.float64] | None = None
        if corrections.normalize_frames:
            self._frame_scale = self._frame_scales()

    def _correct(self, raw: npt.NDArray[np.generic]) -> npt.NDArray[np.float64]:
        v = raw.astype(np.float64)
        if self._dark_mean is not None and self._dark_std is not None:
            v = np.maximum(v - self._dark_mean, 0.0)
            v[v <= self.corr.lld + self.corr.sigma * self._dark_std] = 0.0
        if self.corr.flat is not None:
            v *= self.corr.flat
        return v

    def _output_frames(self, j0: int, j1: int) -> npt.NDArray[np.generic]:
        sel = self.selection
        idx = sel.raw_indices(self.start, j0, j1)
        if sel.stride == 1 and sel.avg == 1:
            raw = self.reader.read_dense(int(idx[0, 0]), int(idx[-1, 0]) + 1)
        else:
            lo, hi = int(idx.min()), int(idx.max()) + 1
            raw = self.reader.read_dense(lo, hi)[(idx - lo).ravel()]
        if not self.corr.dark and self.corr.flat is None and sel.avg == 1:
            return raw
        v = self._correct(raw) if (self.corr.dark or self.corr.flat is not None) else raw.astype(np.float64)
        if sel.avg > 1:
            v = v.reshape(j1 - j0, sel.avg, *self.shape).mean(axis=1)
        return v

    def _frame_scales(self) -> npt.NDArray[np.float64]:
        means = np.empty(self.n_frames)
        for j0 in range(0, self.n_frames, 64):
            j1 = min(self.n_frames, j0 + 64)
            means[j0:j1] = np.asarray(self._output_frames(j0, j1), dtype=np.float64).mean(axis=(1, 2))
        overall = means.mean()
        if overall <= 0:
            raise OptionError(
                f"frame-sum normalisation impossible: the frames of {self.reader.path} are all zero"
            )
        with np.errstate(divide="ignore"):
            scale = np.where(means > 0, overall / means, 0.0)
        return scale

    @property
    def reads_in_place(self) -> bool:
        """Whether blocks can be read straight into one reused buffer (see :meth:`blocks`): raw dense
        frames, every one of them, no correction, and a reader that reads into a given buffer."""
        sel = self.selection
        return (
            not self.sparse
            and not self.corr.any
            and sel.stride == 1
            and sel.avg == 1
            and isinstance(self.reader, InPlaceReader)
        )

    def blocks(
        self,
        frames_per_block: int,
        *,
        most: int | None = None,
        ready: Callable[[], int] | None = None,
        reuse: bool = False,
    ) -> Iterator[tuple[int, npt.NDArray[np.generic] | Events]]:
        """Yield ``(j0, block)`` for consecutive output frames; block is dense (b, H, W) or events.

        With ``ready`` (raw frames on disk now, for a file still being written) a block grows past
        ``frames_per_block`` up to ``most`` frames when that many are already there: short blocks while
        keeping up with the detector, long ones (cheaper per frame) when catching up.

        ``reuse`` (with :attr:`reads_in_place`, without ``ready``): every block is a view of one buffer
        the reader fills, so **each block must be used before the next is asked for**."""
        if reuse and self.reads_in_place and ready is None:
            yield from self._blocks_in_place(frames_per_block)
            return
        j0 = 0
        while j0 < self.n_frames:
            size = frames_per_block
            if ready is not None and most is not None and most > size:
                step = self.selection.stride * self.selection.avg
                on_disk = (ready() - self.start) // step
                size = max(size, min(most, on_disk - j0))
            j1 = min(self.n_frames, j0 + size)
            yield from self._block(j0, j1)
            j0 = j1

    def _blocks_in_place(self, frames_per_block: int) -> Iterator[tuple[int, npt.NDArray[np.generic]]]:
        reader = self.reader
        assert isinstance(reader, InPlaceReader)
        size = max(1, min(frames_per_block, self.n_frames))
        buffer = np.empty((size, *self.shape), dtype=reader.dtype)
        for j0 in range(0, self.n_frames, size):
            j1 = min(self.n_frames, j0 + size)
            yield j0, reader.read_dense_into(self.start + j0, buffer[: j1 - j0])

    def _block(self, j0: int, j1: int) -> Iterator[tuple[int, npt.NDArray[np.generic] | Events]]:
        if self.sparse:
            a = self.start + j0 * self.selection.stride
            if self.selection.stride == 1:
                yield j0, self.reader.read_events(a, a + (j1 - j0))
            else:
                yield j0, _strided_events(self.reader, self.selection.raw_indices(self.start, j0, j1)[:, 0])
            return
        block = self._output_frames(j0, j1)
        if self._frame_scale is not None:
            block = np.asarray(block, dtype=np.float64) * self._frame_scale[j0:j1, None, None]
        yield j0, block


def _strided_events(reader: FrameReader, frames: npt.NDArray[np.int64]) -> Events:
    ptrs, pixs, vals = [0], [], []
    for f in frames.tolist():
        _p, x, v = reader.read_events(f, f + 1)
        pixs.append(x)
        vals.append(v)
        ptrs.append(ptrs[-1] + x.size)
    return np.asarray(ptrs, dtype=np.int64), np.concatenate(pixs), np.concatenate(vals)
