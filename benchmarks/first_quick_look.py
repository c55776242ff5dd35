"""The first quick look of a beamline shift: from a site with no pilot at all (the batch queue, a
launcher start, imports and numba compiles all come first) against a site that keeps a warm quick-look
pilot (``elastic_queue.warm_pilot``: up, idle, its workers' kernels already compiled).

Each repetition starts a fresh server and local site (``BeamlineRig``), waits — for the warm site —
until its pilot's workers have warmed up, then writes one dataset and measures seconds from the file
closed to its quick look. The numba cache on disk is left as it is for both (a compiled-before kernel
still has to be loaded in each new process; that is what the warm pilot saves).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from beambridge.beamline.simulator import BeamlineRun, SimulatedBeamline
from beambridge.cli.beamline_rig import BeamlineRig, xpcs_workflow

console = Console()


def warmed(rig_home: Path, workers: int) -> bool:
    """Whether the warm pilot's workers have all logged ``app_warmed``."""
    logs = list((rig_home / "site" / "pilots").rglob("*.out"))
    return sum(log.read_text(errors="replace").count("event=app_warmed") for log in logs) >= workers


def first_quick_look(work: Path, warm: bool, args: argparse.Namespace) -> float:
    run = BeamlineRun(rows=args.size, cols=args.size, frames=args.frames, cadence_s=1.0, write_s=0.2)
    beamline = SimulatedBeamline(work / "detector", work / "cache", run)
    beamline.stack(2.0e6)
    with BeamlineRig(work / "rig", warm_pilot=warm) as rig:
        workflow = rig.write_workflow(xpcs_workflow(beamline.qmap, quick_frames=f"0:{args.quick_frames}"))
        rig.start_watcher(beamline.folder, workflow, "--settle", "0.3")
        if warm:
            deadline = time.monotonic() + 300
            while not warmed(rig.home, 2):
                if time.monotonic() > deadline:
                    raise TimeoutError("the warm pilot did not warm up")
                time.sleep(0.5)
        else:
            time.sleep(3)  # the watcher is up; no pilot exists until there is work
        next(beamline.datasets([2.0e6], prefix="first"))
        deadline = time.monotonic() + 300
        while True:
            subs = list(rig.sdk.submissions.list(workflow="xpcs"))
            if subs and subs[0].first_result_s is not None:
                return float(subs[0].first_result_s)
            if time.monotonic() > deadline:
                raise TimeoutError("no quick look")
            time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--frames", type=int, default=400)
    parser.add_argument("--quick-frames", type=int, default=100)
    args = parser.parse_args()
    results: dict[str, list[float]] = {"cold site (no pilot)": [], "warm quick-look pilot": []}
    for _ in range(args.repeat):
        for label, warm in (("cold site (no pilot)", False), ("warm quick-look pilot", True)):
            with tempfile.TemporaryDirectory(prefix="bb-first-") as tmp:
                results[label].append(first_quick_look(Path(tmp), warm, args))
    table = Table(
        title=f"First quick look of a shift: {args.size}×{args.size}×{args.frames}, quick look on "
        f"{args.quick_frames} frames, {args.repeat} fresh sites each",
        header_style="bold",
    )
    table.add_column("site")
    table.add_column("file closed → first quick look, median", justify="right")
    table.add_column("all runs", justify="right")
    for label, values in results.items():
        table.add_row(label, f"{statistics.median(values):.2f} s", ", ".join(f"{v:.1f}" for v in values))
    console.print(table)
    cold, hot = (statistics.median(v) for v in results.values())
    console.print(f"headline: the first quick look {hot:.2f} s with a warm pilot, {cold:.2f} s without")


if __name__ == "__main__":
    main()
