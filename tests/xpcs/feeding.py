"""Feeding a correlator in tests: block by block, on a chosen number of numba threads."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numba
import numpy as np

from beambridge.xpcs.multitau import MultiTauCorrelator


@contextmanager
def numba_threads(n: int) -> Iterator[None]:
    """Run the block on ``n`` numba threads, then go back to all of them."""
    numba.set_num_threads(n)
    try:
        yield
    finally:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)


def fed(
    frames: np.ndarray,
    pixels: np.ndarray,
    mode: str,
    block: int,
    threads: int = 2,
    prepare: bool = False,
) -> MultiTauCorrelator:
    """A correlator over ``pixels`` fed all of ``frames`` in blocks of ``block`` frames."""
    with numba_threads(threads):
        corr = MultiTauCorrelator(frames.shape[0], pixels, frames[0].size, mode=mode)  # type: ignore[arg-type]
        if prepare:
            corr.prepare(frames.dtype)
        for a in range(0, frames.shape[0], block):
            corr.add_frames(frames[a : a + block])
    return corr
