"""Alerts to people: JSON posted to webhooks (a chat channel's incoming webhook takes the ``text`` field).

An alert never breaks what raised it: a webhook that is down or slow is logged and skipped. The same
alert (kind + subject) is sent at most once per ``quiet_s``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

log = logging.getLogger("beambridge.beamline.alerts")

KINDS = ("change_detected", "failure_burst", "site_down", "late_first_feedback")


@dataclass
class Webhooks:
    """Posts alerts to ``urls``."""

    urls: Sequence[str]
    quiet_s: float = 300.0
    timeout_s: float = 5.0
    sent: list[dict[str, Any]] = field(default_factory=list)
    _last: dict[tuple[str, str], float] = field(default_factory=dict)

    def alert(self, kind: str, subject: str, text: str, data: dict[str, Any] | None = None) -> bool:
        """Send one alert (unless the same was sent within ``quiet_s``); True if it went to any hook."""
        now = time.monotonic()
        last = self._last.get((kind, subject))
        if last is not None and now - last < self.quiet_s:
            return False
        self._last[(kind, subject)] = now
        body = {"kind": kind, "subject": subject, "text": f"[beambridge] {text}", "data": data or {}}
        delivered = False
        for url in self.urls:
            try:
                response = httpx.post(url, json=body, timeout=self.timeout_s)
                response.raise_for_status()
                delivered = True
            except httpx.HTTPError as err:
                log.warning("event=webhook_failed kind=%s url=%s error=%s", kind, url, err)
        self.sent.append(body)
        log.info("event=alert kind=%s subject=%s delivered=%s", kind, subject, delivered)
        return delivered
