"""Multi-tau correlation over MPI ranks: frames/s and speed-up for 1, 2 and 4 ranks on a 1 Mpx stack.

A Poisson stack (1024², uint16, ``--photons`` per pixel and frame, fixed seed) is written to an HDF5
file with a q partition of 360 static / 36 dynamic rings; then for every rank count ``mpirun -n R``
(Open MPI, ``--oversubscribe --bind-to none``, shared memory between the ranks) runs this script's
rank entry, which calls ``correlate`` exactly as ``beambridge xpcs corr`` does: each rank reads only
the detector rows of its pixels, correlates them, the bin sums are reduced in order to rank 0, which
writes the result. The figure is rank 0's ``correlation_seconds`` (reading, correlating, reducing: from
the first block to g2 in memory; start-up and writing excluded) — frames/s = frames / that — median of
``--repeats`` runs after one warm-up. Every rank runs ``--threads`` numba threads (default 1, so that
ranks, not threads, share the cores); the row "1 rank × 2 threads" is the single process as a job
runs it on this machine. Every run's result is checked to be the same bits as the 1-rank run.

The machine's cores, the load average before and after each row, and the ranks' CPU seconds are
printed with the table: more ranks than idle cores cannot go faster, and on a shared machine the
load decides what the wall clock shows.

    python benchmarks/xpcs_mpi.py [--size 1024] [--frames 200] [--ranks 1,2,4] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_inputs(folder: Path, size: int, frames: int, photons: float) -> tuple[Path, Path]:
    """The raw stack (written block by block) and its q partition."""
    import h5py

    from beambridge.xpcs.qmap_geometry import build_qmap

    raw, qmap_path = folder / "raw.h5", folder / "qmap.h5"
    rng = np.random.default_rng(0)
    with h5py.File(raw, "w") as f:
        ds = f.create_dataset(
            "/entry/data/data", (frames, size, size), dtype=np.uint16, chunks=(8, size, size)
        )
        for a in range(0, frames, 50):
            b = min(frames, a + 50)
            ds[a:b] = rng.poisson(photons, (b - a, size, size)).astype(np.uint16)
        f["/entry/instrument/detector_1/frame_time"] = 1e-3
    qmap = build_qmap(
        (size, size),
        (size / 2, size / 2),
        5.0 * size / 256,
        75e-6,
        10.0,
        n_q=36,
        n_phi=1,
        static_q_per_dynamic=10,
    )
    with h5py.File(qmap_path, "w") as f:
        qmap.write_group(f.create_group("qmap"))
    return raw, qmap_path


def rank_entry(raw: str, qmap: str, out: str) -> None:
    """One rank of a run (started by mpirun): correlate, and rank 0 prints its summary."""
    import resource

    from beambridge.xpcs.mpi import this_rank
    from beambridge.xpcs.pipeline import run_multitau

    summary = run_multitau(raw, qmap, out)
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    cpus = [cpu.ru_utime + cpu.ru_stime]
    from mpi4py import MPI

    if MPI.Is_initialized():
        cpus = MPI.COMM_WORLD.gather(cpus[0], root=0) or []
    if this_rank() == 0:
        print("SUMMARY " + json.dumps({**summary, "process_cpu_s": sum(cpus)}))


def g2_bytes(path: Path) -> bytes:
    import h5py

    with h5py.File(path) as f:
        g = f["/xpcs/multitau"]
        return b"".join(np.asarray(g[k][()]).tobytes() for k in ("normalized_g2", "normalized_g2_err"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--photons", type=float, default=0.5)
    parser.add_argument("--ranks", default="1,2,4")
    parser.add_argument("--threads", type=int, default=1, help="numba threads per rank")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rank-entry", nargs=3, help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.rank_entry:
        rank_entry(*ns.rank_entry)
        return
    mpirun = shutil.which("mpirun")
    if mpirun is None:
        sys.exit("mpirun (Open MPI) is needed: make system-deps")
    # ranks on one machine: shared memory between them, Open MPI's daemon traffic on loopback only
    env = {**os.environ, "OMPI_MCA_oob_tcp_if_include": "lo", "OMPI_MCA_btl_tcp_if_include": "lo"}
    if os.geteuid() == 0:
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        raw, qmap = write_inputs(Path(tmp), ns.size, ns.frames, ns.photons)
        print(f"wrote {ns.size}² × {ns.frames} frames in {time.perf_counter() - t0:.1f} s", flush=True)
        reference = None
        configs = [(int(r), ns.threads) for r in ns.ranks.split(",")] + [(1, 2)]
        for ranks, threads in configs:
            out = Path(tmp) / f"out-{ranks}-{threads}.hdf"
            argv = [
                mpirun,
                "-n",
                str(ranks),
                "--oversubscribe",
                "--bind-to",
                "none",
                "-x",
                f"NUMBA_NUM_THREADS={threads}",
            ]
            argv += [sys.executable, __file__, "--rank-entry", str(raw), str(qmap), str(out)]
            seconds, cpu = [], []
            load_before = os.getloadavg()[0]
            for k in range(ns.repeats + 1):  # the first warms the page cache and numba's
                done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
                if done.returncode != 0:
                    sys.exit(f"{ranks} ranks failed:\n{done.stderr[-3000:]}")
                lines = [line for line in done.stdout.splitlines() if "SUMMARY " in line]
                if not lines:
                    sys.exit(
                        f"{ranks} ranks printed no summary:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
                    )
                # another rank's output may follow on the same line: read the one JSON object
                summary = json.JSONDecoder().raw_decode(lines[-1].split("SUMMARY ", 1)[1])[0]
                if k:
                    seconds.append(float(summary["correlation_seconds"]))
                    cpu.append(float(summary["process_cpu_s"]))
            same = g2_bytes(out)
            if reference is None:
                reference = same
            rows.append({
                "ranks": ranks, "threads": threads, "seconds": statistics.median(seconds), "all": seconds,
                "cpu": statistics.median(cpu), "load": (load_before, os.getloadavg()[0]), "same": same == reference,
            })  # fmt: skip
            r = rows[-1]
            print(
                f"{ranks} rank(s) × {threads} thread(s): {ns.frames / r['seconds']:,.0f} frames/s "
                f"(median {r['seconds']:.3f} s of {', '.join(f'{s:.3f}' for s in seconds)}), "
                f"CPU {r['cpu']:.2f} s, load {r['load'][0]:.1f} -> {r['load'][1]:.1f}",
                flush=True,
            )
    base = rows[0]["seconds"]
    print()
    print(
        f"| ranks × threads | frames/s | speed-up | s (median of {ns.repeats}) | CPU-s, all ranks | same bits as 1 rank | load |"
    )
    print("|---|---:|---:|---:|---:|---|---|")
    for r in rows:
        print(
            f"| {r['ranks']} × {r['threads']} | {ns.frames / r['seconds']:,.0f} | {base / r['seconds']:.2f}× | "
            f"{r['seconds']:.3f} | {r['cpu']:.2f} | {'yes' if r['same'] else 'NO'} | "
            f"{r['load'][0]:.1f} → {r['load'][1]:.1f} |"
        )
    best = max(rows[: len(rows) - 1], key=lambda r: base / r["seconds"])
    print(
        f"\n{ns.size}² × {ns.frames} frames over MPI: best {base / best['seconds']:.2f}× with {best['ranks']} ranks "
        f"on {os.cpu_count()} cores (load average {rows[0]['load'][0]:.1f} at the start)"
    )


if __name__ == "__main__":
    main()
