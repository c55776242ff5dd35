"""A whole beamline end on one machine, for the demo, the tests and the benchmark: a server, a local site
with its agent, a workflow for XPCS datasets, and the watcher as its own process (so it can be killed).

::

    with BeamlineRig(home) as rig:
        rig.put_workflow(rig.xpcs_workflow(qmap))
        rig.start_watcher(folder, settle_s=0.3)
        ...
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from beambridge.client import Client
from beambridge.client.credentials import SavedCredentials
from beambridge.schemas.workflows import Workflow
from beambridge.states import TERMINAL_STATES


def xpcs_workflow(
    qmap: Path,
    *,
    name: str = "xpcs",
    quick_frames: str = "0:50",
    frame_time: float = 5.0e-3,
    change_detection: bool = False,
    site: str | None = None,
    follow_timeout: float = 30.0,
) -> dict[str, Any]:
    """A two-step XPCS workflow: a quick look (g2 and its features on the first frames, at high priority) and
    the full correlation with a fit of D (held for the change detector when ``change_detection``).

    Both steps follow the raw file while the detector writes it when the watcher submitted it live
    (``beambridge watch --live``): the template variable ``live`` turns on the apps' ``follow``."""
    common = {
        "raw": "{{ file.path }}",
        "qmap": str(qmap),
        "frame_time": frame_time,
        "follow": "{{ live | default(false) }}",
        "follow_timeout": follow_timeout,
    }
    spec: dict[str, Any] = {
        "name": name,
        "description": "XPCS: quick look on the first frames, then the full multi-tau with a fit of D",
        "steps": [
            {
                "name": "quick",
                "app": "XpcsQuickLook",
                "quick_look": True,
                "priority": 100,
                "parameters": {**common, "frames": quick_frames, "output": "quick.hdf"},
                "workdir": "{{ workflow }}/{{ file.stem }}/quick",
            },
            {
                "name": "full",
                "app": "XpcsMultiTau",
                "after": ["quick"],
                "parameters": {**common, "output": "result.hdf", "fit": True},
                "workdir": "{{ workflow }}/{{ file.stem }}/full",
                "skip_unless_changed": change_detection,
            },
        ],
    }
    if site is not None:
        for step in spec["steps"]:
            step["site"] = site
    if change_detection:
        spec["change_detection"] = {"features": ["features.D"], "method": "page_hinkley"}
    Workflow.model_validate(spec)
    return spec


class BeamlineRig:
    """Server + local site agent + (killable) watcher processes, all under ``home``; nothing outlives it."""

    def __init__(self, home: Path, *, warm_pilot: bool = False) -> None:
        self.home = home
        self.warm_pilot = warm_pilot
        self.client: Client | None = None
        self._server: Any = None
        self._agent: Any = None
        self.site_id = 0
        self.watcher: subprocess.Popen[bytes] | None = None
        self.watcher_log = home / "watcher.log"

    def __enter__(self) -> BeamlineRig:
        from beambridge.cli.demo import (
            DEMO_PASSWORD,
            DEMO_USER,
            DemoAgent,
            ensure_demo_user,
            prepare_site,
            wait_for_apps,
        )
        from beambridge.cli.demo_server import LocalServer

        self.home.mkdir(parents=True, exist_ok=True)
        ensure_demo_user(self.home)
        self._server = LocalServer(self.home, startup_timeout_s=120)
        self._server.start()
        try:
            self.client = Client.login(self._server.url, DEMO_USER, DEMO_PASSWORD)
            SavedCredentials(
                url=self._server.url,
                username=DEMO_USER,
                access_token=self.client.access_token or "",
                refresh_token=self.client.refresh_token or "",
            ).save(self.home / "client.json")
            site = prepare_site(self.client, self.home / "site", warm_pilot=self.warm_pilot)
            self.site_id = site.load().site_id
            self._agent = DemoAgent(site)
            wait_for_apps(self.client, self.site_id, {"XpcsMultiTau", "XpcsQuickLook"}, self._agent)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    @property
    def url(self) -> str:
        """The server's address."""
        return str(self._server.url)

    @property
    def sdk(self) -> Client:
        """The logged-in client."""
        assert self.client is not None
        return self.client

    def write_workflow(self, spec: dict[str, Any], path: Path | None = None) -> Path:
        """Write ``spec`` as a YAML workflow file."""
        path = path or self.home / f"{spec['name']}.yml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        return path

    def start_watcher(self, folder: Path, workflow_file: Path, *extra: str) -> subprocess.Popen[bytes]:
        """``beambridge watch`` as a child process (its own session, logging to ``watcher.log``)."""
        env = {**os.environ, "BEAMBRIDGE_HOME": str(self.home)}
        command = [sys.executable, "-m", "beambridge", "watch", str(folder), "--workflow", str(workflow_file)]
        with self.watcher_log.open("ab") as log:
            self.watcher = subprocess.Popen(
                [*command, *extra],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self.watcher

    def kill_watcher(self) -> None:
        """``kill -9`` the watcher."""
        if self.watcher is not None and self.watcher.poll() is None:
            os.kill(self.watcher.pid, signal.SIGKILL)
            self.watcher.wait()

    def stop_watcher(self) -> None:
        """Stop the watcher gently (SIGTERM), or kill it."""
        if self.watcher is not None and self.watcher.poll() is None:
            self.watcher.send_signal(signal.SIGTERM)
            try:
                self.watcher.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill_watcher()

    def wait_for_jobs(self, ids: list[int], timeout_s: float) -> list[Any]:
        """Until every job in ``ids`` has ended (TimeoutError after ``timeout_s``)."""
        deadline = time.monotonic() + timeout_s
        while True:
            jobs = list(self.sdk.jobs.filter(id=ids)) if ids else []
            if all(job.state in TERMINAL_STATES for job in jobs) and len(jobs) == len(ids):
                return jobs
            if time.monotonic() > deadline:
                states = sorted({str(job.state) for job in jobs})
                raise TimeoutError(f"jobs did not finish within {timeout_s} s (states: {states})")
            time.sleep(0.3)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop_watcher()
        if self._agent is not None:
            self._agent.stop()
        if self.client is not None:
            self.client.close()
        if self._server is not None:
            self._server.stop()
