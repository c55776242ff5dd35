"""Batched state reports: the launcher queues changes; one thread sends them every ~50 ms or 500 changes."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from beambridge.client import Client
from beambridge.client.errors import APIError, BeambridgeError, Conflict, NotFound
from beambridge.logs import get_logger

log = get_logger(__name__)


class Reporter:
    """Sends a session's job reports in batches, in order, retrying until the service answers."""

    def __init__(
        self,
        client: Client,
        *,
        interval_s: float = 0.05,
        batch: int = 500,
        on_session_lost: Callable[[int], None] | None = None,
    ) -> None:
        self.client = client
        self.interval_s = interval_s
        self.batch = batch
        self.on_session_lost = on_session_lost
        self._pending: list[tuple[int, dict[str, Any]]] = []
        self._cond = threading.Condition()
        self._stopping = False
        self._abandoned = threading.Event()
        self._in_flight = 0
        self.sent = 0
        self.refused = 0
        self._thread = threading.Thread(target=self._loop, name="reporter", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, session_id: int, report: dict[str, Any]) -> None:
        """Queue one report (``id``, ``state`` and optional ``return_code``/``result``/``error``/``at``)."""
        with self._cond:
            self._pending.append((session_id, report))
            if len(self._pending) >= self.batch or len(self._pending) == 1:
                self._cond.notify()

    def drain(self, timeout_s: float = 30.0) -> bool:
        """Wait until everything queued has been sent; whether it was."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._pending or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.notify_all()
                self._cond.wait(min(remaining, 0.05))
        return True

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Send what is queued, then end the thread; whether everything queued was sent."""
        delivered = self.drain(timeout_s)
        with self._cond:
            self._stopping = True
            if not delivered:  # sent no more: the caller tells the service what it could not deliver
                self._abandoned.set()
            self._cond.notify_all()
        self._thread.join(timeout=5)
        return delivered

    def _take(self) -> list[tuple[int, dict[str, Any]]]:
        with self._cond:
            while not self._pending and not self._stopping:
                self._cond.wait()
            if not self._pending or self._abandoned.is_set():
                return []
            first_wait = time.monotonic() + self.interval_s
            while len(self._pending) < self.batch and not self._stopping:
                remaining = first_wait - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            items, self._pending = self._pending[: self.batch], self._pending[self.batch :]
            self._in_flight = len(items)
            return items

    def _loop(self) -> None:
        while True:
            items = self._take()
            if not items:
                return
            by_session: dict[int, list[dict[str, Any]]] = {}
            for session_id, report in items:
                by_session.setdefault(session_id, []).append(report)
            for session_id, reports in by_session.items():
                self._send(session_id, reports)
            with self._cond:
                self._in_flight = 0
                self._cond.notify_all()

    def _send(self, session_id: int, reports: list[dict[str, Any]]) -> None:
        """Send one batch until the service answers. The batch keeps its id while it is sent again, so a
        batch the service saved before its answer was lost (a dropped connection, a restart) is not
        applied twice, nor refused."""
        backoff = 0.1
        batch_id = uuid.uuid4().hex
        while reports and not self._abandoned.is_set():
            try:
                self.client.sessions.report(session_id, reports, batch_id=batch_id)
                self.sent += len(reports)
                return
            except Conflict as exc:
                if exc.body.get("expired"):
                    log.warning(
                        "reports_dropped",
                        session_id=session_id,
                        reports=len(reports),
                        reason="session expired",
                    )
                    self.refused += len(reports)
                    if self.on_session_lost:
                        self.on_session_lost(session_id)
                    return
                refused = {item.get("id") for item in exc.body.get("refused", [])}
                if not refused:
                    log.warning(
                        "reports_refused",
                        session_id=session_id,
                        reports=len(reports),
                        effect="not sent again",
                        detail=exc.detail,
                    )
                    self.refused += len(reports)
                    return
                # Nothing was applied: the others go again, as a new batch.
                log.warning(
                    "reports_refused",
                    session_id=session_id,
                    job_ids=sorted(i for i in refused if isinstance(i, int)),
                    effect="not sent again; the others go again",
                    detail=exc.detail,
                )
                self.refused += sum(1 for r in reports if r["id"] in refused)
                reports = [r for r in reports if r["id"] not in refused]
                batch_id = uuid.uuid4().hex
            except NotFound:
                log.warning(
                    "reports_dropped", session_id=session_id, reports=len(reports), reason="session is gone"
                )
                self.refused += len(reports)
                if self.on_session_lost:
                    self.on_session_lost(session_id)
                return
            except APIError as exc:
                if exc.status_code < 500:
                    log.error(
                        "reports_rejected",
                        session_id=session_id,
                        reports=len(reports),
                        effect="invalid, not sent again",
                        detail=exc.detail,
                    )
                    self.refused += len(reports)
                    return
                log.warning("report_failed", session_id=session_id, error=exc.detail, retry_in_s=backoff)
                self._abandoned.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            except BeambridgeError as exc:
                log.warning("report_failed", session_id=session_id, error=exc, retry_in_s=backoff)
                self._abandoned.wait(backoff)
                backoff = min(backoff * 2, 5.0)
