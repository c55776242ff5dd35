"""CPU seconds of the dense path's pass from the correlator state to g2(q) (``bins.bin_sums`` through
``MultiTauCorrelator.g2_partials``), alone, at one and two threads.

The state is fed once (Poisson frames, 16-bit, as ``xpcs_speed.py``), then the pass is repeated on it:

- ``fresh``: ``g2_partials`` as ``g2`` calls it after the last frame (the bin partial sums allocated,
  first touched and filled: what a job pays);
- ``touched``: the same after ``prepare_g2`` (partial sums already allocated and zeroed: the pass alone);
- ``reduce``: ``BinPartials.reduce`` (fold of the chunks, g2, jackknife covariance).

CPU seconds are process time (all threads), medians of ``--repeats``; each line also prints the load
average and a digest of g2 and of the folded sums (the same bits before and after a change).

    python benchmarks/xpcs_bins.py --size 1024 --frames 200 --repeats 7
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=1024, help="detector side (size × size pixels)")
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--photons", type=float, default=0.5, help="mean counts per pixel and frame")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", default="1,2", help="thread counts to time, comma-separated")
    ap.add_argument("--spread", action="store_true", help="pixel_spread=True (XPCS-Eigen's error bar)")
    ap.add_argument("--float", action="store_true", help="feed float64 frames (float sums)")
    ns = ap.parse_args()

    import numba
    import numpy as np

    from beambridge.xpcs.multitau import MultiTauCorrelator
    from xpcs_speed import make_stack, ring_labels  # type: ignore[import-not-found]

    stack = make_stack(ns.size, ns.frames, ns.photons)
    if ns.float:
        stack = stack.astype(np.float64) * 0.75
    labels = ring_labels(ns.size)
    pixels = np.arange(ns.size * ns.size)
    corr = MultiTauCorrelator(ns.frames, pixels, ns.size * ns.size, mode="dense")
    for a in range(0, ns.frames, 50):
        corr.add_frames(stack[a : a + 50])
    del stack

    def once(prepared: bool) -> tuple[float, float, str]:
        corr._finished = False  # the pass does not change the state: run it again on the same one
        if prepared:
            corr.prepare_g2(labels)
        c0 = time.process_time()
        partials = corr.g2_partials(labels, ns.spread)
        c1 = time.process_time()
        res = partials.reduce(corr.schedule.tau, corr.frame_sum, ns.spread)
        c2 = time.process_time()
        h = hashlib.sha1(res.g2.tobytes())
        for arr in (*partials.folded(), res.g2_cov, res.g2_err, partials.pixel_mean, partials.dynamic_sums):
            if arr is not None:
                h.update(np.ascontiguousarray(arr).tobytes())
        return c1 - c0, c2 - c1, h.hexdigest()[:12]

    for threads in [int(t) for t in ns.threads.split(",")]:
        numba.set_num_threads(threads)
        once(False)  # compile / load
        fresh, touched, red, digests = [], [], [], set()
        load0 = os.getloadavg()[0]
        for _ in range(ns.repeats):
            a, r, d = once(False)
            b, _r, d2 = once(True)
            fresh.append(a)
            touched.append(b)
            red.append(r)
            digests |= {d, d2}
        load1 = os.getloadavg()[0]
        print(
            f"{ns.size}^2 x {ns.frames}{' float' if ns.float else ''}{' spread' if ns.spread else ''} "
            f"threads {threads}: fresh {statistics.median(fresh):.4f}  touched {statistics.median(touched):.4f}  "
            f"reduce {statistics.median(red):.4f} CPU-s (min {min(fresh):.4f} / {min(touched):.4f})  "
            f"load {load0:.1f}->{load1:.1f}  digest {','.join(sorted(digests))}",
            flush=True,
        )


if __name__ == "__main__":
    main()
