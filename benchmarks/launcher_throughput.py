"""Launcher throughput on one local node, against Parsl's HighThroughputExecutor in the same run.

Starts a real server (``beambridge server up``, SQLite by default or ``--database-url``), a local site,
and one ``beambridge launcher`` process on this node (as a pilot would run it), then measures:

* **dispatch latency**: a job created while the launcher is idle (long-polling) → the RUNNING the launcher
  reports (the event's own time), median and p95 over ``--latency-samples`` jobs created one at a time;
* **throughput**: ``--jobs`` no-op jobs, Python ``run()`` apps (``Noop``) and shell apps (``NoopShell``,
  ``true``), from the start of submission to the last JOB_FINISHED; every state change is persisted;
* **Parsl** (the peer): the same no-op workloads through its HighThroughputExecutor with the same number
  of workers, run by ``benchmarks/peers/parsl_noop.py`` in the ``.venv-peers`` virtualenv. Nothing is
  persisted there.

Each figure is the median of ``--repeats`` runs. A plot of jobs finished over time is written next to the
table (``--plot``). Run: ``.venv/bin/python benchmarks/launcher_throughput.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from beambridge.cli.demo_server import LocalServer
from beambridge.client import Client
from beambridge.site.config import SiteDir
from beambridge.site.init import init_site
from beambridge.states import JobState

ROOT = Path(__file__).resolve().parent.parent
PEER_PYTHON = ROOT / ".venv-peers" / "bin" / "python"
console = Console(width=140)
USER, PASSWORD = "bench", "bench-password-1"


def add_user(home: Path, database_url: str | None) -> None:
    from beambridge.server.app import open_database
    from beambridge.server.settings import ServerSettings
    from beambridge.server.users import add_user as add

    database = open_database(ServerSettings(home=home, database_url=database_url), upgrade=True)
    try:
        add(database, USER, PASSWORD)
    finally:
        database.dispose()


class Bench:
    """Server + site + one launcher process."""

    def __init__(self, root: Path, workers: int, database_url: str | None) -> None:
        self.root = root
        home = root / "server"
        home.mkdir(parents=True)
        add_user(home, database_url)
        self.server = LocalServer(home, database_url=database_url)
        self.server.start()
        self.client = Client.login(self.server.url, USER, PASSWORD, timeout=300)
        self.workers = workers
        self.site = SiteDir(root / "site")
        self.config = init_site(
            self.site.root,
            f"bench{os.getpid()}{int(time.time())}",
            "local",
            self.client,
            overrides={
                "launcher": {
                    "cores_per_node": workers,
                    "idle_timeout_s": 3600,
                    "prefetch": 256,
                    "long_poll_s": 20,
                },
                "elastic_queue": {"enabled": False},
            },
        )
        self.apps = self._register()
        self.launcher = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "beambridge",
                "launcher",
                "--site-dir",
                str(self.site.root),
                "--nodes",
                "localhost",
            ],
            stdout=(root / "launcher.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _register(self) -> dict[str, int]:
        from beambridge.apps.loader import load_apps
        from beambridge.site.services.apps import register_apps

        return register_apps(self.client, self.config.site_id, load_apps(self.site.apps))

    def close(self) -> None:
        self.launcher.terminate()
        try:
            self.launcher.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.launcher.kill()
        self.client.close()
        self.server.stop()

    def spec(self, app: str, i: int, run: str = "latency") -> dict[str, Any]:
        return {
            "app_id": self.apps[app],
            "workdir": f"{app}/{i}",
            "node_packing_count": self.workers,
            "tags": {"run": run},
        }

    def dispatch_latency(self, samples: int) -> list[float]:
        """Create one job, wait until it finished, repeat; RUNNING time minus creation time, in ms."""
        latencies = []
        for i in range(samples):
            [job] = self.client.jobs.bulk_create([self.spec("Noop", 10_000_000 + i)])
            [done] = self.client.jobs.wait([job.id], timeout=60)
            running = [e for e in self.client.jobs.events(job.id) if e.to_state == JobState.RUNNING]
            latencies.append((running[0].timestamp - done.created_at).total_seconds() * 1000)
            time.sleep(0.05)
        return latencies

    def throughput(self, app: str, jobs: int, offset: int) -> tuple[float, list[float]]:
        """Jobs/s from the start of submission to the last JOB_FINISHED, and finish times (s from start)."""
        run = f"{app}-{offset}"
        since = datetime.now(UTC)
        started = time.monotonic()
        for first in range(0, jobs, 5000):
            batch = [self.spec(app, offset + i, run) for i in range(first, min(jobs, first + 5000))]
            self.client.jobs.bulk_create(batch)
        query = self.client.jobs.filter(tags={"run": run}, state=JobState.JOB_FINISHED)
        while True:
            done = query.count()
            if done == jobs:
                break
            if self.launcher.poll() is not None:
                raise RuntimeError(f"the launcher exited; see {self.root / 'launcher.log'}")
            time.sleep(0.1)
        elapsed = time.monotonic() - started
        finished = sorted(
            e.timestamp.timestamp()
            for e in self.client.events.filter(
                site_id=self.config.site_id, to_state=JobState.JOB_FINISHED, since=since
            )
        )
        t0 = finished[0] - (elapsed - (finished[-1] - finished[0]))
        return jobs / elapsed, [t - t0 for t in finished]


def parsl_run(kind: str, tasks: int, workers: int) -> dict[str, Any] | None:
    if not PEER_PYTHON.exists():
        return None
    done = subprocess.run(
        [
            str(PEER_PYTHON),
            str(ROOT / "benchmarks/peers/parsl_noop.py"),
            "--tasks",
            str(tasks),
            "--kind",
            kind,
            "--workers",
            str(workers),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if done.returncode != 0:
        console.print(f"[red]parsl run failed:[/red] {done.stderr[-500:]}")
        return None
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


def plot(curves: dict[str, list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for label, times in curves.items():
        ax.plot(times, range(1, len(times) + 1), label=label)
    ax.set_xlabel("seconds since submission started")
    ax.set_ylabel("jobs JOB_FINISHED")
    ax.set_title("beambridge launcher, one local node: no-op jobs finished over time")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=4, help="concurrent jobs (and Parsl workers)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--latency-samples", type=int, default=50)
    parser.add_argument("--database-url", default=None, help="PostgreSQL URL (default: SQLite)")
    parser.add_argument("--no-parsl", action="store_true")
    parser.add_argument("--plot", type=Path, default=ROOT / "benchmarks/results/launcher_throughput.png")
    args = parser.parse_args()

    results: dict[str, list[float]] = {"python": [], "shell": []}
    latencies: list[float] = []
    curves: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bb-launcher-bench-") as tmp:
        bench = Bench(Path(tmp), args.workers, args.database_url)
        try:
            with Progress(console=console) as progress:
                task = progress.add_task("beambridge", total=1 + 2 * args.repeats)
                bench.throughput("Noop", 200, 20_000_000)  # warm-up: workers started, caches filled
                latencies = bench.dispatch_latency(args.latency_samples)
                progress.advance(task)
                for r in range(args.repeats):
                    for kind, app in (("python", "Noop"), ("shell", "NoopShell")):
                        rate, times = bench.throughput(
                            app, args.jobs, (r + 1) * 1_000_000 + (0 if kind == "python" else 500_000)
                        )
                        results[kind].append(rate)
                        curves.setdefault(f"{kind} apps ({app})", times)
                        progress.advance(task)
        finally:
            bench.close()
    # Parsl at its best here: its DEBUG log off, and the better of 2 workers and ours
    peer: dict[str, list[dict[str, Any]]] = {"python": [], "shell": []}
    peer_workers = sorted({2, args.workers})
    if not args.no_parsl:
        by_workers: dict[tuple[str, int], list[dict[str, Any]]] = {}
        with Progress(console=console) as progress:
            task = progress.add_task("Parsl HTEX", total=2 * args.repeats * len(peer_workers))
            for _ in range(args.repeats):
                for workers in peer_workers:
                    for kind in ("python", "shell"):
                        run = parsl_run(kind, args.jobs, workers)
                        if run:
                            by_workers.setdefault((kind, workers), []).append(run)
                        progress.advance(task)
        for kind in ("python", "shell"):
            runs = [r for (k, _), r in by_workers.items() if k == kind]
            if runs:
                peer[kind] = max(runs, key=lambda rs: statistics.median(r["tasks_per_s"] for r in rs))

    db = "PostgreSQL" if args.database_url else "SQLite"
    table = Table(
        title=f"Launcher on one local node, {args.workers} concurrent jobs, server on {db} — {date.today()} (medians of {args.repeats})"
    )
    for header in ("measure", "beambridge", "Parsl HTEX, best of 2/4 workers (nothing persisted)", "target"):
        table.add_column(header, justify="left" if header == "measure" else "right")
    p50 = statistics.median(latencies)
    p95 = sorted(latencies)[int(0.95 * (len(latencies) - 1))]
    warm = [r["warm_task_ms"] for r in peer["python"]]
    table.add_row(
        "dispatch latency median, ms",
        f"{p50:.1f}",
        f"{statistics.median(warm):.1f} (warm task)" if warm else "–",
        "< 20",
    )
    table.add_row("dispatch latency p95, ms", f"{p95:.1f}", "", "")
    for kind in ("python", "shell"):
        ours = statistics.median(results[kind])
        theirs = [r["tasks_per_s"] for r in peer[kind]]
        table.add_row(
            f"{args.jobs:,} no-op {kind} jobs, jobs/s",
            f"{ours:,.0f}",
            f"{statistics.median(theirs):,.0f} ({peer[kind][0]['workers']} workers)" if theirs else "–",
            "≥ Parsl",
        )
    console.print(table)
    plot(curves, args.plot)
    py = statistics.median(results["python"])
    sh = statistics.median(results["shell"])
    console.print(
        f"[bold]headline:[/bold] dispatch median {p50:.1f} ms (p95 {p95:.1f}); {py:,.0f} Python and {sh:,.0f} "
        f"shell no-op jobs/s with every state persisted; plot {args.plot}"
    )


if __name__ == "__main__":
    main()
