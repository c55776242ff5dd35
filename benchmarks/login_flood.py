"""Login flood: does a crowd of clients posting wrong passwords slow everyone else down?

Starts a real server (``beambridge server up``) and measures, from this process, another user's
``GET /sites`` latency while quiet and while N clients post logins with wrong passwords (a fresh user
name each time, so no per-user lock-out helps) for T seconds; a legitimate user also logs in during the
flood. Each configuration runs in the same invocation:

* ``back-off on``: the service's defaults (failed logins back off per name and per address, Argon2 on two
  threads of its own with a short queue; counts shared through the database);
* ``back-off off``: the same server with the per-name and per-address limits raised out of reach, so only
  the password threads' queue protects it (the closest this version comes to the service before issue 16:
  6–10 s for ``GET /sites`` under 32 flooding clients, from ~10 ms).

Printed: a table per configuration and a headline. Run: ``.venv/bin/python benchmarks/login_flood.py``
(``--clients 32 --seconds 10 --db sqlite|postgresql --workers N``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from beambridge.cli.demo_server import LocalServer
from beambridge.server.app import open_database
from beambridge.server.settings import ServerSettings
from beambridge.server.users import add_user

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.servers import PG_ADMIN_URL, postgres_database

PASSWORD = "right-password-123"
console = Console(width=140)
CONFIGS = {
    "back-off on": {},
    "back-off off": {
        "BEAMBRIDGE_LOGIN_FREE_FAILURES_PER_USER": "1000000000",
        "BEAMBRIDGE_LOGIN_FREE_FAILURES_PER_ADDRESS": "1000000000",
    },
}


@contextmanager
def database(kind: str) -> Iterator[str | None]:
    """None for SQLite (the server makes its own file); a fresh PostgreSQL database, dropped afterwards."""
    if kind == "sqlite":
        yield None
        return
    with postgres_database(PG_ADMIN_URL, prefix="bb_flood") as url:
        yield url


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _sites_latencies(http: httpx.Client, stop: threading.Event | None, count: int) -> list[float]:
    """``GET /sites`` round trips in ms: ``count`` of them, or until ``stop`` is set."""
    out: list[float] = []
    while (stop is None and len(out) < count) or (stop is not None and not stop.is_set()):
        start = time.perf_counter()
        answer = http.get("/sites")
        out.append((time.perf_counter() - start) * 1000)
        if answer.status_code != 200:
            raise RuntimeError(f"GET /sites answered {answer.status_code}: {answer.text}")
        if stop is not None:
            time.sleep(0.02)
    return out


def run_config(name: str, env: dict[str, str], kind: str, workers: int, clients: int, seconds: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="bb-flood-") as tmp, database(kind) as url:
        home = Path(tmp)
        settings = ServerSettings(home=home, database_url=url)
        db = open_database(settings, upgrade=True)
        for user in ("victim", "scientist"):
            add_user(db, user, PASSWORD)
        db.dispose()
        with LocalServer(home, database_url=url, workers=workers, env=env, startup_timeout_s=180) as server:
            base = server.url
            token = httpx.post(f"{base}/auth/login", json={"username": "victim", "password": PASSWORD}).json()
            victim = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token['access_token']}"})
            victim.post("/sites", json={"name": "polaris"})
            _sites_latencies(victim, None, 20)  # warm up
            quiet = _sites_latencies(victim, None, 200)
            stop = threading.Event()
            statuses: Counter[int] = Counter()
            lock = threading.Lock()

            def flood(index: int) -> None:
                with httpx.Client(base_url=base, timeout=120) as http:
                    attempt = 0
                    while not stop.is_set():
                        attempt += 1
                        body = {"username": f"flood{index}-{attempt}", "password": "wrong-password"}
                        status = http.post("/auth/login", json=body).status_code
                        with lock:
                            statuses[status] += 1

            threads = [threading.Thread(target=flood, args=(i,), daemon=True) for i in range(clients)]
            under: list[float] = []
            reader = threading.Thread(target=lambda: under.extend(_sites_latencies(victim, stop, 0)))
            started = time.monotonic()
            for thread in threads:
                thread.start()
            reader.start()
            time.sleep(seconds / 2)
            login_start = time.perf_counter()
            legit = httpx.post(
                f"{base}/auth/login", json={"username": "scientist", "password": PASSWORD}, timeout=120
            )
            legit_ms = (time.perf_counter() - login_start) * 1000
            time.sleep(max(0.0, seconds - (time.monotonic() - started)))
            stop.set()
            for thread in [*threads, reader]:
                thread.join(timeout=180)
            elapsed = time.monotonic() - started
            victim.close()
    total = sum(statuses.values())
    return {
        "name": name,
        "flood_per_s": total / elapsed,
        "refused_429": statuses[429] / total if total else 0.0,
        "statuses": dict(sorted(statuses.items())),
        "quiet_p50": statistics.median(quiet),
        "quiet_p95": _percentile(quiet, 0.95),
        "flood_p50": statistics.median(under) if under else float("nan"),
        "flood_p95": _percentile(under, 0.95) if under else float("nan"),
        "flood_max": max(under) if under else float("nan"),
        "reads": len(under),
        "legit": f"{legit.status_code} in {legit_ms:,.0f} ms",
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    results = []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("login flood", total=len(CONFIGS))
        for name, env in CONFIGS.items():
            progress.update(task, description=f"{name}: {args.clients} clients × {args.seconds:.0f} s")
            results.append(run_config(name, env, args.db, args.workers, args.clients, args.seconds))
            progress.advance(task)
    table = Table(
        title=f"login flood: {args.clients} clients posting wrong passwords for {args.seconds:.0f} s "
        f"({args.db}, {args.workers} worker(s)); another user's GET /sites, ms"
    )
    for column in (
        "configuration", "flood logins/s", "answered 429", "flood statuses", "GET p50 quiet", "GET p95 quiet",
        "GET p50 flood", "GET p95 flood", "GET max flood", "reads", "right password during flood",
    ):  # fmt: skip
        table.add_column(column, justify="left" if column in ("configuration", "flood statuses") else "right")
    for r in results:
        table.add_row(
            r["name"], f"{r['flood_per_s']:,.0f}", f"{r['refused_429']:.0%}", str(r["statuses"]),
            f"{r['quiet_p50']:.1f}", f"{r['quiet_p95']:.1f}", f"{r['flood_p50']:.1f}", f"{r['flood_p95']:.1f}",
            f"{r['flood_max']:.0f}", str(r["reads"]), r["legit"],
        )  # fmt: skip
    console.print(table)
    on = results[0]
    console.print(
        f"headline: under a {args.clients}-client login flood another user's GET /sites took "
        f"{on['flood_p50']:.1f} ms median ({on['flood_p95']:.1f} ms p95; quiet {on['quiet_p50']:.1f} ms), "
        f"{on['refused_429']:.0%} of the flood was turned away with 429; with the back-off off "
        f"{results[1]['flood_p50']:.1f} ms median (issue 16, before: 6–10 s)"
    )


if __name__ == "__main__":
    main()
