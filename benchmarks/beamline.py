"""Beamline benchmark: datasets arriving at a steady cadence, through the watcher, to a local site.

Part 1 (the pipeline): a simulated beamline writes XPCS datasets frame by frame into a folder, one every
``--cadence`` seconds; ``beambridge watch`` (its own process, killed with SIGKILL ``--kills`` times along
the way) submits them to a two-step workflow (quick look on the first frames at high priority, then the
full multi-tau with a fit); a local site with a warm pilot runs them. Reported: seconds from file closed
to the quick look and to the full result (median, p95), the full result's overhead beyond the
correlation's own run time, and datasets missed and duplicated.

With ``--live`` the detector writes each file in SWMR mode, the watcher submits it as its first frame
lands (``beambridge watch --live``) and the quick look correlates every frame while they are written;
reported then as well: seconds from the last frame written to the quick look.

Part 2 (the change detector): quick-look features of independently simulated datasets (distinct seeds)
at D and 2D; sequences are drawn from them: a step from D to 2D (detection delay, in datasets) and
``--stationary`` datasets at D (false alarms), for Page-Hinkley and BOCPD.

The issue's size is 500 datasets of 256×256×1000 frames every second (``--full``); the default is a
reduced run for a shared machine: say which was measured.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from beambridge.apps.quicklook import features
from beambridge.beamline.changes import Bocpd, PageHinkley
from beambridge.beamline.latency import percentile
from beambridge.beamline.simulator import BeamlineRun, SimulatedBeamline
from beambridge.cli.beamline_rig import BeamlineRig, xpcs_workflow
from beambridge.xpcs.pipeline import run_multitau
from beambridge.xpcs.simulate import simulate_speckle

console = Console()


def pipeline(args: argparse.Namespace, work: Path) -> dict[str, float]:
    run = BeamlineRun(
        rows=args.size,
        cols=args.size,
        frames=args.frames,
        cadence_s=args.cadence,
        write_s=args.write,
        blocks=10,
        swmr=args.live,
    )
    beamline = SimulatedBeamline(work / "detector", work / "cache", run)
    beamline.stack(2.0e6)
    with BeamlineRig(work / "rig", warm_pilot=True) as rig:
        quick = "0:" if args.live else f"0:{args.quick_frames}"
        workflow = rig.write_workflow(xpcs_workflow(beamline.qmap, quick_frames=quick))
        watch = ("--settle", str(args.settle), *(["--live"] if args.live else []))
        rig.start_watcher(beamline.folder, workflow, *watch)
        # The site keeps a warm pilot for quick looks; one dataset through before the clock starts warms
        # an ordinary pilot for the full steps too.
        next(beamline.datasets([2.0e6], prefix="warmup"))
        deadline = time.monotonic() + 300
        while True:
            subs = list(rig.sdk.submissions.list(workflow="xpcs"))
            if subs and subs[0].full_result_s is not None:
                break
            if time.monotonic() > deadline:
                raise TimeoutError("the warm-up dataset did not finish")
            time.sleep(0.2)
        written: list[Path] = []
        writer = threading.Thread(
            target=lambda: written.extend(p for p, _ in beamline.datasets([2.0e6] * args.datasets)),
            daemon=True,
        )
        writer.start()
        for k in range(args.kills):
            target = (k + 1) * args.datasets // (args.kills + 1)
            while len(written) < target and writer.is_alive():
                time.sleep(0.05)
            time.sleep(0.37 * k % args.cadence)
            rig.kill_watcher()
            time.sleep(args.cadence)  # a dataset or so closes while no watcher runs
            rig.start_watcher(beamline.folder, workflow, *watch)
        writer.join()
        deadline = time.monotonic() + 600
        while True:
            subs = [s for s in rig.sdk.submissions.list(workflow="xpcs") if "warmup" not in s.dataset]
            done = [s for s in subs if s.full_result_s is not None and s.closed_at is not None]
            if (len(done) >= len(written) and len(subs) >= len(written)) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        jobs = {job.id: job for job in rig.sdk.jobs.filter(tags={"workflow": "xpcs", "step": "full"})}
    counts = Counter(Path(s.dataset).name for s in subs)
    wanted = Counter(p.name for p in written)
    first = [s.first_result_s for s in subs if s.first_result_s is not None]
    after_last_frame = [
        s.first_result_at.timestamp() - beamline.last_frame_at[Path(s.dataset)]
        for s in subs
        if s.first_result_at is not None and Path(s.dataset) in beamline.last_frame_at
    ]
    full = [s.full_result_s for s in subs if s.full_result_s is not None]
    overhead = []
    for s in subs:
        job = jobs.get(s.steps["full"].job_id or 0)
        if s.full_result_s is not None and job is not None and isinstance(job.result, dict):
            overhead.append(s.full_result_s - float(job.result.get("total_seconds", 0.0)))
    return {
        "datasets": len(written),
        "last_frame_median": statistics.median(after_last_frame),
        "last_frame_p95": percentile(after_last_frame, 95),
        "first_median": statistics.median(first),
        "first_p95": percentile(first, 95),
        "full_median": statistics.median(full),
        "full_p95": percentile(full, 95),
        "overhead_median": statistics.median(overhead) if overhead else float("nan"),
        "missed": sum((wanted - counts).values()),
        "duplicated": sum((counts - wanted).values()),
    }


def detector(args: argparse.Namespace, work: Path) -> dict[str, dict[str, float]]:
    beamline = SimulatedBeamline(work / "det", work / "detcache", BeamlineRun(rows=48, cols=48, frames=200))
    pools: dict[float, list[dict[str, float | None]]] = {}
    for diffusion in (2.0e6, 4.0e6):
        pools[diffusion] = []
        for seed in range(args.pool):
            raw = work / "det" / f"D{diffusion:.0f}_{seed}.h5"
            paths = simulate_speckle(raw, beamline.parameters(diffusion, seed=1000 + seed))
            out = work / "det" / "quick.hdf"
            run_multitau(str(raw), paths["qmap"], str(out), frames="0:50", frame_time=beamline.run.frame_time)
            pools[diffusion].append(features(str(out)))
            raw.unlink()
    rng = np.random.default_rng(7)
    out: dict[str, dict[str, float]] = {}
    for name, make in (("page_hinkley", PageHinkley), ("bocpd", Bocpd)):
        delays = []
        for _ in range(args.steps):
            d = make()
            before = [pools[2.0e6][i]["D"] for i in rng.integers(0, args.pool, 30)]
            after = [pools[4.0e6][i]["D"] for i in rng.integers(0, args.pool, 20)]
            flags = [i for i, v in enumerate(before + after) if d.update(float(np.log(v or 1.0)))]
            later = [i - 30 for i in flags if i >= 30]
            delays.append(later[0] if later else 99)
        d = make()
        stationary = [pools[2.0e6][i]["D"] for i in rng.integers(0, args.pool, args.stationary)]
        alarms = sum(d.update(float(np.log(v or 1.0))) for v in stationary)
        out[name] = {
            "delay_median": float(statistics.median(delays)),
            "delay_max": float(max(delays)),
            "detected_within_3": float(np.mean([x <= 3 for x in delays])),
            "false_alarms": float(alarms),
        }
    spread = np.std(np.log([f["D"] or 1.0 for f in pools[2.0e6]]))
    out["noise"] = {"log_D_std": float(spread)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", type=int, default=30)
    parser.add_argument("--size", type=int, default=64, help="detector rows = cols")
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--quick-frames", type=int, default=50)
    parser.add_argument("--cadence", type=float, default=1.0)
    parser.add_argument("--write", type=float, default=0.2, help="seconds the detector takes to write one")
    parser.add_argument("--live", action="store_true", help="quick look while the detector writes (SWMR)")
    parser.add_argument("--settle", type=float, default=0.3)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--pool", type=int, default=20, help="distinct simulated datasets per D")
    parser.add_argument("--steps", type=int, default=50, help="step-change sequences")
    parser.add_argument("--stationary", type=int, default=500)
    parser.add_argument("--full", action="store_true", help="the issue's size: 500 × 256×256×1000")
    args = parser.parse_args()
    if args.full:
        args.datasets, args.size, args.frames, args.quick_frames = 500, 256, 1000, 100
    with tempfile.TemporaryDirectory(prefix="bb-beamline-") as tmp:
        work = Path(tmp)
        figures = pipeline(args, work)
        changes = detector(args, work)
    size = f"{args.datasets} datasets {args.size}×{args.size}×{args.frames} every {args.cadence:g} s"
    mode = "quick look while written (--live)" if args.live else "quick look after close"
    title = f"Beamline: {size}, written in {args.write:g} s, {mode}, {args.kills} watcher kills, warm pilot"
    table = Table(title=title, header_style="bold")
    table.add_column("figure")
    table.add_column("measured", justify="right")
    table.add_column("target", justify="right")
    table.add_row(
        "last frame written → quick look, median / p95",
        f"{figures['last_frame_median']:.2f} s / {figures['last_frame_p95']:.2f} s",
        "",
    )
    table.add_row("file closed → quick look, median", f"{figures['first_median']:.2f} s", "< 2 s")
    table.add_row("file closed → quick look, p95", f"{figures['first_p95']:.2f} s", "< 4 s")
    table.add_row("file closed → full result, median", f"{figures['full_median']:.2f} s", "")
    table.add_row("file closed → full result, p95", f"{figures['full_p95']:.2f} s", "")
    table.add_row(
        "full result beyond the correlation's own time, median",
        f"{figures['overhead_median']:.2f} s",
        "< 2 s",
    )
    table.add_row("datasets missed / duplicated", f"{figures['missed']} / {figures['duplicated']}", "0 / 0")
    for name in ("page_hinkley", "bocpd"):
        c = changes[name]
        table.add_row(
            f"{name}: delay after D doubles (median / max)",
            f"{c['delay_median']:.0f} / {c['delay_max']:.0f}",
            "≤ 3",
        )
        table.add_row(
            f"{name}: false alarms in {args.stationary} stationary", f"{c['false_alarms']:.0f}", "≤ 1"
        )
    console.print(table)
    console.print(
        f"quick-look D noise (std of log D over {args.pool} seeds): {changes['noise']['log_D_std']:.3f}"
    )
    console.print(
        f"headline: quick look {figures['first_median']:.2f} s median / {figures['first_p95']:.2f} s p95 after "
        f"the file closes; {figures['missed']} missed, {figures['duplicated']} duplicated over {args.kills} "
        f"kills; Page-Hinkley flags a doubling of D in {changes['page_hinkley']['delay_median']:.0f} datasets "
        f"with {changes['page_hinkley']['false_alarms']:.0f} false alarms in {args.stationary}"
    )


if __name__ == "__main__":
    main()
