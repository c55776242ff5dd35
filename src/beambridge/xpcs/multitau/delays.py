"""Multi-tau delay schedule, as in XPCS-Eigen (``Corr::delaysPerLevel``).

With ``dpl`` = delays per level (APS default 4) and ``N`` frames:

* level 0 holds the raw frames and the delays ``tau = 1 … 2·dpl``;
* level ``l ≥ 1`` holds frames averaged in non-overlapping groups of ``m = 2**l`` (pairs of level
  ``l-1`` elements, a trailing odd element dropped) and adds ``tau = (dpl + i)·m`` for ``i = 1 … dpl``,
  i.e. lags ``c = tau/m = dpl+1 … 2·dpl`` in units of that level;
* a delay is kept while ``tau + m <= N`` and ``l <= floor(log2 N - log2(1 + 1/dpl)) - floor(log2 dpl)``.

For ``N = 1000, dpl = 4`` this gives 34 delays, the last two at level 7 (640 and 768 frames).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from beambridge.xpcs.errors import OptionError


@dataclass(frozen=True)
class DelaySchedule:
    """The multi-tau delays for ``n_frames`` frames.

    Attributes:
        n_frames: number of frames N correlated (after stride and averaging).
        delays_per_level: dpl.
        tau: delays in frames, shape (n_tau,), int64, increasing.
        level: level l of each delay, shape (n_tau,).
        lag: lag c = tau / 2**l in units of its level, shape (n_tau,).
        n_pairs: number of products averaged per delay, ``floor(N / 2**l) - c``, shape (n_tau,).
    """

    n_frames: int
    delays_per_level: int
    tau: npt.NDArray[np.int64]
    level: npt.NDArray[np.int64]
    lag: npt.NDArray[np.int64]
    n_pairs: npt.NDArray[np.int64]

    @property
    def n_tau(self) -> int:
        """Number of delays."""
        return int(self.tau.size)

    @property
    def n_levels(self) -> int:
        """Number of levels that carry at least one delay."""
        return int(self.level.max()) + 1

    def level_length(self, level: int) -> int:
        """Number of elements M_l = floor(N / 2**l) of the coarse series at ``level``."""
        return self.n_frames >> level


def multitau_schedule(n_frames: int, delays_per_level: int = 4) -> DelaySchedule:
    """Return the XPCS-Eigen multi-tau schedule for ``n_frames`` frames.

    Raises:
        OptionError: if fewer than 2 frames are given or ``delays_per_level < 1``.
    """
    if delays_per_level < 1:
        raise OptionError(f"delays_per_level must be >= 1, got {delays_per_level}")
    if n_frames < 2:
        raise OptionError(f"multi-tau needs at least 2 frames, got {n_frames}")
    dpl = delays_per_level
    max_level = math.floor(math.log2(n_frames) - math.log2(1.0 + 1.0 / dpl)) - math.floor(math.log2(dpl))
    max_level = max(max_level, 0)
    taus: list[int] = []
    levels: list[int] = []
    lags: list[int] = []
    for level in range(max_level + 1):
        m = 1 << level
        first = 1 if level == 0 else dpl + 1
        for c in range(first, 2 * dpl + 1):
            tau = c * m
            if tau + m > n_frames:
                break
            taus.append(tau)
            levels.append(level)
            lags.append(c)
    tau_a = np.asarray(taus, dtype=np.int64)
    level_a = np.asarray(levels, dtype=np.int64)
    lag_a = np.asarray(lags, dtype=np.int64)
    n_pairs = (n_frames >> level_a) - lag_a
    return DelaySchedule(n_frames, dpl, tau_a, level_a, lag_a, n_pairs)
