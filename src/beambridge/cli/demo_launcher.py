"""A stand-in launcher for the demo: runs jobs by sleeping, through the SDK, in a thread.

It does what a real pilot's launcher does with its session — acquire runnable jobs that fit its free
nodes (long-polling when there are none), report RUNNING, "run", report RUN_DONE — but a job's run is
a short sleep. A later release replaces it with a real site agent; the demo only needs ``start``/``stop``.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

from beambridge.client import Client


class FakeLauncher(threading.Thread):
    """Acquires and "runs" jobs of one site on ``nodes`` single-node slots until stopped."""

    def __init__(self, client: Client, site_id: int, *, nodes: int = 3, run_s: float = 0.6) -> None:
        super().__init__(name="demo-launcher", daemon=True)
        self.client = client
        self.site_id = site_id
        self.nodes = nodes
        self.run_s = run_s
        self.error: BaseException | None = None
        self._stop_requested = threading.Event()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the thread to finish its current step and wait for it."""
        self._stop_requested.set()
        if self.is_alive():
            self.join(timeout)

    def run(self) -> None:
        """Open a session, then acquire → RUNNING → sleep → RUN_DONE until stopped; close the session."""
        try:
            session = self.client.sessions.open(self.site_id)
            try:
                while not self._stop_requested.is_set():
                    self._run_batch(session.id)
            finally:
                self.client.sessions.close(session.id)
        except BaseException as exc:  # reported by the demo, which owns the output
            self.error = exc

    def _run_batch(self, session_id: int) -> None:
        jobs = self.client.sessions.acquire(
            session_id, max_jobs=self.nodes, free_nodes=[1.0] * self.nodes, wait_s=1
        )
        if not jobs:
            return
        now = datetime.now(UTC)
        self.client.sessions.report(
            session_id, [{"id": job.id, "state": "RUNNING", "at": now.isoformat()} for job in jobs]
        )
        time.sleep(self.run_s)  # the "work": a real sleep, so that time visibly passes
        done = datetime.now(UTC)
        self.client.sessions.report(
            session_id,
            [{"id": job.id, "state": "RUN_DONE", "at": done.isoformat(), "return_code": 0} for job in jobs],
        )
