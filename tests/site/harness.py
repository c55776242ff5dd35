"""A whole beambridge system for end-to-end tests: a real server process, a user, sites and agents."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from beambridge.cli.demo_server import LocalServer
from beambridge.client import Client
from beambridge.schemas.jobs import Job
from beambridge.site.config import SiteConfig, SiteDir
from beambridge.site.init import init_site
from beambridge.states import TERMINAL_STATES

PASSWORD = "correct horse battery"
E2E_APPS = {
    "Hello", "Add", "Fail", "Sleep", "MpiRanks", "Retried", "Flaky", "Fragile", "Post", "WhereAmI", "Count"
}  # fmt: skip
"""The apps of ``apps_e2e.py``, which the end-to-end tests copy into their sites."""


def add_user(home: Path, name: str) -> None:
    from beambridge.server.app import open_database
    from beambridge.server.settings import ServerSettings
    from beambridge.server.users import add_user as add

    database = open_database(ServerSettings(home=home, database_url=None), upgrade=True)
    try:
        add(database, name, PASSWORD)
    finally:
        database.dispose()


class AgentProcess:
    """``beambridge site run DIR`` as a real child process (so it can be killed with real signals)."""

    def __init__(self, site: SiteDir) -> None:
        self.site = site
        self.log_path = site.root / "log" / "agent-test.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "beambridge", "site", "run", str(site.root)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                # say where it is stuck (SIGUSR1: every thread's stack to the log), then end it
                self.process.send_signal(signal.SIGUSR1)
                time.sleep(1)
                self.process.kill()
                self.process.wait(timeout=10)
                raise AssertionError(
                    f"the agent did not stop within 60 s of signal {sig}:\n{self.log()[-8000:]}"
                ) from None

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


class System:
    """Server + user + helpers. ``session_timeout_s`` is short so that kill tests are quick."""

    def __init__(
        self, root: Path, *, session_timeout_s: float = 6.0, server_env: dict[str, str] | None = None
    ) -> None:
        self.root = root
        self.home = root / "server-home"
        self.home.mkdir(parents=True)
        add_user(self.home, "scientist")
        self.server = LocalServer(
            self.home,
            env={"BEAMBRIDGE_SESSION_TIMEOUT_S": str(session_timeout_s), **(server_env or {})},
            startup_timeout_s=90,
        )
        try:
            self.server.start()
            self.client = Client.login(self.server.url, "scientist", PASSWORD, retries=10, backoff_s=0.3)
        except BaseException:
            self.server.stop()  # a server that came up too slowly must not outlive the test
            raise
        self.agents: list[AgentProcess] = []
        self.sites: list[SiteDir] = []

    def make_site(self, name: str, platform: str = "local", **overrides: Any) -> tuple[SiteDir, SiteConfig]:
        root = self.root / name
        defaults: dict[str, Any] = {
            "periods": {"heartbeat": 1, "scheduler_sync": 0.5, "elastic_queue": 0.5, "processing": 0.3},
            "session_timeout_s": 6,
            "launcher": {"warm_xpcs": False},  # tests/xpcs/test_warmup.py warms; the others need not
        }
        config = init_site(root, name, platform, self.client, overrides=_merge(defaults, overrides))
        self.sites.append(SiteDir(root))
        return SiteDir(root), config

    def start_agent(self, site: SiteDir) -> AgentProcess:
        agent = AgentProcess(site)
        self.agents.append(agent)
        return agent

    def wait_all(self, ids: Iterable[int], timeout_s: float = 120, poll_s: float = 0.5) -> list[Job]:
        """Wait until every job is terminal (by polling, to stay independent of the SDK's waiting)."""
        wanted = sorted(set(ids))
        deadline = time.monotonic() + timeout_s
        while True:
            jobs = list(self.client.jobs.filter(id=wanted))
            if all(job.state in TERMINAL_STATES for job in jobs):
                return jobs
            if time.monotonic() > deadline:
                states: dict[str, int] = {}
                for job in jobs:
                    states[job.state] = states.get(job.state, 0) + 1
                raise AssertionError(f"jobs not finished after {timeout_s} s: {states}\n{self.logs()}")
            time.sleep(poll_s)

    def app_id(self, site_id: int, name: str, timeout_s: float = 60) -> int:
        """The id of the site's app ``name``, once the agent has registered it."""

        def registered() -> int | None:
            return next((a.id for a in self.client.apps.filter(site_id=site_id) if a.name == name), None)

        found: int = wait_for(registered, timeout_s, what=f"the app {name} registered")
        return found

    def app_ids(self, site_id: int, timeout_s: float = 60) -> dict[str, int]:
        """Name → id of the site's apps, once the agent has registered all of ``apps_e2e.py``'s."""

        def ready() -> dict[str, int] | None:
            apps = {app.name: app.id for app in self.client.apps.filter(site_id=site_id)}
            return apps if set(apps) >= E2E_APPS else None

        found: dict[str, int] = wait_for(ready, timeout_s, what="the site's apps registered")
        return found

    def logs(self) -> str:
        parts = []
        for agent in self.agents:
            parts.append(f"--- agent {agent.site.root.name} ---\n{agent.log()[-6000:]}")
            for out in sorted(agent.site.pilots.rglob("*.out"))[-3:]:
                parts.append(f"--- {out.name} ---\n{out.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts)

    def close(self) -> None:
        """Stop the agents, cancel every pilot still alive (no process outlives the test), stop the server —
        all of it even when one step fails (an agent that will not stop must not leave the server running)."""
        with contextlib.ExitStack() as cleanup:  # run last to first, each despite the others' errors
            cleanup.callback(self.server.stop)
            cleanup.callback(self.client.close)
            for site in self.sites:
                cleanup.callback(cancel_local_pilots, site)
            for agent in reversed(self.agents):
                cleanup.callback(agent.stop)


def cancel_local_pilots(site: SiteDir) -> None:
    """Cancel the site's local-scheduler pilots that have not finished."""
    from beambridge.platform.schedulers.local import LocalScheduler

    state_dir = site.root / "local-scheduler"
    if not state_dir.is_dir():
        return
    scheduler = LocalScheduler(state_dir=state_dir, grace_s=2)
    for record in state_dir.iterdir():
        if record.is_dir() and not (record / "result.json").exists():
            scheduler.cancel(record.name)


def wait_for(condition: Callable[[], Any], timeout_s: float = 60, poll_s: float = 0.2, what: str = "") -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what or condition}")
        time.sleep(poll_s)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def pids_alive(pids: Iterable[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        alive.append(pid)
    return alive


def launcher_pids(site_root: Path, batch_job_ids: Iterable[int] | None = None) -> list[int]:
    """Pids of live ``beambridge launcher`` processes of this test's site (through /proc), optionally of
    some pilots only. Matching the site directory keeps out every other beambridge on the machine: their
    launchers may have the same batch-job ids, never this test's site directory."""
    wanted = None if batch_job_ids is None else {str(i).encode() for i in batch_job_ids}
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"launcher" not in argv or b"--site-dir" not in argv or b"--batch-job-id" not in argv:
            continue
        if argv[argv.index(b"--site-dir") + 1] != str(site_root).encode():
            continue
        if wanted is None or argv[argv.index(b"--batch-job-id") + 1] in wanted:
            pids.append(int(entry.name))
    return pids
