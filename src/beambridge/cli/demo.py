"""``beambridge demo``: the whole system on this machine — server, site agent, local scheduler, pilot
launcher — analysing simulated XPCS datasets, with a progress bar and a summary.

::

    demo user ─▶ server subprocess (SQLite under BEAMBRIDGE_HOME)
                     ▲                      ▲
      SDK client ────┘   site agent ────────┘  (subprocess: elastic queue → local pilot → launcher)
      submits, per dataset:  XpcsSimulate ─▶ XpcsMultiTau (+ fit of D), plus a batch of Sha256 jobs
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from beambridge.cli.demo_server import LocalServer
from beambridge.cli.output import console
from beambridge.client import Client
from beambridge.schemas.jobs import Job
from beambridge.site.config import SiteDir
from beambridge.states import TERMINAL_STATES, JobState

DEMO_USER = "demo"
DEMO_PASSWORD = "beambridge-demo"  # a local, throwaway account on the demo's own database
DIFFUSION = [0.5e6, 1.0e6, 2.0e6, 4.0e6]


def ensure_demo_user(home: Path) -> None:
    """Create the demo user in the local database, or reset its password if it exists."""
    from beambridge.server.app import open_database
    from beambridge.server.errors import ConflictError
    from beambridge.server.settings import ServerSettings
    from beambridge.server.users import add_user, set_password

    database = open_database(ServerSettings(home=home, database_url=None), upgrade=True)
    try:
        try:
            add_user(database, DEMO_USER, DEMO_PASSWORD)
        except ConflictError:
            set_password(database, DEMO_USER, DEMO_PASSWORD)
    finally:
        database.dispose()


def prepare_site(client: Client, root: Path, *, warm_pilot: bool = False) -> SiteDir:
    """A fresh local site directory (the previous demo's is replaced) registered on the server; with
    ``warm_pilot`` the site keeps a warm pilot for quick looks."""
    from beambridge.site.init import init_site

    if root.exists():
        shutil.rmtree(root)
    cores = os.cpu_count() or 2
    init_site(
        root,
        "demo-site",
        "local",
        client,
        overrides={
            "launcher": {"cores_per_node": cores, "idle_timeout_s": 15, "prefetch": 32},
            "periods": {"heartbeat": 2, "scheduler_sync": 0.5, "elastic_queue": 0.5, "processing": 0.5},
            "session_timeout_s": 30,
            **({"elastic_queue": {"warm_pilot": True}} if warm_pilot else {}),
        },
        reuse=True,  # the previous demo's site, whose directory was just replaced
    )
    return SiteDir(root)


class DemoAgent:
    """The site agent as a subprocess; stopping it also cancels the pilots it left (nothing stays up)."""

    def __init__(self, site: SiteDir) -> None:
        self.site = site
        site.log.mkdir(parents=True, exist_ok=True)
        self.log_path = site.log / "agent.log"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "beambridge", "site", "run", str(site.root)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        from beambridge.platform.schedulers.local import LocalScheduler

        state_dir = self.site.root / "local-scheduler"
        if state_dir.is_dir():
            scheduler = LocalScheduler(state_dir=state_dir, grace_s=3)
            for record in state_dir.iterdir():
                if record.is_dir() and not (record / "result.json").exists():
                    scheduler.cancel(record.name)


def wait_for_apps(
    client: Client, site_id: int, names: set[str], agent: DemoAgent, timeout_s: float = 60
) -> dict[str, int]:
    """The ids of the apps the agent registers when it starts."""
    deadline = time.monotonic() + timeout_s
    while True:
        apps = {app.name: app.id for app in client.apps.filter(site_id=site_id)}
        if names <= set(apps):
            return apps
        if agent.process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the site agent did not register its apps; see {agent.log_path}")
        time.sleep(0.2)


def submit(client: Client, apps: dict[str, int], datasets: int, checksums: int, cores: int) -> dict[int, str]:
    """Per dataset a simulation and its correlation (a DAG), plus independent checksum jobs."""
    names: dict[int, str] = {}
    sims = client.jobs.bulk_create(
        {
            "app_id": apps["XpcsSimulate"],
            "workdir": f"xpcs/ds{k}/simulate",
            "parameters": {"diffusion": DIFFUSION[k % len(DIFFUSION)], "seed": k},
            "node_packing_count": cores,
            "tags": {"demo": "xpcs", "dataset": str(k)},
        }
        for k in range(datasets)
    )
    corrs = client.jobs.bulk_create(
        {
            "app_id": apps["XpcsMultiTau"],
            "workdir": f"xpcs/ds{k}/multitau",
            "parameters": {
                "raw": "../simulate/raw.h5",
                "qmap": "../simulate/raw_qmap.h5",
                "output": "result.hdf",
                "frame_time": 1.0e-3,
                "fit": True,
            },
            "parent_ids": [sim.id],
            "node_packing_count": cores,
            "tags": {"demo": "xpcs", "dataset": str(k)},
        }
        for k, sim in enumerate(sims)
    )
    sums = client.jobs.bulk_create(
        {
            "app_id": apps["Sha256"],
            "workdir": f"checksum/{i}",
            "parameters": {"size_mb": 4, "seed": i},
            "node_packing_count": cores * 2,
            "tags": {"demo": "checksum"},
        }
        for i in range(checksums)
    )
    names.update({job.id: f"simulate ds{k}" for k, job in enumerate(sims)})
    names.update({job.id: f"multitau ds{k}" for k, job in enumerate(corrs)})
    names.update({job.id: f"sha256 {i}" for i, job in enumerate(sums)})
    return names


def follow(client: Client, ids: list[int], timeout_s: float, agent: DemoAgent) -> list[Job]:
    """A progress bar until every job has ended; the jobs as they ended."""
    columns = (
        TextColumn("[bold]jobs"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[states]}"),
        TimeElapsedColumn(),
    )
    deadline = time.monotonic() + timeout_s
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("jobs", total=len(ids), states="")
        while True:
            jobs = list(client.jobs.filter(id=ids))
            counts: dict[str, int] = {}
            for job in jobs:
                counts[job.state.value] = counts.get(job.state.value, 0) + 1
            done = sum(1 for job in jobs if job.state in TERMINAL_STATES)
            progress.update(
                task, completed=done, states=" ".join(f"{k}:{v}" for k, v in sorted(counts.items()))
            )
            if done == len(ids):
                return jobs
            if agent.process.poll() is not None:
                raise RuntimeError(f"the site agent exited; see {agent.log_path}")
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the demo jobs did not finish within {timeout_s:.0f} s; see {agent.log_path}"
                )
            time.sleep(0.5)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def summarize(
    jobs: list[Job], names: dict[int, str], site: SiteDir, submitted: float, finished: float
) -> dict[str, Any]:
    """Print the summary tables; the figures as a dict (for tests)."""
    latencies = [
        (job.updated_at - job.created_at).total_seconds()
        for job in jobs
        if job.state == JobState.JOB_FINISHED
    ]
    ok = sum(job.state == JobState.JOB_FINISHED for job in jobs)
    wall = finished - submitted
    figures = {
        "jobs": len(jobs),
        "finished": ok,
        "failed": len(jobs) - ok,
        "wall_s": wall,
        "throughput": len(jobs) / wall if wall > 0 else 0.0,
        "latency_median_s": statistics.median(latencies) if latencies else float("nan"),
        "latency_p95_s": percentile(latencies, 95) if latencies else float("nan"),
    }
    table = Table(title="XPCS datasets: diffusion coefficient recovered by the pipeline", header_style="bold")
    for header in ("dataset", "true D (Å²/s)", "fitted D (Å²/s)", "error", "frames/s", "result file"):
        table.add_column(header, justify="left" if header in ("dataset", "result file") else "right")
    for job in sorted(jobs, key=lambda j: names[j.id]):
        if not names[job.id].startswith("multitau"):
            continue
        k = int(names[job.id].split("ds")[1])
        true_d = DIFFUSION[k % len(DIFFUSION)]
        result = job.result if isinstance(job.result, dict) else {}
        fit = result.get("fit") or {}
        fitted = fit.get("D") if isinstance(fit, dict) else None
        error = f"{(fitted - true_d) / true_d * 100:+.1f} %" if isinstance(fitted, float) else "-"
        table.add_row(
            f"ds{k}",
            f"{true_d:.3g}",
            f"{fitted:.4g}" if isinstance(fitted, float) else str(job.state),
            error,
            str(result.get("frames_per_second", "-")),
            f"{job.workdir}/result.hdf",
        )
    console.print(table)
    console.print(
        f"[bold]{ok} of {len(jobs)} jobs JOB_FINISHED[/bold] in {wall:.1f} s: "
        f"{figures['throughput']:.1f} jobs/s; latency submission → finished: median "
        f"{figures['latency_median_s']:.2f} s, p95 {figures['latency_p95_s']:.2f} s"
    )
    console.print(f"result files (open them with pyXPCSViewer) are under {site.data}")
    console.print(f"pilot logs under {site.pilots}; agent log {site.log / 'agent.log'}")
    return figures


def demo(
    datasets: Annotated[
        int | None, typer.Option(help="Simulated XPCS datasets to analyse (4; 8 with --beamline).", min=2)
    ] = None,
    checksums: Annotated[int, typer.Option(help="Independent checksum jobs submitted alongside.")] = 100,
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 600,
    beamline: Annotated[
        bool,
        typer.Option(
            "--beamline",
            help="A simulated beamline writing datasets into a folder, watched: quick looks first.",
        ),
    ] = False,
    keep: Annotated[
        bool,
        typer.Option("--keep", help="Keep the server (and its web console) running until Ctrl-C."),
    ] = False,
) -> None:
    """Run the whole system on this machine on simulated XPCS data, with a progress bar and a summary."""
    from beambridge.client.credentials import beambridge_home

    home = beambridge_home()
    if beamline:
        from beambridge.cli.demo_beamline import run_beamline_demo

        console.print(f"[bold]beambridge demo --beamline[/bold] (home {home})")
        figures = run_beamline_demo(home / "beamline-demo", datasets or 8, timeout)
        if figures["datasets"] < (datasets or 8) or figures["failed"]:
            raise RuntimeError(f"the beamline demo did not finish cleanly: {figures}")
        return
    datasets = datasets or 4
    started_at = time.monotonic()
    console.print(f"[bold]beambridge demo[/bold] (home {home})")
    ensure_demo_user(home)
    with LocalServer(home) as server:
        console.print(f"server up at {server.url} (log {server.log_path})")
        with Client.login(server.url, DEMO_USER, DEMO_PASSWORD) as client:
            site = prepare_site(client, home / "demo-site")
            config = site.load()
            agent = DemoAgent(site)
            try:
                console.print(f"site agent started (local scheduler, site directory {site.root})")
                apps = wait_for_apps(
                    client, config.site_id, {"XpcsSimulate", "XpcsMultiTau", "Sha256"}, agent
                )
                submitted = time.monotonic()
                names = submit(client, apps, datasets, checksums, config.launcher.cores_per_node)
                console.print(
                    f"submitted {len(names)} jobs: {datasets} × (XpcsSimulate → XpcsMultiTau + fit), "
                    f"{checksums} × Sha256"
                )
                jobs = follow(client, list(names), timeout, agent)
                finished = time.monotonic()
            finally:
                agent.stop()
            summarize(jobs, names, site, submitted, finished)
            console_url = f"{server.url}/ui/overview"
            login = f"user {DEMO_USER}, password {DEMO_PASSWORD}"
            if keep:
                console.print(f"[bold]web console: {console_url}[/bold] ({login}); Ctrl-C stops the server")
                _wait_for_interrupt()
            else:
                console.print(
                    f"web console was at {console_url} ({login}); "
                    "'beambridge demo --keep' (make demo KEEP=1) keeps it browsable"
                )
    console.print(f"server and agent stopped; demo took {time.monotonic() - started_at:.1f} s")


def _wait_for_interrupt() -> None:
    """Block until Ctrl-C or SIGTERM."""
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
