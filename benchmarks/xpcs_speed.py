"""Multi-tau correlator speed: beambridge.xpcs vs boost-corr (Python API, CPU), same data, same run.

Each case runs in its own process (so peak memory is that case's alone): a Poisson stack is made in
memory (uint16, fixed seed), then correlated ``--repeats`` times; we report the median frames/s and
the process's peak RSS minus the stack itself. Our dense rows run in ``--processes`` processes (3) and
report the median of their medians with the range: on a shared virtual machine one process's memory
can run at half the speed of the next one's, for its whole life. Both sides use ``--threads`` threads (numba
``NUMBA_NUM_THREADS`` / ``torch.set_num_threads``) and are warmed up first: our JIT compile time
(from numba's on-disk cache when warm) and boost-corr's construction are reported or excluded, not
timed. Our rows say which arithmetic ran ("int16"/"int32"/"int64": exact integer sums of the uint16
counts, in a state of uint16 values and uint32 sums for "int16"; "float": float64 path for corrected
data).

Our correlator is constructed and ``prepare()``d (its state allocated and zeroed) outside the timing,
as boost-corr's correlator and buffers are. Two timings: feeding every frame and then ``g2(labels)``,
g2(q, τ) with error bars over 360 static / 36 dynamic rings (what a job produces: "to g2(q)"), and
feeding every frame and then ``result()``, per-pixel G2/IP/IF ("to per-pixel", the same stage as
boost-corr's timed output, which still lacks its q-binning).

boost-corr is driven as its own command line drives it (``solve_multitau_base``): ``queue_size`` =
its HDF5 batch size (8 frames per ``process`` call), ``auto_queue=True``, float32 everywhere via
``max_count=256``; ``max_memory`` is capped to a third of this machine's RAM (its default, 36 GB,
exceeds it). Each timed repeat uses a correlator built (and its buffers zeroed) outside the timing,
and covers ``process`` of every frame, ``post_process`` and ``get_results``. boost-corr runs from
the separate virtualenv ``.venv-peers`` (see docs/xpcs.md for how to install it); it is skipped
with a note if absent.

Two end-to-end rows follow (``--no-end-to-end`` skips them): the whole ``beambridge xpcs corr``
process on a 256² file (start-up, reading, correlating, writing: what a quick look costs after a file
closes), and streaming: a writer process appends frames to an HDF5 SWMR file at ``--live-fps`` while
``run_multitau(..., follow=True)`` correlates them; "last frame → g2 on disk" is the wall time from the
writer's last flush to the result file being in place (median of repeats).

    python benchmarks/xpcs_speed.py [--repeats 3] [--frames 1000] [--frames-1m 200,1000] [--threads 2]
                                    [--only-end-to-end] [--live-fps 1000]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEER_PYTHON = ROOT / ".venv-peers" / "bin" / "python"
INSTALL_HINT = (
    "make peers-xpcs, or: python3.11 -m venv .venv-peers && .venv-peers/bin/pip download --no-deps --ignore-requires-python "
    "boost-corr==0.1.7 -d /tmp/bc && .venv-peers/bin/pip install --no-deps --ignore-requires-python "
    "/tmp/bc/boost_corr-0.1.7-py3-none-any.whl && .venv-peers/bin/pip install numpy h5py hdf5plugin tqdm "
    "psutil scipy torch==2.13.0 && .venv-peers/bin/pip install xpcs-correlator==0.4.5"
)


def make_stack(size: int, frames: int, photons: float):  # type: ignore[no-untyped-def]
    import numpy as np

    rng = np.random.default_rng(1234)
    out = np.empty((frames, size, size), dtype=np.uint16)
    for a in range(0, frames, 16):  # in chunks: no large int64 temporary inflating the base RSS
        out[a : a + 16] = rng.poisson(photons, out[a : a + 16].shape)
    return out


def make_events(size: int, frames: int, photons: float):  # type: ignore[no-untyped-def]
    """Photon events as a counting detector streams them (frame pointer, pixel, count): Poisson many
    photons per frame at uniformly random pixels, i.e. Poisson counts of mean ``photons`` per pixel."""
    import numpy as np

    rng = np.random.default_rng(4321)
    per_frame = rng.poisson(photons * size * size, frames)
    ptr = np.concatenate([[0], np.cumsum(per_frame)]).astype(np.int64)
    pixel = rng.integers(0, size * size, int(ptr[-1]))
    return ptr, pixel, np.ones(pixel.size, dtype=np.uint16)


def ring_masks(size: int):  # type: ignore[no-untyped-def]
    """The 36 dynamic rings of :func:`ring_labels` as xpcscorr's ROI mask stack (36, size, size)."""
    import numpy as np

    yy, xx = np.indices((size, size))
    r = np.hypot(yy - size / 2, xx - size / 2)
    static = np.minimum((r / r.max() * 360).astype(np.int64), 359)
    return np.stack([static // 10 == q for q in range(36)])


def ring_labels(size: int):  # type: ignore[no-untyped-def]
    """360 static rings in 36 dynamic ones around the detector centre (an APS-like partition)."""
    import numpy as np

    from beambridge.xpcs.multitau.bins import BinLabels

    yy, xx = np.indices((size, size))
    r = np.hypot(yy - size / 2, xx - size / 2).ravel()
    static = np.minimum((r / r.max() * 360).astype(np.int64), 359)
    return BinLabels(static, static // 10, 360, 36, np.arange(360) // 10)


def worker_ours(size: int, frames: int, photons: float, repeats: int) -> dict[str, object]:
    import numba
    import numpy as np

    from beambridge.xpcs.multitau import MultiTauCorrelator
    from beambridge.xpcs.pipeline import frames_per_block

    stack = make_stack(size, frames, photons)
    labels = ring_labels(size)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    pixels = np.arange(size * size)
    block = frames_per_block(size * size, frames, in_place=True)  # as `beambridge xpcs corr` feeds raw HDF5
    t0 = time.perf_counter()
    for finish in ("g2", "pixels"):  # compiles (or loads) the kernels
        warm = MultiTauCorrelator(frames, pixels, size * size)
        for a in range(0, frames, block):
            warm.add_frames(stack[a : a + block])
        warm.g2(labels) if finish == "g2" else warm.result()
        del warm
    warm_seconds = time.perf_counter() - t0
    times: dict[str, list[float]] = {"g2": [], "pixels": []}
    cpu: list[float] = []
    mode, arithmetic, digest = "", "", ""
    for _ in range(repeats):
        for finish, spent in times.items():
            corr = MultiTauCorrelator(frames, pixels, size * size)
            corr.prepare(stack.dtype)  # state allocated and zeroed outside the timing, as boost-corr's
            t0, c0 = time.perf_counter(), time.process_time()
            for a in range(0, frames, block):
                corr.add_frames(stack[a : a + block])
            out = corr.g2(labels) if finish == "g2" else corr.result()
            spent.append(time.perf_counter() - t0)
            if finish == "g2":
                cpu.append(time.process_time() - c0)
            mode, arithmetic = corr.mode, corr.arithmetic
            if finish == "g2":
                digest = hashlib.sha256(out.g2.tobytes()).hexdigest()[:16]  # type: ignore[union-attr]
            del out, corr
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "seconds": statistics.median(times["g2"]),
        "seconds_pixels": statistics.median(times["pixels"]),
        "cpu_seconds": statistics.median(cpu),
        "mode": mode,
        "arithmetic": arithmetic,
        "threads": numba.get_num_threads(),
        "extra_mb": (peak - base) / 1024,
        "warm_seconds": warm_seconds,
        "digest": digest,
    }


def worker_events(size: int, frames: int, photons: float, repeats: int) -> dict[str, object]:
    """Our event-driven path on event data, as a photon-counting detector delivers it: blocks of frames
    as (frame pointer, pixel, count), then g2(q) over the rings (``mode="sparse"``; ``auto`` takes it
    only at <= SPARSE_DENSITY photons/pixel/frame, below the two paths' crossover). Timed as a job runs
    it (g2 with the jackknife covariance, the file's error bar) and with XPCS-Eigen's per-pixel spread
    as well (``pixel_spread=True``, ``--pixel-spread``)."""
    import numba
    import numpy as np

    from beambridge.xpcs.multitau import MultiTauCorrelator

    ptr, pixel, value = make_events(size, frames, photons)
    labels = ring_labels(size)
    pixels = np.arange(size * size)
    block = 100

    def run(spread: bool) -> tuple[object, str]:
        corr = MultiTauCorrelator(frames, pixels, size * size, mode="sparse")
        for a in range(0, frames, block):
            b = min(block, frames - a)
            lo, hi = int(ptr[a]), int(ptr[a + b])
            corr.add_events(ptr[a : a + b + 1] - lo, pixel[lo:hi], value[lo:hi])
        return corr.g2(labels, pixel_spread=spread), corr.mode

    t0 = time.perf_counter()
    run(False)  # compiles (or loads) the kernels
    run(True)
    warm_seconds = time.perf_counter() - t0
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times: dict[bool, list[float]] = {False: [], True: []}
    cpu: dict[bool, list[float]] = {False: [], True: []}
    mode = ""
    for _ in range(repeats):
        for spread in (False, True):
            t0, c0 = time.perf_counter(), time.process_time()
            _, mode = run(spread)
            times[spread].append(time.perf_counter() - t0)
            cpu[spread].append(time.process_time() - c0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "seconds": statistics.median(times[False]),
        "cpu_seconds": statistics.median(cpu[False]),
        "seconds_spread": statistics.median(times[True]),
        "cpu_seconds_spread": statistics.median(cpu[True]),
        "mode": mode,
        "threads": numba.get_num_threads(),
        "events": int(ptr[-1]),
        "extra_mb": (peak - base) / 1024,
        "warm_seconds": warm_seconds,
    }


XPCSCORR_CODE = r"""
import json, logging, resource, statistics, sys, time
import numpy as np
logging.disable(logging.CRITICAL)
import xpcscorr
kind, size, frames, photons, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
yy, xx = np.indices((size, size))
r = np.hypot(yy - size / 2, xx - size / 2)
static = np.minimum((r / r.max() * 360).astype(np.int64), 359)
roimask = np.stack([static // 10 == q for q in range(36)])
no_dask = {"dask_cluster_type": None}
if kind == "dense":
    rng = np.random.default_rng(1234)
    stack = np.empty((frames, size, size), dtype=np.uint16)
    for a in range(0, frames, 16):
        stack[a:a + 16] = rng.poisson(photons, stack[a:a + 16].shape)
    run = lambda: xpcscorr.correlator_dense_chunked(stack, roimask, extra_options=no_dask)
else:
    rng = np.random.default_rng(4321)
    per_frame = rng.poisson(photons * size * size, frames)
    ptr = np.concatenate([[0], np.cumsum(per_frame)]).astype(np.int64)
    pixel = rng.integers(0, size * size, int(ptr[-1]))
    value = np.ones(pixel.size, dtype=np.uint16)
    if kind == "frame":
        run = lambda: xpcscorr.correlator_sparse_frame_chunked(value, pixel, ptr, (frames, size, size), roimask, extra_options=no_dask)
    else:  # its pixel-major (CSC) format, converted outside the timing
        order = np.argsort(pixel, kind="stable")
        t_index = np.repeat(np.arange(frames), per_frame)[order]
        pptr = np.concatenate([[0], np.cumsum(np.bincount(pixel, minlength=size * size))]).astype(np.int64)
        val_c = value[order]
        run = lambda: xpcscorr.correlator_sparse_pixel_chunked(val_c, t_index, pptr, (frames, size, size), roimask, extra_options=no_dask)
out = run()  # warm-up: numba compile
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
times, cpu = [], []
for _ in range(repeats):
    t0, c0 = time.perf_counter(), time.process_time()
    out = run()
    times.append(time.perf_counter() - t0)
    cpu.append(time.process_time() - c0)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": statistics.median(times), "cpu_seconds": statistics.median(cpu),
                  "extra_mb": (peak - base) / 1024, "lags": int(np.asarray(out.g2).shape[-1])}))
"""

PEER_CODE = r"""
import json, os, resource, statistics, sys, time
import numpy as np, torch
from boost_corr.multitau import MultitauCorrelator
size, frames, photons, repeats, threads = (int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]),
                                           int(sys.argv[4]), int(sys.argv[5]))
torch.set_num_threads(threads)
batch = 8  # boost-corr's batch for HDF5 input (dataset/utils.py), also its minimal queue_size
ram_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
max_memory = min(36.0, ram_gb / 3)
rng = np.random.default_rng(1234)
stack = np.empty((frames, size, size), dtype=np.uint16)
for a in range(0, frames, 16):
    stack[a:a + 16] = rng.poisson(photons, stack[a:a + 16].shape)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
x = torch.from_numpy(stack.reshape(frames, -1).astype(np.int16))
def make():
    return MultitauCorrelator(det_size=(size, size), frame_num=frames, device="cpu", max_count=256,
                              queue_size=batch, auto_queue=True, max_memory=max_memory)
def run(mc):
    for a in range(0, frames, batch):
        mc.process(x[a:a + batch])
    mc.post_process()
    return mc.get_results()
run(make())  # warm-up (torch kernels, allocator)
times = []
for _ in range(repeats):
    mc = make()  # set-up (buffer allocation) is not timed
    t0 = time.perf_counter()
    run(mc)
    times.append(time.perf_counter() - t0)
    del mc
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": statistics.median(times), "extra_mb": (peak - base) / 1024,
                  "queue": list(make().queue_info)}))
"""


EVENTS_STACK_OLD = """rng = np.random.default_rng(1234)
stack = np.empty((frames, size, size), dtype=np.uint16)
for a in range(0, frames, 16):
    stack[a:a + 16] = rng.poisson(photons, stack[a:a + 16].shape)
"""
EVENTS_STACK_NEW = """rng = np.random.default_rng(4321)
per_frame = rng.poisson(photons * size * size, frames)
pixel = rng.integers(0, size * size, int(per_frame.sum()))
stack = np.zeros((frames, size * size), dtype=np.uint16)
np.add.at(stack, (np.repeat(np.arange(frames), per_frame), pixel), 1)
stack = stack.reshape(frames, size, size)
"""  # boost-corr takes dense frames only: the same events (make_events) as frames


def _write_inputs(folder: Path, size: int, frames: int, photons: float) -> tuple[Path, Path]:
    """A raw HDF5 file (with its frame time) and a q-partition file of 36 rings, for the CLI row."""
    import h5py

    from beambridge.xpcs.qmap_geometry import build_qmap

    raw, qmap_path = folder / "raw.h5", folder / "qmap.h5"
    with h5py.File(raw, "w") as f:
        f.create_dataset(
            "/entry/data/data", data=make_stack(size, frames, photons), chunks=(min(16, frames), size, size)
        )
        f["/entry/instrument/detector_1/frame_time"] = 1e-3
    qmap = build_qmap(
        (size, size), (size / 2, size / 2), 5.0, 75e-6, 10.0, n_q=36, n_phi=1, static_q_per_dynamic=10
    )
    with h5py.File(qmap_path, "w") as f:
        qmap.write_group(f.create_group("qmap"))
    return raw, qmap_path


def _worker_cpu(runtime: Path) -> float:
    """CPU seconds (user + system) used so far by the worker started in ``runtime`` (0 if none)."""
    import re

    total = 0.0
    for log in runtime.glob("*.log"):
        for pid in re.findall(r"pid=(\d+) event=xpcs_worker_started", log.read_text()):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _stop_workers(runtime: Path) -> None:
    import re
    import signal

    for log in runtime.glob("*.log"):
        for pid in re.findall(r"pid=(\d+) event=xpcs_worker_started", log.read_text()):
            try:
                os.kill(int(pid), signal.SIGTERM)
            except ProcessLookupError:
                continue
            for _ in range(200):  # until it is gone (or a zombie)
                try:
                    if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                        break
                except OSError:
                    break
                time.sleep(0.05)


def bench_cli(size: int, frames: int, repeats: int, threads: int) -> dict[str, dict[str, float]]:
    """The whole ``beambridge xpcs corr`` process (exec to exit, result written), medians of at least 5:
    in its own process (``BEAMBRIDGE_XPCS_WORKER=0``), handed to a worker it has to start first (a
    fresh runtime directory each time: the cold first call), and to a running worker (warm). CPU seconds
    are the command's own (its children's rusage) plus the worker's (from /proc) over the call."""
    import shutil
    import tempfile

    cli = Path(sys.executable).with_name("beambridge")
    repeats = max(5, repeats)
    rows: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        raw, qmap = _write_inputs(Path(tmp), size, frames, 0.5)
        cmd = [str(cli), "xpcs", "corr", str(raw), "--qmap", str(qmap), "-o", str(Path(tmp) / "out.h5")]
        base = {**os.environ, "NUMBA_NUM_THREADS": str(threads)}
        subprocess.run(cmd, check=True, capture_output=True, env={**base, "BEAMBRIDGE_XPCS_WORKER": "0"})
        for name in ("in process", "worker, cold first call", "worker, warm"):
            walls, cpus, corr = [], [], []
            runtime = Path(tempfile.mkdtemp(prefix="bbw-"))
            env = {**base, "BEAMBRIDGE_RUNTIME_DIR": str(runtime)}
            env["BEAMBRIDGE_XPCS_WORKER"] = "0" if name == "in process" else "1"
            try:
                if name == "worker, warm":
                    subprocess.run(cmd, check=True, capture_output=True, env=env)  # starts it
                for _ in range(repeats):
                    if name == "worker, cold first call":  # a new directory: no worker running
                        _stop_workers(runtime)
                        shutil.rmtree(runtime, ignore_errors=True)
                        runtime = Path(tempfile.mkdtemp(prefix="bbw-"))
                        env["BEAMBRIDGE_RUNTIME_DIR"] = str(runtime)
                    before = resource.getrusage(resource.RUSAGE_CHILDREN)
                    worker_before = _worker_cpu(runtime)
                    t0 = time.perf_counter()
                    proc = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
                    walls.append(time.perf_counter() - t0)
                    after = resource.getrusage(resource.RUSAGE_CHILDREN)
                    own = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
                    cpus.append(own + _worker_cpu(runtime) - worker_before)
                    line = proc.stdout.strip().splitlines()[-1]  # "<n> frames in <s> s: <fps> frames/s"
                    corr.append(float(line.split(" in ")[1].split(" s")[0]))
            finally:
                _stop_workers(runtime)
                shutil.rmtree(runtime, ignore_errors=True)
            rows[name] = {
                "wall": statistics.median(walls),
                "cpu": statistics.median(cpus),
                "correlation": statistics.median(corr),
                "repeats": float(repeats),
            }
    return rows


def live_writer(path: str, size: int, frames: int, fps: float) -> None:
    """Append a stack to an SWMR file at ``fps``; print the wall time of the last flush."""
    from beambridge.xpcs.io.live import SwmrFrameWriter

    stack = make_stack(size, frames, 0.1)
    block = max(1, int(fps * 0.01))  # an append every ~10 ms
    with SwmrFrameWriter(path, (size, size), frames, 1.0 / fps) as writer:
        start = time.perf_counter()
        for a in range(0, frames, block):
            due = start + (a + block) / fps
            time.sleep(max(0.0, due - time.perf_counter()))
            writer.append(stack[a : a + block])
        last = time.time()
    print(json.dumps({"last_flush": last}))


def bench_live(size: int, frames: int, fps: float, repeats: int, threads: int) -> dict[str, float]:
    """Median "last frame → g2 on disk" of a followed acquisition (at least 5 runs after a warm-up), the
    in-process figure (last frame seen → result written), where that time went (medians), and the
    load average before and after."""
    import tempfile

    from beambridge.xpcs.pipeline import run_multitau

    env = {**os.environ, "NUMBA_NUM_THREADS": str(threads)}
    latencies, inner = [], []
    parts: dict[str, list[float]] = {}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        _raw, qmap = _write_inputs(Path(tmp), size, 4, 0.5)
        for k in range(max(5, repeats) + 1):  # the first is a warm-up
            raw, out = Path(tmp) / f"live{k}.h5", Path(tmp) / f"live{k}.out.h5"
            writer = subprocess.Popen(
                [sys.executable, __file__, "--live-writer", str(raw), str(size), str(frames), str(fps)],
                stdout=subprocess.PIPE, text=True, env=env,
            )  # fmt: skip
            summary = run_multitau(raw, qmap, out, follow=True, follow_timeout=60)
            done = time.time()
            stdout, _ = writer.communicate()
            if k:
                latencies.append(done - json.loads(stdout.strip().splitlines()[-1])["last_flush"])
                inner.append(float(summary["last_frame_to_result_s"]))
                for key, value in summary["after_last_frame_s"].items():
                    parts.setdefault(key, []).append(float(value))
                print(f"  streaming run {k}: last frame -> g2 on disk {latencies[-1]:.3f} s, seen -> written "
                      f"{inner[-1]:.3f} s {summary['after_last_frame_s']}", flush=True)  # fmt: skip
    return {
        "latency": statistics.median(latencies),
        "latency_min": min(latencies),
        "latency_max": max(latencies),
        "runs": len(latencies),
        "seen_to_written": statistics.median(inner),
        **{key: statistics.median(values) for key, values in parts.items()},
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
    }


def run_ours(
    size: int, frames: int, photons: float, repeats: int, threads: int, processes: int
) -> dict[str, object] | str:
    """Our dense rows in ``processes`` separate processes: the median of their medians, and the range.

    On this shared virtual machine the same correlation runs at two speeds, fixed per process (up to
    2× apart at 1 Mpx: where the process's memory lands, not what it computes), so one process is a
    draw from two modes; the median over processes is the figure to compare."""
    runs = [run_case("ours", size, frames, photons, repeats, threads) for _ in range(max(1, processes))]
    done = [r for r in runs if isinstance(r, dict)]
    if len(done) < len(runs):
        return next(r for r in runs if not isinstance(r, dict))  # type: ignore[return-value]
    if len({r["digest"] for r in done}) != 1:
        raise SystemExit(f"{size}² {frames} frames: processes disagree on g2")
    merged = dict(done[0])
    for key in ("seconds", "seconds_pixels", "cpu_seconds", "extra_mb"):
        merged[key] = statistics.median(float(r[key]) for r in done)  # type: ignore[arg-type]
    seconds = [float(r["seconds"]) for r in done]  # type: ignore[arg-type]
    merged["seconds_range"] = (min(seconds), max(seconds))
    return merged


def run_case(
    kind: str, size: int, frames: int, photons: float, repeats: int, threads: int
) -> dict[str, object] | str:
    args = [str(size), str(frames), str(photons), str(repeats)]
    env = {**os.environ, "NUMBA_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    env.pop("OPENBLAS_CORETYPE", None)
    if kind == "ours":
        cmd = [sys.executable, __file__, "--worker", *args]
    elif kind == "ours-events":
        cmd = [sys.executable, __file__, "--worker-events", *args]
    elif kind.startswith("xpcscorr-"):
        if not PEER_PYTHON.exists():
            return "not installed"
        cmd = [str(PEER_PYTHON), "-c", XPCSCORR_CODE, kind.removeprefix("xpcscorr-"), *args]
    elif kind == "boost-events":
        if not PEER_PYTHON.exists():
            return "not installed"
        cmd = [
            str(PEER_PYTHON),
            "-c",
            PEER_CODE.replace(EVENTS_STACK_OLD, EVENTS_STACK_NEW),
            *args,
            str(threads),
        ]
    else:
        if not PEER_PYTHON.exists():
            return "not installed"
        cmd = [str(PEER_PYTHON), "-c", PEER_CODE, *args, str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    if proc.returncode != 0:
        return "failed: " + (proc.stderr.strip().splitlines() or ["?"])[-1]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--frames", type=int, default=1000, help="frames for 256x256")
    parser.add_argument(
        "--frames-1m",
        default="200,1000",
        help="frame counts for 1024x1024, comma-separated (a short stack shows the fixed costs)",
    )
    parser.add_argument("--threads", type=int, default=2, help="threads for both correlators")
    parser.add_argument(
        "--processes", type=int, default=3, help="processes per dense row of ours (median of their medians)"
    )
    parser.add_argument("--only-end-to-end", action="store_true", help="only the CLI and streaming rows")
    parser.add_argument("--no-live", action="store_true", help="skip the streaming row")
    parser.add_argument("--only-streaming", action="store_true", help="only the streaming row")
    parser.add_argument("--no-end-to-end", action="store_true", help="skip the CLI and streaming rows")
    parser.add_argument("--live-fps", type=float, default=1000.0, help="frame rate of the streaming writer")
    parser.add_argument("--live-frames", type=int, default=1000, help="frames of the streaming acquisition")
    parser.add_argument("--frames-events", type=int, default=500, help="frames of the 1 Mpx event-data rows")
    parser.add_argument("--no-events", action="store_true", help="skip the event-data rows")
    parser.add_argument("--no-dense", action="store_true", help="skip the dense rows")
    parser.add_argument("--no-xpcscorr", action="store_true", help="skip the xpcscorr columns")
    parser.add_argument(
        "--no-boost-events", action="store_true", help="skip boost-corr on the event rows (dense frames only)"
    )
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--worker-events", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--live-writer", nargs=4, help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.worker:
        size, frames, photons, repeats = ns.worker
        print(json.dumps(worker_ours(int(size), int(frames), float(photons), int(repeats))))
        return
    if ns.worker_events:
        size, frames, photons, repeats = ns.worker_events
        print(json.dumps(worker_events(int(size), int(frames), float(photons), int(repeats))))
        return
    if ns.live_writer:
        path, size, frames, fps = ns.live_writer
        live_writer(path, int(size), int(frames), float(fps))
        return
    print(f"load average before the run: {os.getloadavg()[0]:.1f} (1 min) on {os.cpu_count()} cores")
    if ns.only_streaming:
        live = bench_live(256, ns.live_frames, ns.live_fps, ns.repeats, ns.threads)
        print(
            f"streaming 256² at {ns.live_fps:,.0f} frames/s, {ns.live_frames} frames: last frame -> g2 on disk "
            f"{live['latency']:.3f} s (median of {live['runs']:.0f}, {live['latency_min']:.3f}-"
            f"{live['latency_max']:.3f}); last frame seen -> written {live['seen_to_written']:.3f} s (last blocks "
            f"{live['last_blocks']:.3f}, g2 + error bars {live['g2_and_error_bars']:.3f}, result file "
            f"{live['result_file']:.3f}); load average {live['load_before']:.1f} -> {live['load_after']:.1f}"
        )
        return
    if not ns.only_end_to_end and not ns.no_dense:
        correlator_table(ns)
    if not ns.only_end_to_end and not ns.no_events:
        events_table(ns)
    if not ns.no_end_to_end:
        end_to_end(ns)


def end_to_end(ns: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="end to end, 256x256 (median of repeats)")
    for col in ("row", "frames", "figure", "of which"):
        table.add_column(col, justify="right")
    load = os.getloadavg()[0]
    cli = bench_cli(256, ns.frames, ns.repeats, ns.threads)
    for name, row in cli.items():
        table.add_row(
            f"xpcs corr process, 256²×{ns.frames} ({name})", str(ns.frames),
            f"{row['wall']:.3f} s wall, {row['cpu']:.2f} CPU-s",
            f"reading + correlation {row['correlation']:.3f} s (median of {row['repeats']:.0f})",
        )  # fmt: skip
    load_after = os.getloadavg()[0]
    live = None if ns.no_live else bench_live(256, ns.live_frames, ns.live_fps, ns.repeats, ns.threads)
    if live is not None:
        table.add_row(
            f"streaming at {ns.live_fps:,.0f} frames/s: last frame -> g2 on disk", str(ns.live_frames),
            f"{live['latency']:.3f} s (median of {live['runs']:.0f}: {live['latency_min']:.3f}-{live['latency_max']:.3f})",
            f"seen -> written {live['seen_to_written']:.3f} s: last blocks {live['last_blocks']:.3f}, g2 + error "
            f"bars {live['g2_and_error_bars']:.3f}, file {live['result_file']:.3f}; load {live['load_before']:.1f} -> "
            f"{live['load_after']:.1f}",
        )  # fmt: skip
    console = Console(width=170)
    console.print(table)
    warm = cli["worker, warm"]
    console.print(
        f"xpcs corr process, 256²×{ns.frames}: {warm['wall']:.3f} s warm, "
        f"{cli['worker, cold first call']['wall']:.3f} s cold first call, {cli['in process']['wall']:.3f} s "
        f"in process (load average {load:.1f} -> {load_after:.1f} during the CLI rows)"
    )


def correlator_table(ns: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="multi-tau correlation, CPU (median of repeats)")
    for col in (
        "detector",
        "photons/px/frame",
        "frames",
        "beambridge fps to g2(q) (range over processes; CPU s, both threads)",
        "beambridge fps to per-pixel",
        "path",
        "extra MB",
        "boost-corr fps",
        "boost extra MB",
        "speed-up",
        "xpcscorr dense fps",
    ):
        table.add_column(col, justify="right")
    headline = None
    peer_missing = False
    warm_notes: list[str] = []
    cases = [(256, 0.5, ns.frames), (256, 0.02, ns.frames)]
    cases += [(1024, ph, int(n)) for n in ns.frames_1m.split(",") for ph in (0.5, 0.02)]
    for size, photons, frames in cases:
        ours = run_ours(size, frames, photons, ns.repeats, ns.threads, ns.processes)
        peer = run_case("peer", size, frames, photons, ns.repeats, ns.threads)
        # xpcscorr's dense correlator at 256² only: at 1 Mpx its float32 chunks of the whole stack need
        # more memory than this shared machine can give one process
        xc = (
            "skipped"
            if ns.no_xpcscorr or size > 256
            else run_case("xpcscorr-dense", size, frames, photons, ns.repeats, ns.threads)
        )
        xc_cell = f"{frames / float(xc['seconds']):,.0f}" if isinstance(xc, dict) else str(xc)  # type: ignore[arg-type]
        if not isinstance(ours, dict):
            table.add_row(f"{size}x{size}", str(photons), str(frames), str(ours), "", "", "", "", "", "", "")
            continue
        fps = frames / float(ours["seconds"])  # type: ignore[arg-type]
        if isinstance(peer, dict):
            pfps = frames / float(peer["seconds"])  # type: ignore[arg-type]
            peer_cols = [f"{pfps:,.0f}", f"{float(peer['extra_mb']):,.0f}", f"{fps / pfps:.2f}x"]  # type: ignore[arg-type]
        else:
            peer_missing = peer == "not installed"
            peer_cols = [f"boost-corr: {peer}", "", ""]
        fast, slow = ours["seconds_range"]  # type: ignore[misc]  # (fewest, most seconds)
        table.add_row(
            f"{size}x{size}",
            str(photons),
            str(frames),
            f"{fps:,.0f} ({frames / slow:,.0f}-{frames / fast:,.0f}; {float(ours['cpu_seconds']):.3f} CPU-s)",  # type: ignore[arg-type]
            f"{frames / float(ours['seconds_pixels']):,.0f}",  # type: ignore[arg-type]
            f"{ours['mode']}/{ours['arithmetic']}",
            f"{float(ours['extra_mb']):,.0f}",
            *peer_cols,
            xc_cell,
        )  # type: ignore[arg-type]
        warm_notes.append(f"{size}x{size} {photons} {frames}f: {float(ours['warm_seconds']):.1f} s")  # type: ignore[arg-type]
        if size == 256 and photons == 0.5:
            headline = f"256x256 dense: beambridge {fps:,.0f} frames/s to g2(q) on {ours['threads']} threads"
            if isinstance(peer, dict):
                headline += f", boost-corr {frames / float(peer['seconds']):,.0f} frames/s to per-pixel"  # type: ignore[arg-type]
    console = Console(width=170)
    console.print(table)
    if peer_missing:
        console.print(f"boost-corr: not installed ({INSTALL_HINT})")
    if headline:
        console.print(headline)
    console.print("beambridge first run incl. JIT compile/cache load (untimed): " + "; ".join(warm_notes))


def events_table(ns: argparse.Namespace) -> None:
    """Event data (photon counting) at 1 Mpx and 256²: ours, xpcscorr's two sparse correlators and
    boost-corr (dense frames only) on the same photons, same run."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="event data (photon counting), CPU, to g2(q) (median of repeats)")
    cols = ("detector", "photons/px/frame", "frames", "events", "beambridge fps", "path", "CPU s",
            "+ pixel spread fps / CPU s", "extra MB", "xpcscorr sparse-frame fps",
            "xpcscorr sparse-pixel fps", "boost-corr fps", "vs best peer")  # fmt: skip
    for col in cols:
        table.add_column(col, justify="right")
    cases = [(1024, 0.005, ns.frames_events), (1024, 0.0005, ns.frames_events), (256, 0.005, ns.frames)]
    headline = []
    for size, photons, frames in cases:
        ours = run_case("ours-events", size, frames, photons, ns.repeats, ns.threads)
        peers = {}
        for kind in ("xpcscorr-frame", "xpcscorr-pixel", "boost-events"):
            if (ns.no_xpcscorr and kind.startswith("xpcscorr")) or (
                ns.no_boost_events and kind == "boost-events"
            ):
                peers[kind] = "skipped"
                continue
            peers[kind] = run_case(kind, size, frames, photons, ns.repeats, ns.threads)
        if not isinstance(ours, dict):
            table.add_row(f"{size}x{size}", str(photons), str(frames), str(ours))
            continue
        fps = frames / float(ours["seconds"])  # type: ignore[arg-type]
        peer_fps = []
        cells = []
        for kind in ("xpcscorr-frame", "xpcscorr-pixel", "boost-events"):
            got = peers[kind]
            if isinstance(got, dict):
                pf = frames / float(got["seconds"])  # type: ignore[arg-type]
                peer_fps.append(pf)
                cpu = f" (CPU {float(got['cpu_seconds']):.2f} s)" if "cpu_seconds" in got else ""  # type: ignore[arg-type]
                cells.append(f"{pf:,.0f}{cpu}")
            else:
                cells.append(str(got))
        best = max(peer_fps) if peer_fps else None
        table.add_row(
            f"{size}x{size}", str(photons), str(frames), f"{int(ours['events']):,}", f"{fps:,.0f}",  # type: ignore[call-overload]
            str(ours["mode"]), f"{float(ours['cpu_seconds']):.3f}",  # type: ignore[arg-type]
            f"{frames / float(ours['seconds_spread']):,.0f} / {float(ours['cpu_seconds_spread']):.3f}",  # type: ignore[arg-type]
            f"{float(ours['extra_mb']):,.0f}",  # type: ignore[arg-type]
            *cells, f"{fps / best:.1f}x" if best else "",
        )  # fmt: skip
        headline.append(
            f"{size}x{size} {photons}: {fps:,.0f} frames/s"
            + (f" ({fps / best:.1f}x best peer)" if best else "")
        )
    console = Console(width=190)
    console.print(table)
    console.print("event data to g2(q), beambridge: " + "; ".join(headline))
    console.print(
        "xpcscorr 0.4.5 runs without Dask (its local cluster's start-up alone takes seconds) and gives g2 at "
        "every linear lag; its pixel-major (CSC) input is converted outside the timing. boost-corr takes "
        "dense frames only (the same photons, as frames)."
    )


if __name__ == "__main__":
    main()
