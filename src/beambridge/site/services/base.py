"""A site-agent service: one job done on its own period, in its own thread, surviving its own failures."""

from __future__ import annotations

import threading
import time
from typing import Any

from beambridge.client import Client
from beambridge.client.errors import Conflict, NotFound
from beambridge.logs import get_logger

log = get_logger(__name__)


def update_jobs(client: Client, what: str, updates: list[dict[str, Any]]) -> None:
    """One bulk job update; if it is refused because a job changed meanwhile (cancelled…), the others
    are sent one by one, so one job's conflict does not hold back the rest."""
    if not updates:
        return
    try:
        client.jobs.bulk_update(updates)
        return
    except (Conflict, NotFound) as exc:
        log.info("updates_refused_together", what=what, job_ids=[u["id"] for u in updates], detail=exc.detail)
    for update in updates:
        try:
            client.jobs.bulk_update([update])
        except (Conflict, NotFound) as exc:
            log.info("update_not_applied", job_id=update["id"], what=what, detail=exc.detail)


class Service:
    """Subclasses implement :meth:`tick`; an exception is logged and the tick retried with backoff."""

    name = "service"

    def __init__(self, period_s: float) -> None:
        self.period_s = period_s
        self.ticks = 0
        self.failures = 0
        self.last_error: str | None = None
        self._thread: threading.Thread | None = None

    def tick(self) -> None:
        raise NotImplementedError

    def run_once(self) -> bool:
        """One tick, errors caught and logged; whether it succeeded."""
        try:
            self.tick()
        except Exception as exc:
            self.failures += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("service_failed", service=self.name, failures_in_a_row=self.failures)
            return False
        self.ticks += 1
        self.failures = 0
        self.last_error = None
        return True

    def loop(self, stop: threading.Event) -> None:
        """Tick every period until ``stop``; after failures wait longer (up to 10 periods or 5 min)."""
        while not stop.is_set():
            started = time.monotonic()
            ok = self.run_once()
            wait = self.period_s if ok else min(self.period_s * 2 ** min(self.failures, 4), 300.0)
            stop.wait(max(0.0, wait - (time.monotonic() - started)))

    def start(self, stop: threading.Event) -> threading.Thread:
        self._thread = threading.Thread(target=self.loop, args=(stop,), name=self.name, daemon=True)
        self._thread.start()
        return self._thread
