"""Two-time correlation C(t1, t2) for chosen dynamic bins (XPCS-Eigen ``Corr::twotime``).

Each pixel p of dynamic bin q is divided by its static bin's mean intensity (over the bin's pixels and
all frames, XPCS-Eigen's StaticMap smoothing with the "Average" filter), Ĩ_p(t) = I_p(t) / sg_p, and

    C_q(t1, t2) = (1/N_q) Σ_{p∈q} Ĩ_p(t1) Ĩ_p(t2)          shape (N, N), symmetric

The diagonal average g2_q(tau) = mean_t C_q(t, t+tau) (tau = 0 … N-1) is comparable with multi-tau
g2 for tau >= 1; ``segments`` splits the run into n_seg equal windows of w = N // n_seg frames and
diagonal-averages each window's own block: shape (w, n_seg). Memory: the selected pixels' frames
(N × n_selected float32) plus one N×N matrix at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


def diagonal_mean(c2: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """mean_t c2[t, t+tau] for tau = 0 … n-1, shape (n,)."""
    n = c2.shape[0]
    return np.asarray([np.diagonal(c2, offset=tau).mean() for tau in range(n)])


@dataclass
class TwoTimeBin:
    """C(t1, t2) of one dynamic bin (1-based ``bin``) with its diagonal averages."""

    bin: int
    c2: npt.NDArray[np.float64]
    g2: npt.NDArray[np.float64]
    g2_segments: npt.NDArray[np.float64]


class TwoTimeCollector:
    """Gathers the frames of the pixels of chosen dynamic bins while the stack streams past.

    Args:
        n_frames: N. pixels: flat detector indices per selected bin (dict bin → indices).
        static_of_pixel: dict bin → 0-based static bin of each of those pixels.
    """

    def __init__(
        self,
        n_frames: int,
        pixels: dict[int, npt.NDArray[np.int64]],
        static_of_pixel: dict[int, npt.NDArray[np.int64]],
    ) -> None:
        self.bins = sorted(pixels)
        self._pix = np.concatenate([pixels[b] for b in self.bins]) if self.bins else np.zeros(0, np.int64)
        self._static = {b: static_of_pixel[b] for b in self.bins}
        bounds = np.cumsum([0] + [pixels[b].size for b in self.bins])
        self._slices = {b: slice(int(bounds[i]), int(bounds[i + 1])) for i, b in enumerate(self.bins)}
        self._data = np.zeros((n_frames, self._pix.size), dtype=np.float32)
        self._col = {int(p): i for i, p in enumerate(self._pix.tolist())}
        self.n_frames = n_frames

    def add_dense(self, j0: int, block: npt.NDArray[np.generic]) -> None:
        """Store frames ``j0 …`` of a dense block (b, H, W) or (b, H·W)."""
        flat = block.reshape(block.shape[0], -1)
        self._data[j0 : j0 + flat.shape[0]] = flat[:, self._pix]

    def add_events(self, j0: int, frame_ptr: np.ndarray, pixel: np.ndarray, value: np.ndarray) -> None:
        """Store frames ``j0 …`` given as events."""
        lut = np.full(int(max(pixel.max(initial=0), self._pix.max(initial=0))) + 1, -1, dtype=np.int64)
        lut[self._pix] = np.arange(self._pix.size)
        col = lut[pixel]
        rows = np.repeat(np.arange(frame_ptr.size - 1), np.diff(frame_ptr)) + j0
        keep = col >= 0
        np.add.at(self._data, (rows[keep], col[keep]), value[keep].astype(np.float32))

    def results(self, n_segments: int = 5) -> Iterator[TwoTimeBin]:
        """Compute C, g2 and segment g2 for each selected bin, one bin at a time."""
        n = self.n_frames
        w = max(n // max(n_segments, 1), 1)
        for b in self.bins:
            x = self._data[:, self._slices[b]].astype(np.float64)
            stat = self._static[b]
            sg = np.zeros(x.shape[1])
            for s in np.unique(stat):
                cols = stat == s
                sg[cols] = x[:, cols].mean()
            sg[sg <= 0] = 1.0  # a bin without photons stays zero instead of NaN
            x /= sg
            c2 = (x @ x.T) / x.shape[1]
            segs = np.stack(
                [diagonal_mean(c2[k * w : (k + 1) * w, k * w : (k + 1) * w]) for k in range(n // w)], axis=1
            )
            yield TwoTimeBin(bin=b, c2=c2, g2=diagonal_mean(c2), g2_segments=segs)
