"""Shapes of the dense kernel's product loop at level 0, in cache: elements per pass and lags per lane loop.

``out[c, i] += x[t, i] · x[t − c, i]`` for the 8 lags c = 1 … 8 of APS's dpl = 4, over 256 uint32 lanes
and 128 new elements after 8 of history (one tile's sub-block at level 0), repeated in cache, one
thread. The shapes, all the same additions in time order (the table checks they give the same sums):

* two elements per pass, four lags per lane loop (the kernel before 2026-12-05);
* four elements per pass, four lags per lane loop (``beambridge.xpcs.multitau.dense._level`` now);
* four elements per pass, all eight lags in one lane loop (fastest alone, but inside the kernel LLVM
  needs more run-time overlap checks between its rows than it allows and leaves it scalar).

    python benchmarks/xpcs_dense_loops.py [--repeats 3000]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np
from numba import njit

TILE = 256
HIST = 8


@njit(cache=True, boundscheck=False, error_model="numpy")
def two_by_four(buf: np.ndarray, out: np.ndarray, n_new: int, reps: int) -> None:
    for _ in range(reps):
        done = 0
        while done + 1 < n_new:
            rc = HIST + done
            for q0 in range(0, 8, 4):
                r = rc - 1 - q0
                for i in range(TILE):
                    x = buf[rc, i]
                    y = buf[rc + 1, i]
                    b0 = buf[r + 1, i]
                    b1 = buf[r, i]
                    b2 = buf[r - 1, i]
                    b3 = buf[r - 2, i]
                    b4 = buf[r - 3, i]
                    out[q0, i] = (out[q0, i] + x * b1) + y * b0
                    out[q0 + 1, i] = (out[q0 + 1, i] + x * b2) + y * b1
                    out[q0 + 2, i] = (out[q0 + 2, i] + x * b3) + y * b2
                    out[q0 + 3, i] = (out[q0 + 3, i] + x * b4) + y * b3
            done += 2


@njit(cache=True, boundscheck=False, error_model="numpy")
def four_by_four(buf: np.ndarray, out: np.ndarray, n_new: int, reps: int) -> None:
    for _ in range(reps):
        done = 0
        while done + 3 < n_new:
            rc = HIST + done
            for q0 in range(0, 8, 4):
                r = rc - 1 - q0
                for i in range(TILE):
                    e0 = buf[rc, i]
                    e1 = buf[rc + 1, i]
                    e2 = buf[rc + 2, i]
                    e3 = buf[rc + 3, i]
                    p3 = buf[r + 3, i]
                    p2 = buf[r + 2, i]
                    p1 = buf[r + 1, i]
                    p0 = buf[r, i]
                    m1 = buf[r - 1, i]
                    m2 = buf[r - 2, i]
                    m3 = buf[r - 3, i]
                    out[q0, i] = (((out[q0, i] + e0 * p0) + e1 * p1) + e2 * p2) + e3 * p3
                    out[q0 + 1, i] = (((out[q0 + 1, i] + e0 * m1) + e1 * p0) + e2 * p1) + e3 * p2
                    out[q0 + 2, i] = (((out[q0 + 2, i] + e0 * m2) + e1 * m1) + e2 * p0) + e3 * p1
                    out[q0 + 3, i] = (((out[q0 + 3, i] + e0 * m3) + e1 * m2) + e2 * m1) + e3 * p0
            done += 4


@njit(cache=True, boundscheck=False, error_model="numpy")
def four_by_eight(buf: np.ndarray, out: np.ndarray, n_new: int, reps: int) -> None:
    for _ in range(reps):
        done = 0
        while done + 3 < n_new:
            rc = HIST + done
            r = rc - 1
            for i in range(TILE):
                e0 = buf[rc, i]
                e1 = buf[rc + 1, i]
                e2 = buf[rc + 2, i]
                e3 = buf[rc + 3, i]
                p3 = buf[r + 3, i]
                p2 = buf[r + 2, i]
                p1 = buf[r + 1, i]
                p0 = buf[r, i]
                m1 = buf[r - 1, i]
                m2 = buf[r - 2, i]
                m3 = buf[r - 3, i]
                m4 = buf[r - 4, i]
                m5 = buf[r - 5, i]
                m6 = buf[r - 6, i]
                m7 = buf[r - 7, i]
                out[0, i] = (((out[0, i] + e0 * p0) + e1 * p1) + e2 * p2) + e3 * p3
                out[1, i] = (((out[1, i] + e0 * m1) + e1 * p0) + e2 * p1) + e3 * p2
                out[2, i] = (((out[2, i] + e0 * m2) + e1 * m1) + e2 * p0) + e3 * p1
                out[3, i] = (((out[3, i] + e0 * m3) + e1 * m2) + e2 * m1) + e3 * p0
                out[4, i] = (((out[4, i] + e0 * m4) + e1 * m3) + e2 * m2) + e3 * m1
                out[5, i] = (((out[5, i] + e0 * m5) + e1 * m4) + e2 * m3) + e3 * m2
                out[6, i] = (((out[6, i] + e0 * m6) + e1 * m5) + e2 * m4) + e3 * m3
                out[7, i] = (((out[7, i] + e0 * m7) + e1 * m6) + e2 * m5) + e3 * m4
            done += 4


SHAPES: dict[str, Callable[[np.ndarray, np.ndarray, int, int], None]] = {
    "2 elements x 4 lags (before)": two_by_four,
    "4 elements x 4 lags (now)": four_by_four,
    "4 elements x 8 lags": four_by_eight,
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3000, help="sub-blocks per timing")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median reported)")
    ns = parser.parse_args()
    n_new = 128
    buf = np.random.default_rng(0).poisson(0.5, (HIST + n_new + 1, TILE)).astype(np.uint32)
    sums = {}
    for name, fn in SHAPES.items():  # compile (or load) and check the sums
        out = np.zeros((8, TILE), np.uint32)
        fn(buf, out, n_new, 1)
        sums[name] = out
    first = next(iter(sums.values()))
    same = all(np.array_equal(first, s) for s in sums.values())
    times: dict[str, list[float]] = {name: [] for name in SHAPES}
    for _ in range(ns.rounds):
        for name, fn in SHAPES.items():
            out = np.zeros((8, TILE), np.uint32)
            t0 = time.process_time()
            fn(buf, out, n_new, ns.repeats)
            times[name].append((time.process_time() - t0) / (ns.repeats * n_new * TILE) * 1e9)
    print(f"load average {os.getloadavg()[0]:.1f}; same sums in every shape: {same}")
    print(f"{'shape':32s} {'ns per pixel and element (8 lags), median':>44s}")
    med = {name: float(np.median(t)) for name, t in times.items()}
    for name, value in med.items():
        print(f"{name:32s} {value:44.3f}")
    base, now = med["2 elements x 4 lags (before)"], med["4 elements x 4 lags (now)"]
    print(
        f"level-0 products: {base:.3f} -> {now:.3f} ns per pixel and frame ({base / now:.2f}x), one thread, in cache"
    )


if __name__ == "__main__":
    main()
