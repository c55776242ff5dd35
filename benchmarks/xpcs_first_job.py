"""The first XPCS job on a machine whose numba cache is cold: before and after the warm-up at agent start.

For each case a fresh numba cache (``NUMBA_CACHE_DIR`` in a temporary folder, inherited by the agent, its
pilots and their jobs), a real server and a local site; the README tour's jobs are submitted (a simulated
run, 128×128 × 500 frames, then its multi-tau correlation with a fit), twice in a row:

* **before**: ``launcher.warm_xpcs: false``, jobs submitted as soon as the agent runs (what a new user met:
  the first correlation compiles the kernels itself, silently);
* **after**: the default; the agent compiles the kernels in the background when it starts, and the jobs
  are submitted once its log says ``xpcs_warmup_done`` (the warm-up's own time is shown);
* **after, at once**: the default, jobs submitted as soon as the agent runs (the warm-up still going).

Figures per job pair: the correlation job's run (its RUNNING → RUN_DONE events) and the whole pair
(first job created → correlation JOB_FINISHED), in seconds; "2nd" is the same pair submitted again (a warm
cache). There is no peer for this: Balsam, Parsl and Prefect run no numba code of their own.
Run: ``.venv/bin/python benchmarks/xpcs_first_job.py`` (each cold compile is about a minute of CPU).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from beambridge.cli.demo_server import LocalServer
from beambridge.client import Client
from beambridge.site.config import SiteDir
from beambridge.site.init import init_site
from beambridge.states import JobState

console = Console(width=140)
USER, PASSWORD = "bench", "bench-password-1"


def _add_user(home: Path) -> None:
    from beambridge.server.app import open_database
    from beambridge.server.settings import ServerSettings
    from beambridge.server.users import add_user

    database = open_database(ServerSettings(home=home, database_url=None), upgrade=True)
    try:
        add_user(database, USER, PASSWORD)
    finally:
        database.dispose()


def _cancel_pilots(site: SiteDir) -> None:
    """End the local pilots this run started (they would idle out, but not before the next case)."""
    from beambridge.platform.schedulers.local import LocalScheduler

    state_dir = site.root / "local-scheduler"
    if state_dir.is_dir():
        scheduler = LocalScheduler(state_dir=state_dir, grace_s=2)
        for record in state_dir.iterdir():
            if record.is_dir() and not (record / "result.json").exists():
                scheduler.cancel(record.name)


def _event_time(client: Client, job_id: int, state: JobState) -> datetime:
    return max(e.timestamp for e in client.jobs.events(job_id) if e.to_state == state)


def _pair(client: Client, site: str, tag: str) -> dict[str, float]:
    started = datetime.now(UTC)
    raw = client.jobs.create(
        app="XpcsSimulate", site=site, workdir=f"{tag}/raw", parameters={"diffusion": 2e6, "n_frames": 500}
    )
    g2 = client.jobs.create(
        app="XpcsMultiTau",
        site=site,
        workdir=f"{tag}/g2",
        parent_ids=[raw.id],
        parameters={"raw": "../raw/raw.h5", "qmap": "../raw/raw_qmap.h5", "frame_time": 1e-3, "fit": True},
    )
    done = {job.id: job for job in client.jobs.as_completed([raw.id, g2.id], timeout=3600)}
    if done[g2.id].state != JobState.JOB_FINISHED:
        raise SystemExit(f"job {g2.id} ended {done[g2.id].state}: {done[g2.id].error}")
    run = _event_time(client, g2.id, JobState.RUN_DONE) - _event_time(client, g2.id, JobState.RUNNING)
    total = _event_time(client, g2.id, JobState.JOB_FINISHED) - started
    return {"run": run.total_seconds(), "total": total.total_seconds()}


def _case(root: Path, name: str, warm: bool, wait_for_warmup: bool) -> dict[str, Any]:
    os.environ["NUMBA_CACHE_DIR"] = str(root / "numba-cache")  # cold, and inherited by every process
    home = root / "server"
    home.mkdir(parents=True)
    _add_user(home)
    server = LocalServer(home, startup_timeout_s=300)
    server.start()
    agent: subprocess.Popen[bytes] | None = None
    try:
        client = Client.login(server.url, USER, PASSWORD, timeout=600)
        site = SiteDir(root / "site")
        init_site(site.root, "bench", "local", client, overrides={"launcher": {"warm_xpcs": warm}})
        log = root / "agent.log"
        agent = subprocess.Popen(
            [sys.executable, "-m", "beambridge", "site", "run", str(site.root)],
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        with console.status(f"{name}: the agent registers its apps"):
            while not list(client.apps.filter(name="XpcsMultiTau")):
                if agent.poll() is not None:
                    raise SystemExit(f"the agent exited:\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
        warmup_s = None
        if wait_for_warmup:
            started = time.monotonic()
            with console.status(f"{name}: the agent compiles the XPCS kernels"):
                while "xpcs_warmup_done" not in log.read_text(errors="replace"):
                    if agent.poll() is not None or "xpcs_warmup_failed" in log.read_text(errors="replace"):
                        raise SystemExit(f"agent or warm-up failed:\n{log.read_text()[-3000:]}")
                    time.sleep(0.5)
            warmup_s = time.monotonic() - started
        with console.status(f"{name}: first pair of jobs"):
            first = _pair(client, "bench", "first")
        with console.status(f"{name}: second pair of jobs"):
            second = _pair(client, "bench", "second")
        client.close()
        return {"case": name, "warmup_s": warmup_s, "first": first, "second": second}
    finally:
        if agent is not None:
            agent.terminate()
            agent.wait(timeout=120)
        _cancel_pilots(SiteDir(root / "site"))
        server.stop()
        os.environ.pop("NUMBA_CACHE_DIR", None)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", default="before,after,after-at-once")
    args = parser.parse_args()
    cases = {
        "before": ("before (no warm-up)", False, False),
        "after": ("after (agent warmed at start)", True, True),
        "after-at-once": ("after, submitted at once", True, False),
    }
    load = os.getloadavg()[0]
    rows = []
    for key in args.cases.split(","):
        name, warm, wait = cases[key]
        with tempfile.TemporaryDirectory(prefix="bb-first-xpcs-") as tmp:
            rows.append(_case(Path(tmp), name, warm, wait))
            console.print(f"{name}: {rows[-1]}")
    table = Table(
        title=f"First XPCS job on a cold numba cache ({datetime.now(UTC):%Y-%m-%d}, load {load:.0f})"
    )
    for column in ("case", "warm-up s", "1st: correlation run s", "1st: pair s", "2nd: run s", "2nd: pair s"):
        table.add_column(column, justify="left" if column == "case" else "right")
    for row in rows:
        table.add_row(
            row["case"],
            "-" if row["warmup_s"] is None else f"{row['warmup_s']:.1f}",
            f"{row['first']['run']:.1f}",
            f"{row['first']['total']:.1f}",
            f"{row['second']['run']:.1f}",
            f"{row['second']['total']:.1f}",
        )
    console.print(table)
    by = {row["case"]: row for row in rows}
    before, after = by.get(cases["before"][0]), by.get(cases["after"][0])
    if before and after:
        console.print(
            f"headline: first correlation job {before['first']['run']:.1f} s before, "
            f"{after['first']['run']:.1f} s after the agent's warm-up ({after['warmup_s']:.0f} s at agent start)"
        )


if __name__ == "__main__":
    main()
