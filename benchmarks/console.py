"""Console benchmark: page server times on PostgreSQL with many jobs and events, and event → screen delay.

Fills a fresh PostgreSQL database with ``--jobs`` jobs of one user (the worst case: every row is the
caller's) and ten events per job (a run, an error, a retry, a second run, stage-out), generated inside
the database (``INSERT … SELECT generate_series``, the fastest bulk path there is), then times over HTTP
on loopback (medians of ``--repeat``): the jobs page (first page, a filtered page), the experiment
overview, the weather plot over a window of about 100,000 runs (page and PNG), a job page with a result
plot, the API's single-job GET (p99) and acquire, and, with Chromium installed, the delay from a cancel
to its appearance in an open jobs page. The runs are also written to ``job_runs``, and the per-minute
counts of state changes to ``activity_minutes``, as the service records them.

    python benchmarks/console.py                  # 1,000,000 jobs, 10,000,000 events
    python benchmarks/console.py --jobs 100000    # a tenth, for a busy machine
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import sqlalchemy as sa
import uvicorn
from rich.console import Console
from rich.table import Table

from beambridge.server.app import create_app
from beambridge.server.settings import ServerSettings
from beambridge.server.users import add_user

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.servers import PG_ADMIN_URL, postgres_database

PASSWORD = "bench-password"
RUN_SPAN_H = 12
WEATHER_RUNS = 100_000
console = Console()

TRANSITIONS = [
    ("CREATED", "STAGED_IN"), ("STAGED_IN", "PREPROCESSED"), ("PREPROCESSED", "RUNNING"),
    ("RUNNING", "RUN_ERROR"), ("RUN_ERROR", "RESTART_READY"), ("RESTART_READY", "RUNNING"),
    ("RUNNING", "RUN_DONE"), ("RUN_DONE", "POSTPROCESSED"), ("POSTPROCESSED", "STAGED_OUT"),
    ("STAGED_OUT", "JOB_FINISHED"),
]  # fmt: skip


def fill(url: str, n_jobs: int) -> dict[str, int]:
    """One user, one site, one app, ``n_jobs`` jobs and ten events each, written by the database itself."""
    engine = sa.create_engine(url)
    transitions = ", ".join(f"({i}, '{a}', '{b}')" for i, (a, b) in enumerate(TRANSITIONS))
    with engine.begin() as conn:
        user = conn.exec_driver_sql("SELECT id FROM users WHERE name = 'bench'").scalar_one()
        site = conn.exec_driver_sql(
            "INSERT INTO sites (owner_id, name, status, locations, created_at, last_heartbeat) "
            f"VALUES ({user}, 'polaris', '{{}}', '{{}}', now(), now()) RETURNING id"
        ).scalar_one()
        app = conn.exec_driver_sql(
            "INSERT INTO apps (owner_id, site_id, name, parameters, transfer_slots, hooks, created_at) "
            f"VALUES ({user}, {site}, 'XpcsMultiTau', '{{}}', '{{}}', '{{}}', now()) RETURNING id"
        ).scalar_one()
        # States: 92 % finished, 3 % failed, 2 % running, 3 % waiting to run (acquire finds them).
        conn.exec_driver_sql(f"""
            INSERT INTO jobs (owner_id, site_id, app_id, workdir, state, parameters, tags, data, launch_params,
              num_nodes, ranks_per_node, threads_per_rank, gpus_per_rank, node_packing_count,
              wall_time_limit_min, parent_ids, transfers, has_stage_ins, has_stage_outs, retry_count,
              retry_limit, priority, error, created_at, updated_at)
            SELECT {user}, {site}, {app}, 'run/' || i,
              CASE WHEN mod(i, 100) < 92 THEN 'JOB_FINISHED' WHEN mod(i, 100) < 95 THEN 'FAILED'
                   WHEN mod(i, 100) < 97 THEN 'RUNNING' ELSE 'PREPROCESSED' END,
              jsonb_build_object('frames', 1000), jsonb_build_object('experiment', 'A' || mod(i, 50)),
              '{{}}', '{{}}', 1, 1, 1, 0, 1, 0, '[]', '{{}}', false, false, 1, 3, 0,
              CASE WHEN mod(i, 100) BETWEEN 92 AND 94 THEN 'ValueError: detector mask is empty' END,
              now() - make_interval(secs => ({n_jobs} - i) * {RUN_SPAN_H * 3600.0 / n_jobs}),
              now() - make_interval(secs => ({n_jobs} - i) * {RUN_SPAN_H * 3600.0 / n_jobs})
            FROM generate_series(1, {n_jobs}) AS i""")
        conn.exec_driver_sql(f"""
            INSERT INTO events (job_id, owner_id, site_id, from_state, to_state, timestamp, data)
            SELECT j.id, j.owner_id, j.site_id, t.a, t.b, j.created_at + make_interval(secs => t.k * 2),
              CASE WHEN t.b = 'RUNNING' THEN jsonb_build_object('node', 'nid' || lpad(mod(j.id, 16)::text, 4, '0'),
                                                               'slot', mod(j.id / 16, 8))
                   ELSE '{{}}'::jsonb END
            FROM jobs j CROSS JOIN (VALUES {transitions}) AS t(k, a, b)
            ORDER BY j.id, t.k""")
        # The runs those events describe, as the service records them with the events (jobs/lifecycle.py)
        conn.exec_driver_sql("""
            INSERT INTO job_runs (job_id, owner_id, site_id, app_id, node, slot, started_at, ended_at, end_state)
            SELECT j.id, j.owner_id, j.site_id, j.app_id, 'nid' || lpad(mod(j.id, 16)::text, 4, '0'),
              mod(j.id / 16, 8), j.created_at + make_interval(secs => r.k0 * 2),
              j.created_at + make_interval(secs => r.k1 * 2), r.state
            FROM jobs j CROSS JOIN (VALUES (2, 3, 'RUN_ERROR'), (5, 6, 'RUN_DONE')) AS r(k0, k1, state)
            ORDER BY j.id, r.k0""")
        # Their per-minute counts, as the service keeps them with the events (jobs/activity.py)
        conn.exec_driver_sql("""
            INSERT INTO activity_minutes (owner_id, to_state, minute, site_id, app_id, experiment, count)
            SELECT e.owner_id, e.to_state, date_trunc('minute', e.timestamp), e.site_id, j.app_id,
              coalesce(j.tags ->> 'experiment', ''), count(*)
            FROM events e JOIN jobs j ON j.id = e.job_id
            WHERE e.from_state <> e.to_state
            GROUP BY 1, 2, 3, 4, 5, 6""")
        counts = {
            "jobs": conn.exec_driver_sql("SELECT count(*) FROM jobs").scalar_one(),
            "events": conn.exec_driver_sql("SELECT count(*) FROM events").scalar_one(),
            "site": site,
        }
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE")
    engine.dispose()
    return counts


def g2_artifact(n_q: int = 16, n_tau: int = 120) -> dict[str, object]:
    """A g2 summary the size an XPCS job leaves (16 q bins, 120 delays, a fit per bin)."""
    tau = [1e-5 * 1.1**i for i in range(n_tau)]
    rates = [50.0 * (k + 1) ** 2 for k in range(n_q)]
    return {
        "kind": "xpcs.g2", "q": [0.001 * (k + 1) for k in range(n_q)], "tau_s": tau,
        "g2": [[round(1 + 0.2 * math.exp(-2 * r * t), 6) for t in tau] for r in rates],
        "g2_err": [[0.002] * n_tau for _ in rates], "fit": [{"beta": 0.2, "gamma": r} for r in rates],
    }  # fmt: skip


class Server:
    """The service in a uvicorn thread on a free loopback port."""

    def __init__(self, url: str, home: Path) -> None:
        self.app = create_app(ServerSettings(home=home, database_url=url, secret_key="b" * 40))
        config = uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)
        self.app.state.ctx.db.dispose()


def timed(call: Callable[[], httpx.Response], repeat: int) -> list[float]:
    call()  # warm caches and plans once
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = call()
        out.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, f"{response.status_code}: {response.text[:300]}"
    return out


def console_client(base: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=300)
    page = client.get("/ui/login")
    token = page.text.split('name="login_token" value="')[1].split('"')[0]
    client.post("/ui/login", data={"login_token": token, "username": "bench", "password": PASSWORD})
    return client


def event_to_screen(base: str, api: httpx.Client, count: int) -> list[float] | None:
    """Cancel jobs one by one through the API with the jobs page open; ms until each shows KILLED."""
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        return None
    from playwright.sync_api import sync_playwright

    delays = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_context(bypass_csp=True).new_page()  # lets Playwright evaluate its waits
        page.goto(base + "/ui/login")
        page.fill("input[name=username]", "bench")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.goto(base + "/ui/jobs?state=PREPROCESSED&limit=200")
        page.wait_for_function("document.getElementById('live-status').textContent.includes('live')")
        ids = page.locator("tr[data-job-id]").evaluate_all("rows => rows.map(r => Number(r.dataset.jobId))")
        for job_id in ids[:count]:
            cell = f"tr[data-job-id='{job_id}'] [data-state]"
            started = time.perf_counter()
            api.post("/jobs/cancel", json={"ids": [job_id]}).raise_for_status()
            page.wait_for_function(
                f'document.querySelector("{cell}").textContent === "KILLED"', timeout=10_000
            )
            delays.append((time.perf_counter() - started) * 1000)
        browser.close()
    return delays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    rows: list[tuple[str, str, str]] = []
    with postgres_database(PG_ADMIN_URL, prefix="bb_console") as url, tempfile.TemporaryDirectory() as home:
        app = create_app(ServerSettings(home=Path(home), database_url=url, secret_key="b" * 40))
        add_user(app.state.ctx.db, "bench", PASSWORD)
        app.state.ctx.db.dispose()
        started = time.perf_counter()
        with console.status(f"writing {args.jobs:,} jobs and {10 * args.jobs:,} events"):
            counts = fill(url, args.jobs)
        console.print(
            f"{counts['jobs']:,} jobs, {counts['events']:,} events in {time.perf_counter() - started:.0f} s"
        )
        with Server(url, Path(home)) as base:
            web = console_client(base)
            token = httpx.post(f"{base}/auth/login", json={"username": "bench", "password": PASSWORD}).json()
            api = httpx.Client(
                base_url=base, headers={"Authorization": f"Bearer {token['access_token']}"}, timeout=300
            )
            # a window holding about WEATHER_RUNS runs (two per job, spread over RUN_SPAN_H hours)
            span_s = min((RUN_SPAN_H + 1) * 3600, RUN_SPAN_H * 3600 * WEATHER_RUNS / (2 * args.jobs))
            since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - span_s))
            job = api.get("/jobs", params={"state": "JOB_FINISHED", "limit": 1, "order": "desc"}).json()[
                "items"
            ][0]
            api.put(f"/jobs/{job['id']}/artifacts/g2", json=g2_artifact()).raise_for_status()
            runs_text = web.get(f"/ui/weather?since={since}").text
            runs = runs_text.split(" runs")[0].rsplit(">", 1)[-1].strip()
            pages = {
                "jobs page, first page (50)": "/ui/jobs",
                "jobs page, filtered (FAILED, one tag)": "/ui/jobs?state=FAILED&tag=experiment:A7",
                "experiment overview (one tag, 1 h)": "/ui/overview?tag=experiment:A7",
                "experiment overview (all jobs, 24 h)": "/ui/overview?window=24h",
                f"weather page ({runs} runs)": f"/ui/weather?since={since}",
                f"weather plot PNG ({runs} runs)": f"/ui/weather.png?since={since}",
                "job page (timeline, output, results)": f"/ui/jobs/{job['id']}",
                "result plot PNG (g2, 16 q x 120 delays, fits)": f"/ui/jobs/{job['id']}/artifacts/g2.png",
            }
            for name, path in pages.items():
                times = timed(lambda path=path: web.get(path), args.repeat)
                rows.append((name, f"{statistics.median(times):.0f}", f"{max(times):.0f}"))
            single = sorted(timed(lambda: api.get("/jobs/1"), 200))
            rows.append(("API GET /jobs/{id} (200 calls; p99 in max column)", f"{statistics.median(single):.1f}",
                         f"{single[int(0.99 * len(single)) - 1]:.1f}"))  # fmt: skip
            session = api.post("/sessions", json={"site_id": counts["site"]}).json()
            acquire = timed(
                lambda: api.post(f"/sessions/{session['id']}/acquire", json={"max_jobs": 1}), args.repeat * 3
            )
            rows.append(("API acquire (1 job)", f"{statistics.median(acquire):.1f}", f"{max(acquire):.1f}"))
            delays = event_to_screen(base, api, args.repeat * 2)
            if delays is not None:
                rows.append(("event → screen (cancel to KILLED on the page)", f"{statistics.median(delays):.0f}",
                             f"{max(delays):.0f}"))  # fmt: skip
    table = Table(
        title=f"console on PostgreSQL, {args.jobs:,} jobs, {10 * args.jobs:,} events (ms, loopback)"
    )
    for column in ("measure", "median", "max"):
        table.add_column(column, justify="right" if column != "measure" else "left")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    slowest = max(float(r[1]) for r in rows if "page" in r[0] or "overview" in r[0])
    console.print(f"headline: slowest console page median {slowest:.0f} ms at {args.jobs:,} jobs")


if __name__ == "__main__":
    main()
