"""Data staging throughput: beambridge's local and rsync backends against plain ``cp`` and ``rsync``.

Everything on this machine: a "beamline" directory as the remote side, and a private sshd on 127.0.0.1
(the tests' own, ``tests/sshd.py``) for rsync over ssh. Measured, inbound (beamline → job workdirs):

* 1,000 small files (10 KiB) in one task, and ``--large`` files of ``--large-mb`` MiB (default 10 × 1 GiB);
* the batch-size effect: 100 files as one task, against 100 tasks of one file;
* the same files with plain ``cp`` (local) and plain ``rsync -a`` over the same ssh (rsync), in the same
  run. beambridge verifies every file (size and checksum) and renames it into place only then.

Medians of ``--repeats`` runs (fresh destination each time). Run:
``.venv/bin/python benchmarks/staging.py`` (``--large 2 --large-mb 256`` for a quick run).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.sshd import SshServer, private_sshd  # noqa: E402

from beambridge.platform.transfer import TransferFile, TransferTask, get_backend  # noqa: E402
from beambridge.schemas.apps import TransferDirection  # noqa: E402

console = Console(width=140)
Case = tuple[str, Callable[[Path], float]]
"""A measured row: its label and a function that moves the files into a fresh directory (seconds)."""


def make_files(folder: Path, count: int, size: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    block = os.urandom(min(size, 1 << 20))
    names = []
    for i in range(count):
        path = folder / f"f{i:05d}.bin"
        with path.open("wb") as out:
            left = size
            while left > 0:
                chunk = block[: min(left, len(block))]
                out.write(chunk)
                left -= len(chunk)
            out.write(i.to_bytes(8, "little"))  # every file different
        names.append(path.name)
    return names


def run_backend(
    backend_factory: Callable[[], object], files: list[str], src: str, dest: Path, tasks: int
) -> float:
    """Seconds to bring ``files`` in as ``tasks`` tasks started together (at most 4 running at once)."""
    backend = backend_factory()
    per_task = max(1, len(files) // tasks)
    batches = [files[i : i + per_task] for i in range(0, len(files), per_task)]
    started = time.perf_counter()
    pending = list(enumerate(batches))
    running = []
    while pending or running:
        while pending and len(running) < 4:
            index, batch = pending.pop(0)
            task = TransferTask(
                f"bench-{index}-{time.monotonic_ns()}",
                TransferDirection.IN,
                "beamline",
                tuple(TransferFile(f"{src}/{name}", dest / name) for name in batch),
            )
            state = backend.prepare(task, None)  # type: ignore[attr-defined]
            running.append(backend.start(task, state))  # type: ignore[attr-defined]
        for handle in list(running):
            status = backend.poll(handle)  # type: ignore[attr-defined]
            if status.done:
                if status.failure:
                    raise RuntimeError(status.error)
                running.remove(handle)
        time.sleep(0.002)
    return time.perf_counter() - started


def plain_cp(src: Path, dest: Path) -> float:
    dest.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    subprocess.run(["cp", "-r", f"{src}/.", str(dest)], check=True)
    subprocess.run(["sync"], check=True)
    return time.perf_counter() - started


def plain_rsync(server: SshServer, src: Path, dest: Path) -> float:
    dest.mkdir(parents=True, exist_ok=True)
    ssh = (
        f"ssh -p {server.port} -i {server.key_file} -o IdentitiesOnly=yes -o BatchMode=yes "
        f"-o StrictHostKeyChecking=accept-new -o UserKnownHostsFile={server.known_hosts}"
    )
    started = time.perf_counter()
    subprocess.run(["rsync", "-a", "-e", ssh, f"{server.user}@{server.host}:{src}/", f"{dest}/"], check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=10)
    parser.add_argument("--large-mb", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[float]] = {}

    with tempfile.TemporaryDirectory(prefix="bb-staging-bench-") as tmp_name:
        tmp = Path(tmp_name)
        beamline = tmp / "beamline"
        small = make_files(beamline / "small", args.small, 10 << 10)
        batch = small[:100]
        large = make_files(beamline / "large", args.large, args.large_mb << 20)
        with private_sshd(tmp / "sshd") as server:
            local = lambda: get_backend("local", {"path": str(beamline), "link": False})  # noqa: E731
            remote = lambda: get_backend(  # noqa: E731
                "rsync", server.rsync_location(beamline), staging_root=tmp / "staging"
            )

            def against_plain_tools(label: str, names: list[str], folder: str) -> list[Case]:
                return [
                    (f"{label}, local, 1 task", lambda d: run_backend(local, names, folder, d, 1)),
                    (f"{label}, cp", lambda d: plain_cp(beamline / folder, d)),
                    (f"{label}, rsync backend, 1 task", lambda d: run_backend(remote, names, folder, d, 1)),
                    (f"{label}, plain rsync", lambda d: plain_rsync(server, beamline / folder, d)),
                ]

            def batch_sizes(backend: Callable[[], object], label: str) -> list[Case]:
                return [
                    (
                        f"100 files, {label}, 1 task of 100",
                        lambda d: run_backend(backend, batch, "small", d, 1),
                    ),
                    (
                        f"100 files, {label}, 100 tasks of 1",
                        lambda d: run_backend(backend, batch, "small", d, 100),
                    ),
                ]

            plan = [
                *against_plain_tools(f"{args.small:,} small files", small, "small"),
                *batch_sizes(local, "local"),
                *batch_sizes(remote, "rsync backend"),
                *against_plain_tools(f"{args.large} × {args.large_mb} MiB", large, "large"),
            ]
            with Progress(console=console) as progress:
                task = progress.add_task("staging", total=len(plan) * args.repeats)
                for r in range(args.repeats):
                    for index, (name, run) in enumerate(plan):
                        dest = tmp / f"dest-{r}-{index}"
                        results.setdefault(name, []).append(run(dest))
                        shutil.rmtree(dest, ignore_errors=True)
                        progress.advance(task)

    sizes = {
        "small": args.small * (10 << 10),
        "batch": 100 * (10 << 10),
        "large": args.large * (args.large_mb << 20),
    }
    table = Table(
        title=f"Staging inbound on one machine (rsync over ssh on 127.0.0.1) — {date.today()}, medians of {args.repeats}"
    )
    for header in ("measure", "seconds", "MB/s", "ms per file"):
        table.add_column(header, justify="left" if header == "measure" else "right")
    med = {name: statistics.median(values) for name, values in results.items()}
    for name, seconds in med.items():
        nbytes = (
            sizes["large"]
            if "MiB" in name
            else sizes["batch"]
            if name.startswith("100 files")
            else sizes["small"]
        )
        files = args.large if "MiB" in name else 100 if name.startswith("100 files") else args.small
        table.add_row(
            name, f"{seconds:.2f}", f"{nbytes / seconds / 1e6:,.0f}", f"{seconds / files * 1000:.2f}"
        )
    console.print(table)
    ours = med[f"{args.large} × {args.large_mb} MiB, rsync backend, 1 task"]
    plain = med[f"{args.large} × {args.large_mb} MiB, plain rsync"]
    small_ours = med[f"{args.small:,} small files, rsync backend, 1 task"] / args.small * 1000
    console.print(
        f"[bold]headline:[/bold] large files through the rsync backend at {plain / ours * 100:.0f} % of plain rsync's "
        f"speed (target ≥ 90 %); small files batched: {small_ours:.2f} ms per file (target < 5)"
    )


if __name__ == "__main__":
    main()
