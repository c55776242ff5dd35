"""``beambridge demo``: the whole system on this machine, start to finish, in a few seconds.

::

    user (demo) ─▶ server subprocess (SQLite under BEAMBRIDGE_HOME)
                     ▲           ▲
        SDK client ──┘           └── FakeLauncher thread (site token): acquire → RUNNING → RUN_DONE
        submits   simulate ─▶ correlate ×3 ─▶ summarize, then follows the event stream live

The parts are separate on purpose: :class:`~beambridge.cli.demo_server.LocalServer`,
:func:`submit_dag`, :class:`~beambridge.cli.demo_launcher.FakeLauncher`, :func:`follow_until_done`
and :func:`print_summary`.
"""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from beambridge.cli.demo_launcher import FakeLauncher
from beambridge.cli.demo_server import LocalServer
from beambridge.cli.events import event_line
from beambridge.cli.output import console
from beambridge.client import Client
from beambridge.schemas.events import Event
from beambridge.schemas.jobs import Job
from beambridge.states import TERMINAL_STATES, JobState

DEMO_USER = "demo"
DEMO_PASSWORD = "beambridge-demo"  # a local, throwaway account on the demo's own database


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


def submit_dag(client: Client, app_id: int, run: str) -> dict[int, str]:
    """simulate → correlate ×3 → summarize; returns each job's id with its step name."""
    tags = {"demo_run": run}
    [simulate] = client.jobs.bulk_create(
        [
            {
                "app_id": app_id,
                "workdir": f"demo/{run}/simulate",
                "parameters": {"step": "simulate"},
                "tags": tags,
            }
        ]
    )
    correlate = client.jobs.bulk_create(
        {
            "app_id": app_id,
            "workdir": f"demo/{run}/correlate-{q}",
            "parameters": {"step": "correlate", "q_bin": q},
            "tags": tags,
            "parent_ids": [simulate.id],
        }
        for q in range(3)
    )
    [summarize] = client.jobs.bulk_create(
        [
            {
                "app_id": app_id,
                "workdir": f"demo/{run}/summarize",
                "parameters": {"step": "summarize"},
                "tags": tags,
                "parent_ids": [job.id for job in correlate],
            }
        ]
    )
    names = {simulate.id: "simulate", summarize.id: "summarize"}
    names.update({job.id: f"correlate-{q}" for q, job in enumerate(correlate)})
    return dict(sorted(names.items()))


def follow_until_done(
    client: Client, names: dict[int, str], *, timeout_s: float, launcher: FakeLauncher | None = None
) -> list[Event]:
    """Print each state change of the jobs as it happens; return them all once every job has ended."""
    seen: list[Event] = []
    state: dict[int, JobState] = {}
    deadline = time.monotonic() + timeout_s
    for event in client.events.follow(job_id=list(names), wait_s=1):
        seen.append(event)
        state[event.job_id] = event.to_state
        console.print(f"{event_line(event)}   [dim]{names[event.job_id]}[/dim]", soft_wrap=True)
        if len(state) == len(names) and all(s in TERMINAL_STATES for s in state.values()):
            return seen
        if launcher is not None and launcher.error is not None:
            raise launcher.error
        if time.monotonic() > deadline:
            raise TimeoutError(f"the demo jobs did not finish within {timeout_s:.0f} s")
    return seen  # the stream never ends; for type checkers


def _time_in_states(events: list[Event]) -> dict[int, dict[JobState, float]]:
    by_job: dict[int, list[Event]] = defaultdict(list)
    for event in events:
        by_job[event.job_id].append(event)
    spent: dict[int, dict[JobState, float]] = {}
    for job_id, history in by_job.items():
        spent[job_id] = defaultdict(float)
        for current, following in pairwise(history):
            spent[job_id][current.to_state] += (following.timestamp - current.timestamp).total_seconds()
    return spent


def print_summary(jobs: list[Job], names: dict[int, str], events: list[Event], started: datetime) -> None:
    """A table of the jobs with the time each spent waiting for parents, runnable, and running."""
    spent = _time_in_states(events)
    shown = {
        JobState.AWAITING_PARENTS: "parents s",
        JobState.PREPROCESSED: "queued s",
        JobState.RUNNING: "run s",
    }
    table = Table(title="Demo jobs (seconds in each state)", header_style="bold")
    for header in ["job", "step", "final state", *shown.values(), "total s"]:
        table.add_column(header, justify="right" if header.endswith(" s") or header == "job" else "left")
    for job in jobs:
        times = spent.get(job.id, {})
        total = (job.updated_at - job.created_at).total_seconds()
        table.add_row(
            str(job.id),
            names[job.id],
            str(job.state),
            *(f"{times.get(s, 0.0):.2f}" for s in shown),
            f"{total:.2f}",
        )
    console.print(table)
    finished = sum(job.state is JobState.JOB_FINISHED for job in jobs)
    wall = (max(job.updated_at for job in jobs) - started).total_seconds()
    console.print(f"{finished} of {len(jobs)} jobs JOB_FINISHED; wall time from submission {wall:.2f} s")


def demo(
    timeout: Annotated[
        float, typer.Option(help="Give up if the jobs have not finished after this many seconds.")
    ] = 20,
) -> None:
    """Run the service, a fake launcher and a small job DAG on this machine, printing each state change."""
    from beambridge.client.credentials import beambridge_home

    home = beambridge_home()
    started_at = time.monotonic()
    console.print(f"[bold]beambridge demo[/bold] (home {home})")
    ensure_demo_user(home)
    with LocalServer(home) as server:
        console.print(f"server up at {server.url} (log {server.log_path})")
        with Client.login(server.url, DEMO_USER, DEMO_PASSWORD) as client:
            site = client.sites.filter(name="demo-site").first() or client.sites.create(
                "demo-site", description="the demo's local site"
            )
            app = client.apps.filter(site_id=site.id, name="demo-analysis").first() or client.apps.create(
                site.id,
                "demo-analysis",
                description="pretends to simulate, correlate and summarize",
                parameters={
                    "step": {"type": "str"},
                    "q_bin": {"type": "int", "required": False, "default": 0},
                },
            )
            token = client.sites.create_token(site.id, "demo-launcher").token
            with Client(server.url, site_token=token) as site_client:
                launcher = FakeLauncher(site_client, site.id)
                launcher.start()
                try:
                    run = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
                    submitted = datetime.now().astimezone()
                    names = submit_dag(client, app.id, run)
                    console.print(
                        f"submitted {len(names)} jobs: " + ", ".join(f"{i} {n}" for i, n in names.items())
                    )
                    events = follow_until_done(client, names, timeout_s=timeout, launcher=launcher)
                finally:
                    launcher.stop()
            jobs = list(client.jobs.filter(id=list(names)))
            print_summary(jobs, names, events, submitted)
    console.print(f"server stopped; demo took {time.monotonic() - started_at:.1f} s")
