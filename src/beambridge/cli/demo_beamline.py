"""``beambridge demo --beamline``: a simulated beamline writes XPCS datasets into a folder; the watcher
submits each one; a local site runs the quick look first, then the full correlation — only for datasets
in which the change detector saw something new. A live table shows datasets arriving and quick looks
appearing.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from rich.live import Live
from rich.table import Table

from beambridge.beamline.latency import describe
from beambridge.beamline.simulator import BeamlineRun, SimulatedBeamline
from beambridge.cli.beamline_rig import BeamlineRig, xpcs_workflow
from beambridge.cli.output import console
from beambridge.client import Client
from beambridge.schemas.workflows import StepStatus, Submission
from beambridge.states import JobState


def _row(client: Client, sub: Submission) -> tuple[str, ...]:
    quick_id, full = sub.steps["quick"].job_id, sub.steps["full"]
    quick = client.jobs.get(quick_id) if quick_id else None
    features = quick.result.get("features", {}) if quick and isinstance(quick.result, dict) else {}
    d_quick = features.get("D") if isinstance(features, dict) else None
    full_text = {StepStatus.HELD: "held", StepStatus.SKIPPED: "skipped (no change)"}.get(full.status, "")
    if full.status is StepStatus.SUBMITTED:
        full_text = f"{sub.full_result_s:.1f} s" if sub.full_result_s is not None else "running"
    return (
        Path(sub.dataset).name,
        f"{sub.first_result_s:.1f} s" if sub.first_result_s is not None else "…",
        f"{d_quick:.3g}" if isinstance(d_quick, float) else "",
        full_text,
        full.reason if full.status is not StepStatus.HELD else "",
    )


def _table(client: Client, subs: list[Submission], written: int, total: int) -> Table:
    table = Table(title=f"beamline: {written}/{total} datasets written", header_style="bold")
    for header in ("dataset", "quick look", "D quick (Å²/s)", "full result", "why"):
        table.add_column(header)
    for sub in subs:
        table.add_row(*_row(client, sub))
    return table


def run_beamline_demo(home: Path, datasets: int, timeout_s: float) -> dict[str, Any]:
    """The demo; returns its figures (for tests)."""
    half = datasets // 2
    diffusions = [2.0e6] * half + [4.0e6] * (datasets - half)
    beamline = SimulatedBeamline(
        home / "detector", home / "cache", BeamlineRun(rows=48, cols=48, frames=200, cadence_s=1.5)
    )
    console.print("simulating the speckle (once per D)…")
    for diffusion in sorted(set(diffusions)):
        beamline.stack(diffusion)
    with BeamlineRig(home / "rig") as rig:
        spec = xpcs_workflow(beamline.qmap, change_detection=True)
        spec["change_detection"]["warmup"] = max(2, min(3, half - 1))
        workflow = rig.write_workflow(spec)
        rig.start_watcher(beamline.folder, workflow, "--settle", "0.3")
        console.print(f"watcher started on {beamline.folder} (workflow {workflow}, log {rig.watcher_log})")
        written: list[Path] = []
        writer = threading.Thread(
            target=lambda: written.extend(p for p, _ in beamline.datasets(diffusions)), daemon=True
        )
        writer.start()
        deadline = time.monotonic() + timeout_s
        subs: list[Submission] = []
        with Live(console=console, refresh_per_second=4) as live:
            while True:
                subs = list(rig.sdk.submissions.list(workflow=spec["name"]))
                live.update(_table(rig.sdk, subs, len(written), datasets))
                settled = len(subs) == datasets and all(
                    s.first_result_s is not None
                    and (s.full_result_s is not None or s.steps["full"].status is StepStatus.SKIPPED)
                    for s in subs
                )
                if settled or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        jobs = [rig.sdk.jobs.get(i) for s in subs for i in s.job_ids]
    console.print()
    first = [s.first_result_s for s in subs if s.first_result_s is not None]
    full = [s.full_result_s for s in subs if s.full_result_s is not None]
    skipped = sum(s.steps["full"].status is StepStatus.SKIPPED for s in subs)
    console.print(f"quick look after the file closed: {describe(first)}")
    console.print(f"full result after the file closed: {describe(full)}")
    console.print(f"full correlation skipped for {skipped} unchanged datasets; D doubled at dataset {half}")
    for sub in subs:  # the reasons in full: the live table's narrow column may have wrapped them
        full_step = sub.steps["full"]
        if full_step.reason and full_step.status is StepStatus.SUBMITTED:
            console.print(
                f"{Path(sub.dataset).name}: full correlation ran ({full_step.reason})", soft_wrap=True
            )
    return {
        "datasets": len(subs),
        "first": first,
        "full": full,
        "skipped": skipped,
        "failed": sum(job.state is JobState.FAILED for job in jobs),
    }
