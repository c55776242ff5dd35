"""Bulk create with placement on: jobs/s of ``POST /jobs`` when every job names an app *by name* and the
service places it (one batch on one snapshot per request), against the same jobs by app id.

Starts a real server (``beambridge server up``: uvicorn) per database, registers three live sites with
the same app, and creates 5,000 jobs per call: by ``app_id`` (no placement), then by ``app`` + ``sites``
with each policy. Reports jobs/s (median of the repeats) and what placement adds per job. The issue's
target: bulk create stays at or above 10,000 jobs/s with placement on (placement adds < 1 ms per job).
Then, on a fresh server, the cost of one placement cycle with 25,000 and 40,000 jobs waiting at the sites
(the cycle runs every 2 s in the server's worker, so it must not grow with the backlog).

Run: ``.venv/bin/python benchmarks/placement_create.py`` (``--quick``; ``--config`` to pick one database).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import httpx
import orjson
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from api_throughput import CONFIGS, JSON, contextmanager_for, login
from beambridge.cli.demo_server import LocalServer
from beambridge.server.app import open_database
from beambridge.server.context import utcnow
from beambridge.server.placement.service import PlacementService, run_cycle
from beambridge.server.settings import ServerSettings

console = Console(width=140)
SITES = ("alpha", "beta", "gamma")
POLICIES = ("round_robin", "shortest_backlog", "fastest_finish")
PER_CALL = 5000
BY_ID = "by app id (no placement)"


def setup(http: httpx.Client) -> tuple[list[int], int]:
    """Three live sites with the app ``noop``: their ids, and the id of the first one's app."""
    site_ids, app_ids = [], []
    for name in SITES:
        site = http.post("/sites", json={"name": name}).raise_for_status().json()
        app = http.post("/apps", json={"site_id": site["id"], "name": "noop"}).raise_for_status().json()
        site_ids.append(site["id"])
        app_ids.append(app["id"])
    return site_ids, app_ids[0]


def rate(http: httpx.Client, body: list[dict[str, object]]) -> float:
    payload = orjson.dumps(body)
    started = time.perf_counter()
    response = http.post("/jobs", content=payload, headers=JSON)
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return len(body) / elapsed


def by_id(app_id: int, call: int) -> list[dict[str, object]]:
    return [{"app_id": app_id, "workdir": f"i/{call}/{i}", "tags": {"batch": "b"}} for i in range(PER_CALL)]


def by_name(policy: str, call: int) -> list[dict[str, object]]:
    return [
        {
            "app": "noop",
            "sites": list(SITES),
            "policy": policy,
            "workdir": f"n/{call}/{i}",
            "tags": {"batch": "b"},
        }
        for i in range(PER_CALL)
    ]


def run_config(config: str, repeats: int) -> dict[str, float]:
    kind, workers = CONFIGS[config]
    samples: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bb-bench-") as tmp, contextmanager_for(kind) as database_url:
        home = Path(tmp)
        with LocalServer(home, database_url=database_url, workers=workers, startup_timeout_s=180) as server:
            http = login(home, database_url, server.url)
            site_ids, app_id = setup(http)
            cases: list[tuple[str, Callable[[int], list[dict[str, object]]]]] = [
                (BY_ID, lambda c: by_id(app_id, c))
            ]
            cases += [(f"by name, {p}", lambda c, p=p: by_name(p, c)) for p in POLICIES]
            with Progress(console=console, transient=True) as progress:
                task = progress.add_task(config, total=len(cases) * (repeats + 1))
                for call in range(-1, repeats):  # call -1 warms up; interleaved, so drift hits every case
                    for name, body in cases:
                        progress.update(task, description=f"{config}: {name}")
                        for site_id in site_ids:  # the sites stay up (their agents would beat)
                            http.post(f"/sites/{site_id}/heartbeat").raise_for_status()
                        value = rate(http, body(call))
                        if call >= 0:
                            samples.setdefault(name, []).append(value)
                        progress.advance(task)
            http.close()
    return {name: statistics.median(values) for name, values in samples.items()}


CYCLE_BACKLOGS = (25_000, 40_000)


def cycle_cost(config: str, repeats: int) -> dict[int, float]:
    """Milliseconds one placement cycle (``run_cycle``, in its write transaction) takes with 25,000 and
    40,000 jobs placed and waiting at the sites (none to bind or move: what every cycle costs while a
    backlog waits), medians of ``repeats``. Measured in this process on the server's database, while
    the server runs its own cycles."""
    kind, workers = CONFIGS[config]
    out: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="bb-bench-") as tmp, contextmanager_for(kind) as database_url:
        home = Path(tmp)
        with LocalServer(home, database_url=database_url, workers=workers, startup_timeout_s=180) as server:
            http = login(home, database_url, server.url)
            site_ids, _ = setup(http)
            settings = ServerSettings(home=home, database_url=database_url)
            db = open_database(settings, upgrade=False)
            service = PlacementService(settings)
            made = 0
            for backlog in CYCLE_BACKLOGS:
                while made < backlog:
                    for site_id in site_ids:
                        http.post(f"/sites/{site_id}/heartbeat").raise_for_status()
                    rate(http, by_name("fastest_finish", made // PER_CALL + 1000))
                    made += PER_CALL
                for site_id in site_ids:
                    http.post(f"/sites/{site_id}/heartbeat").raise_for_status()
                times = []
                for _ in range(repeats):
                    started = time.perf_counter()
                    with db.write() as conn:
                        report = run_cycle(service, conn, utcnow())
                    times.append(1e3 * (time.perf_counter() - started))
                    assert not report.bound and not report.replaced, "the sites should be up"
                out[backlog] = statistics.median(times)
            db.dispose()
            http.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 repeats instead of 7")
    parser.add_argument("--config", choices=[*CONFIGS, "all"], default="all")
    args = parser.parse_args()
    configs = list(CONFIGS) if args.config == "all" else [args.config]
    repeats = 3 if args.quick else 7
    results = {config: run_config(config, repeats) for config in configs}
    cycles = {config: cycle_cost(config, repeats) for config in configs}
    load = os.getloadavg()[0]
    table = Table(title=f"bulk create with placement ({date.today()}, {PER_CALL:,} jobs per call, 3 sites, "
                  f"medians of {repeats}, load average {load:.1f})")  # fmt: skip
    table.add_column("jobs")
    for config in configs:
        table.add_column(f"{config} jobs/s", justify="right")
        table.add_column("added µs/job", justify="right")
    table.add_column("target", justify="right")
    names = [BY_ID, *(f"by name, {p}" for p in POLICIES)]
    for name in names:
        cells = []
        for config in configs:
            value = results[config][name]
            base = results[config][BY_ID]
            added = 1e6 / value - 1e6 / base
            cells += [f"{value:,.0f}", "–" if name == names[0] else f"{added:,.0f}"]
        table.add_row(name, *cells, "≥ 10,000" if name != names[0] else "")
    console.print(table)
    cycle_table = Table(title=f"one placement cycle with a waiting backlog, ms (medians of {repeats})")
    cycle_table.add_column("jobs waiting at the sites")
    for config in configs:
        cycle_table.add_column(config, justify="right")
    for backlog in CYCLE_BACKLOGS:
        cycle_table.add_row(f"{backlog:,}", *(f"{cycles[config][backlog]:,.1f}" for config in configs))
    console.print(cycle_table)
    first = results[configs[0]]
    worst = min(first[f"by name, {p}"] for p in POLICIES)
    console.print(
        f"headline ({configs[0]}): {worst:,.0f} jobs/s with placement (slowest policy) vs "
        f"{first[names[0]]:,.0f} jobs/s by app id; target ≥ 10,000"
    )


if __name__ == "__main__":
    main()
