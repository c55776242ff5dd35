"""The dense multi-tau kernel's two paths on the same blocks: lane loops vs registers, one thread.

``beambridge.xpcs.multitau.dense.dense_update`` is called directly on a prepared correlator state, the
same block again and again (the state keeps growing, which does not change the work), first with the
register path off (every tile takes the lane loops, as before 2026-12-06), then on, interleaved
``--rounds`` times. Reported: CPU nanoseconds per pixel and frame (``time.process_time``, so another
process on the machine does not count), the minimum and the median of the rounds, and whether both
paths left the same state, to the bit. Cases: in cache (64² pixels, the state fits in L2), 256² in
the pipeline's 512-frame blocks, 1 Mpx in 128- and 256-frame blocks (the state, ~0.7 kB per pixel,
is loaded and stored once per block: bigger blocks amortise it).

    python benchmarks/xpcs_dense_kernel.py [--rounds 7] [--photons 0.5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numba
import numpy as np
from rich.console import Console
from rich.table import Table

from beambridge.xpcs.multitau import MultiTauCorrelator
from beambridge.xpcs.multitau.dense import dense_update

CASES = [(64, 1000, 128), (256, 1000, 512), (1024, 200, 128), (1024, 200, 200), (1024, 1000, 256)]
"""(detector side, frames of the run, frames per block)."""


def measure(side: int, n_frames: int, block: int, photons: float, rounds: int) -> dict[str, object]:
    frames = np.random.default_rng(0).poisson(photons, (block, side * side)).astype(np.uint16)
    states = {}
    times: dict[bool, list[float]] = {False: [], True: []}
    for register in (False, True):
        corr = MultiTauCorrelator(n_frames, np.arange(side * side), side * side, mode="dense")
        corr.prepare(np.uint16)
        part = np.zeros((corr._tile_src.size, block), dtype=np.uint64)
        states[register] = (corr, part)
    seg = states[False][0]._segments(0, block)
    reps = max(1, int(3e7 / (block * side * side)))

    def call(register: bool) -> None:
        corr, part = states[register]
        dense_update(
            frames, 0, corr.pixels, corr._tile_src, corr._strip_src, corr._lag, corr._lag_ptr, corr._hist_v,
            corr._head, corr._acc, corr._seg, seg, part, corr._tmax, 1, register, -1,
            np.zeros(corr._strip_src.size, dtype=np.int64),
        )  # fmt: skip

    for register in (False, True):  # compile (or load) and check: one call each, the same state after
        call(register)
    a, b = states[False][0], states[True][0]
    same = all(
        np.array_equal(getattr(a, name), getattr(b, name))
        for name in ("_hist_v", "_head", "_acc", "_seg", "_tmax")
    ) and np.array_equal(states[False][1], states[True][1])
    for _ in range(rounds):
        for register in (False, True):
            t0 = time.process_time()
            for _ in range(reps):
                call(register)
            times[register].append((time.process_time() - t0) / (reps * block * side * side) * 1e9)
    return {
        "lanes": (min(times[False]), statistics.median(times[False])),
        "register": (min(times[True]), statistics.median(times[True])),
        "same": same,
        "levels": a._n_levels,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--photons", type=float, default=0.5, help="mean photons per pixel and frame")
    ns = parser.parse_args()
    numba.set_num_threads(1)
    load = os.getloadavg()[0]
    table = Table(title=f"dense kernel, one thread, CPU ns per pixel and frame (min / median of {ns.rounds})")
    for col in (
        "detector",
        "frames",
        "block",
        "levels",
        "lane loops",
        "registers",
        "lane ÷ register",
        "same state",
    ):
        table.add_column(col, justify="right")
    headline = ""
    for side, n_frames, block in CASES:
        r = measure(side, n_frames, block, ns.photons, ns.rounds)
        lanes, reg = r["lanes"], r["register"]
        assert isinstance(lanes, tuple) and isinstance(reg, tuple)
        table.add_row(
            f"{side}x{side}", str(n_frames), str(block), str(r["levels"]), f"{lanes[0]:.3f} / {lanes[1]:.3f}",
            f"{reg[0]:.3f} / {reg[1]:.3f}", f"{lanes[1] / reg[1]:.2f}x", str(r["same"]),
        )  # fmt: skip
        if side == 1024 and block == 200:
            headline = (
                f"1 Mpx x 200 frames in one block: {lanes[1]:.3f} -> {reg[1]:.3f} ns per pixel and frame "
                f"({lanes[1] / reg[1]:.2f}x), one thread"
            )
    console = Console(width=150)
    console.print(table)
    console.print(f"load average {load:.1f} -> {os.getloadavg()[0]:.1f}; {headline}")


if __name__ == "__main__":
    main()
