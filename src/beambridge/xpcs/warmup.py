"""Compile the XPCS kernels ahead of the first job, into numba's on-disk cache.

The correlators are numba functions compiled on first use for each kind of frame (integer counts of
each width, floats) and cached on disk (``cache=True``; ``NUMBA_CACHE_DIR`` moves the cache). On a machine
whose cache is cold the first XPCS job used to spend most of a minute compiling, silently. Site agents
and pilots run :func:`warm_up` in the background when they start (``python -m beambridge.xpcs.warmup``),
saying so in their logs, and ``beambridge xpcs warmup`` does it by hand: the pipeline runs over a tiny
simulated stack for each kind of frame a detector writes, so every kernel a job calls is compiled (or,
when the cache is warm, loaded in about a second). This fills the disk cache for the machine; a warm
quick-look pilot's workers also load the kernels into memory (``XpcsMultiTau.warm_up``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

FRAME_KINDS = ("uint16", "uint32", "uint8", "float32")
"""Frame dtypes warmed: 16- and 32-bit counting detectors, 8-bit ones, and corrected (float) frames."""


def cache_root() -> Path:
    """Where numba caches the kernels (and a warm-up leaves its marker)."""
    configured = os.environ.get("NUMBA_CACHE_DIR")
    if configured:
        return Path(configured)
    from beambridge.xpcs import multitau

    return Path(multitau.__file__).parent / "__pycache__"


def marker_path() -> Path:
    """The file a finished warm-up leaves in the cache: named after what numba's cache entries depend on
    (numba's version, this CPU and its features, the kernels' source files), so a new CPU, an upgrade or
    an edited kernel calls for a new warm-up."""
    import numba
    from numba.core.registry import cpu_target

    from beambridge.xpcs import multitau

    sources = sorted(
        (path.name, path.stat().st_mtime_ns, path.stat().st_size)
        for path in Path(multitau.__file__).parent.glob("*.py")
    )
    magic = cpu_target.target_context.codegen().magic_tuple()
    key = hashlib.sha1(repr((numba.__version__, magic, sources, FRAME_KINDS)).encode()).hexdigest()[:16]
    return cache_root() / f".beambridge-warm-{key}"


def is_warm() -> bool:
    """Whether a warm-up finished for this machine, numba and kernels (the first job then loads them)."""
    try:
        return marker_path().exists()
    except OSError:
        return False


@contextlib.contextmanager
def compiling_once() -> Iterator[None]:
    """Around code that may compile kernels into the cache: while another process holds the warm-up lock
    (compiling), wait for it and then run unlocked, loading what it compiled. Many workers of a warm pilot
    starting on a cold node so compile once, one after the other only while nothing is cached yet,
    instead of each compiling everything at once."""
    with _exclusive(cache_root()) as waited:
        if not waited:
            yield
            return
    yield


def announce_if_cold(say: Callable[[str], None] = print) -> bool:
    """Before a job's correlation: say so when the kernels will be compiled first (a job's stdout is
    what ``beambridge job logs`` shows); whether they are cold."""
    if is_warm():
        return False
    say(
        "XPCS kernels are not compiled on this machine yet: compiling them first (up to a minute of CPU, "
        "once; site agents and pilots do it when they start, `beambridge xpcs warmup` by hand)"
    )
    return True


@contextlib.contextmanager
def _exclusive(root: Path) -> Iterator[bool]:
    """One warm-up at a time per cache (an agent and a pilot starting together); whether this one
    waited for another (whose work it then mostly finds done)."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        handle = (root / ".beambridge-warmup.lock").open("a")
    except OSError:  # a read-only cache: numba compiles in memory; warming still helps this process
        yield False
        return
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            waited = False
        except BlockingIOError:
            fcntl.flock(handle, fcntl.LOCK_EX)
            waited = True
        yield waited


def warm_up(step: Callable[[str], None] | None = None, *, force: bool = False) -> dict[str, float]:
    """Run the multi-tau and two-time pipelines on a tiny stack of each frame kind; seconds per step
    (none when a warm-up for this machine had finished, unless ``force``)."""
    import h5py

    from beambridge.xpcs.pipeline import run_multitau, run_twotime
    from beambridge.xpcs.simulate import SpeckleParameters, simulate_speckle

    timings: dict[str, float] = {}
    with _exclusive(cache_root()), tempfile.TemporaryDirectory(prefix="bb-xpcs-warmup-") as tmp:
        if is_warm() and not force:  # finished before, or by another warm-up this one waited for
            return timings
        folder = Path(tmp)
        params = SpeckleParameters(
            shape=(16, 16), n_frames=64, beam_center=(8, 8), r_min=1, r_max=7, n_q=3, photons_per_pixel=0.5
        )
        paths = simulate_speckle(folder / "raw.h5", params)
        with h5py.File(paths["raw"], "r") as f:
            counts = f["/entry/data/data"][()]
        for kind in FRAME_KINDS:
            if step:
                step(f"multi-tau, {kind} frames")
            started = time.perf_counter()
            raw = folder / f"raw-{kind}.h5"
            with h5py.File(raw, "w") as f:
                f.create_dataset("/entry/data/data", data=counts.astype(kind))
            run_multitau(raw, paths["qmap"], folder / f"g2-{kind}.hdf", frame_time=params.frame_time)
            timings[f"multitau {kind}"] = time.perf_counter() - started
        for name, call in (
            ("multitau normalized", lambda: run_multitau(
                paths["raw"], paths["qmap"], folder / "g2-norm.hdf", normalize_frames=True)),
            ("multitau sparse", lambda: run_multitau(
                paths["raw"], paths["qmap"], folder / "g2-sparse.hdf", mode="sparse")),
            ("twotime uint16", lambda: run_twotime(paths["raw"], paths["qmap"], folder / "tt.hdf", [1])),
        ):  # fmt: skip
            if step:
                step(name.replace("multitau", "multi-tau").replace("twotime", "two-time"))
            started = time.perf_counter()
            call()
            timings[name] = time.perf_counter() - started
        with contextlib.suppress(OSError):  # a read-only cache: nothing to remember
            marker_path().touch()
    return timings


def main() -> int:
    """``python -m beambridge.xpcs.warmup``: warm the cache unless a warm-up already did (one key=value
    line when it starts, one when it ends)."""
    started = time.perf_counter()
    if is_warm():
        print(f"xpcs_warmup_skipped reason=cached cache={cache_root()}", flush=True)
        return 0
    print(
        f"xpcs_warmup_started cache={cache_root()} note=compiling the XPCS kernels before the first job "
        "(up to a minute of CPU, once per machine)",
        flush=True,
    )
    try:
        timings = warm_up()
    except Exception as exc:  # a warm-up that fails must say why, never take its parent down
        print(f"xpcs_warmup_failed error={type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1
    steps = " ".join(f"{name.replace(' ', '_')}_s={seconds:.2f}" for name, seconds in timings.items())
    print(f"xpcs_warmup_done seconds={time.perf_counter() - started:.1f} {steps}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
