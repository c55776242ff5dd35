"""API throughput of the beambridge service, on SQLite and on PostgreSQL.

Starts a real server (``beambridge server up``: uvicorn, one worker) per database and measures, from a
separate client process:

* bulk create: jobs/s for 5,000 jobs per call (with their events);
* the launcher cycle acquire → RUNNING → RUN_DONE → JOB_FINISHED (events written for every step),
  jobs/s with 1 and with 4 concurrent sessions;
* single-job GET latency (p50/p99) under 32 concurrent clients;
* dispatch latency: from the create call returning to a waiting (long-poll) acquire returning the job.

Every figure is the median of several repeats. Run: ``.venv/bin/python benchmarks/api_throughput.py``
(``--quick`` for a short run, ``--db sqlite`` or ``--db postgresql`` for one database).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import httpx
import orjson
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from beambridge.cli.demo_server import LocalServer
from beambridge.server.app import open_database
from beambridge.server.settings import ServerSettings
from beambridge.server.users import add_user

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.servers import PG_ADMIN_URL, postgres_database

BALSAM = {  # Balsam 0.7's own server (FastAPI + PostgreSQL), measured on this 2-core machine (issue #2)
    "bulk create jobs/s": "5,150",
    "cycle jobs/s, 1 session": "2,100–2,600 (to RUN_DONE)",
    "cycle jobs/s, 4 sessions": "2,100–2,600 (to RUN_DONE)",
    "GET p50 ms (32 clients)": "–",
    "GET p99 ms (32 clients)": "≈ 330",
    "create → acquired, median ms": "1,800–2,600 (staged-in → running)",
}
console = Console(width=140)
CONFIGS = {  # name: (database, uvicorn workers)
    "PostgreSQL, 2 workers": ("postgresql", 2),
    "PostgreSQL, 1 worker": ("postgresql", 1),
    "SQLite, 1 worker": ("sqlite", 1),
}
JSON = {"content-type": "application/json"}


@dataclass
class Figures:
    """Medians per measurement, for one database."""

    rows: dict[str, float] = field(default_factory=dict)


def login(home: Path, database_url: str | None, url: str) -> httpx.Client:
    settings = ServerSettings(home=home, database_url=database_url)
    db = open_database(settings, upgrade=True)
    add_user(db, "bench", "bench-password")
    db.dispose()
    token = httpx.post(f"{url}/auth/login", json={"username": "bench", "password": "bench-password"}).json()
    return httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {token['access_token']}"}, timeout=120
    )


def make_app(http: httpx.Client, name: str) -> tuple[int, int]:
    site = http.post("/sites", json={"name": name}).json()
    app = http.post("/apps", json={"site_id": site["id"], "name": "noop"}).json()
    return site["id"], app["id"]


def create(http: httpx.Client, app_id: int, count: int) -> list[int]:
    body = [{"app_id": app_id, "workdir": f"w/{i}", "tags": {"batch": "b"}} for i in range(count)]
    response = http.post("/jobs", content=orjson.dumps(body), headers=JSON)
    response.raise_for_status()
    return [job["id"] for job in orjson.loads(response.content)]


def bench_bulk_create(http: httpx.Client, app_id: int, repeats: int, per_call: int) -> float:
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        create(http, app_id, per_call)
        rates.append(per_call / (time.perf_counter() - started))
    return statistics.median(rates)


def bench_cycle(http: httpx.Client, url: str, sessions: int, jobs: int, batch: int) -> float:
    site_id, app_id = make_app(http, f"cycle-{uuid.uuid4().hex[:6]}")
    for start in range(0, jobs, 5000):
        create(http, app_id, min(5000, jobs - start))
    session_ids = [http.post("/sessions", json={"site_id": site_id}).json()["id"] for _ in range(sessions)]

    def launcher(session_id: int) -> int:
        done = 0
        with httpx.Client(base_url=url, headers=http.headers, timeout=120) as client:
            while True:
                response = client.post(f"/sessions/{session_id}/acquire", json={"max_jobs": batch})
                got = orjson.loads(response.content)
                if not got:
                    return done
                ids = [job["id"] for job in got]
                for state in ("RUNNING", "RUN_DONE"):
                    reports = {"reports": [{"id": i, "state": state, "return_code": 0} for i in ids]}
                    path = f"/sessions/{session_id}/report"
                    client.post(path, content=orjson.dumps(reports), headers=JSON).raise_for_status()
                done += len(ids)

    started = time.perf_counter()
    with ThreadPoolExecutor(sessions) as pool:
        total = sum(pool.map(launcher, session_ids))
    elapsed = time.perf_counter() - started
    finished = http.get(f"/jobs/count?site_id={site_id}&state=JOB_FINISHED").json()["count"]
    assert total == finished == jobs, (total, finished, jobs)
    return jobs / elapsed


async def _get_latencies(
    url: str, headers: httpx.Headers, ids: list[int], clients: int, per_client: int
) -> list[float]:
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=60) as client:

        async def worker(offset: int) -> None:
            for n in range(per_client):
                job_id = ids[(offset * per_client + n) % len(ids)]
                started = time.perf_counter()
                response = await client.get(f"/jobs/{job_id}")
                latencies.append(time.perf_counter() - started)
                response.raise_for_status()

        await asyncio.gather(*(worker(i) for i in range(clients)))
    return latencies


def bench_get(
    http: httpx.Client, url: str, ids: list[int], clients: int, seconds: float
) -> tuple[float, float]:
    """p50 and p99 (ms) of GET /jobs/{id} with ``clients`` connections each sending back to back.

    Uses wrk (a C load generator, `apt-get install wrk`) when installed, so that the client's own cost
    does not count against the server; otherwise Python's httpx, which on two cores measures mostly itself.
    """
    if shutil.which("wrk"):
        return _wrk_get(http, url, ids, clients, seconds)
    asyncio.run(_get_latencies(url, http.headers, ids, clients, 5))  # warm up connections
    latencies = sorted(asyncio.run(_get_latencies(url, http.headers, ids, clients, int(seconds * 20))))
    p50 = latencies[len(latencies) // 2]
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return p50 * 1000, p99 * 1000


_WRK_PERCENTILE = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)$", re.M)
_TO_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _wrk_get(
    http: httpx.Client, url: str, ids: list[int], clients: int, seconds: float
) -> tuple[float, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            f'request = function() return wrk.format("GET", "/jobs/" .. math.random({ids[0]}, {ids[-1]})) end\n'
        )
    command = ["wrk", "-t2", f"-c{clients}", f"-d{seconds:g}s", "--latency", "-s", script.name]
    command += ["-H", f"Authorization: {http.headers['authorization']}", url]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    Path(script.name).unlink()
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw error answers:\n{out}")
    found = {p: float(v) * _TO_MS[u] for p, v, u in _WRK_PERCENTILE.findall(out)}
    return found["50"], found["99"]


def bench_dispatch(http: httpx.Client, url: str, repeats: int) -> float:
    site_id, app_id = make_app(http, f"dispatch-{uuid.uuid4().hex[:6]}")
    session_id = http.post("/sessions", json={"site_id": site_id}).json()["id"]
    latencies = []
    with httpx.Client(base_url=url, headers=http.headers, timeout=60) as waiter_http:
        for _ in range(repeats):
            got: dict[str, float] = {}

            def wait(box: dict[str, float] = got) -> None:
                response = waiter_http.post(
                    f"/sessions/{session_id}/acquire", json={"max_jobs": 1, "wait_s": 10}
                )
                assert response.json(), "the waiting acquire returned nothing"
                box["at"] = time.perf_counter()

            waiter = threading.Thread(target=wait)
            waiter.start()
            time.sleep(0.05)  # the launcher is waiting
            started = time.perf_counter()
            create(http, app_id, 1)
            waiter.join()
            latencies.append(got["at"] - started)
    return statistics.median(latencies) * 1000


def run_database(config: str, quick: bool) -> Figures:
    kind, workers = CONFIGS[config]
    figures = Figures()
    with tempfile.TemporaryDirectory(prefix="bb-bench-") as tmp, contextmanager_for(kind) as database_url:
        home = Path(tmp)
        with LocalServer(home, database_url=database_url, workers=workers) as server:
            http = login(home, database_url, server.url)
            _, app_id = make_app(http, "bulk")
            repeats = 3 if quick else 5
            steps = [
                ("bulk create jobs/s", lambda: bench_bulk_create(http, app_id, repeats, 5000)),
                (
                    "cycle jobs/s, 1 session",
                    lambda: _median(
                        repeats, lambda: bench_cycle(http, server.url, 1, 5000 if quick else 10_000, 500)
                    ),
                ),
                (
                    "cycle jobs/s, 4 sessions",
                    lambda: _median(
                        repeats, lambda: bench_cycle(http, server.url, 4, 5000 if quick else 10_000, 500)
                    ),
                ),
            ]
            with Progress(console=console, transient=True) as progress:
                task = progress.add_task(config, total=len(steps) + 2)
                for name, step in steps:
                    progress.update(task, description=f"{config}: {name}")
                    figures.rows[name] = step()
                    progress.advance(task)
                progress.update(task, description=f"{config}: GET latency")
                ids = create(http, app_id, 1000)
                p50s, p99s = zip(
                    *(bench_get(http, server.url, ids, 32, 4 if quick else 8) for _ in range(repeats)),
                    strict=True,
                )
                figures.rows["GET p50 ms (32 clients)"] = statistics.median(p50s)
                figures.rows["GET p99 ms (32 clients)"] = statistics.median(p99s)
                progress.advance(task)
                progress.update(task, description=f"{config}: dispatch latency")
                figures.rows["create → acquired, median ms"] = bench_dispatch(
                    http, server.url, 20 if quick else 50
                )
                progress.advance(task)
            http.close()
    return figures


def _median(repeats: int, fn) -> float:  # type: ignore[no-untyped-def]
    return statistics.median(fn() for _ in range(repeats))


@contextmanager
def contextmanager_for(kind: str) -> Iterator[str | None]:
    if kind == "sqlite":
        yield None
    else:
        with postgres_database(PG_ADMIN_URL, prefix="bb_bench") as url:
            yield url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and jobs")
    parser.add_argument("--config", choices=[*CONFIGS, "all"], default="all")
    args = parser.parse_args()
    kinds = list(CONFIGS) if args.config == "all" else [args.config]
    results = {kind: run_database(kind, args.quick) for kind in kinds}
    table = Table(title=f"beambridge API throughput ({date.today()}, 2 cores, medians)")
    table.add_column("measure")
    for kind in kinds:
        table.add_column(f"beambridge {kind}", justify="right")
    table.add_column("Balsam 0.7 (PostgreSQL)", justify="right")
    table.add_column("target", justify="right")
    targets = {
        "bulk create jobs/s": "≥ 10,000",
        "cycle jobs/s, 1 session": "≥ 3,000",
        "cycle jobs/s, 4 sessions": "≥ 3,000",
        "GET p50 ms (32 clients)": "",
        "GET p99 ms (32 clients)": "< 50",
        "create → acquired, median ms": "< 20",
    }
    for name, target in targets.items():
        cells = [_fmt(results[k].rows[name]) for k in kinds]
        table.add_row(name, *cells, BALSAM[name], target)
    console.print(table)
    first = results[kinds[0]].rows
    console.print(
        f"headline ({kinds[0]}): {first['bulk create jobs/s']:,.0f} jobs/s bulk create, "
        f"{first['cycle jobs/s, 4 sessions']:,.0f} jobs/s full cycle (4 sessions), "
        f"GET p99 {first['GET p99 ms (32 clients)']:.1f} ms, "
        f"create→acquired {first['create → acquired, median ms']:.1f} ms"
    )


def _fmt(value: float) -> str:
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


if __name__ == "__main__":
    main()
