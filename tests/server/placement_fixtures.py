"""What the placement tests share: a server with short health thresholds and a fast placement cycle, and
two live sites (each with the ``echo`` app, each just heard from) on it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from beambridge.server.app import create_app
from tests.conftest import ApiUser, make_settings
from tests.servers import LiveServer

PARAMS = {"n": {"type": "int"}}
DOWN_AFTER_S = 2.0


@pytest.fixture
def fast(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server on the same database that calls a site down after 2 s without a heartbeat and runs a
    placement cycle every 0.2 s."""
    app: FastAPI = create_app(
        make_settings(
            tmp_path_factory.mktemp("placement"),
            database_url,
            site_degraded_after_s=1.0,
            site_down_after_s=DOWN_AFTER_S,
            placement_interval_s=0.2,
            site_scheduler_failures_degraded=2,
            site_scheduler_failures_down=4,
        )
    )
    with LiveServer(app) as server:
        yield server
    app.state.ctx.db.dispose()


@dataclass
class TwoSites:
    """Sites ``a`` and ``b`` of one user, with ``echo`` registered, and an HTTP client on the fast server."""

    user: ApiUser
    http: httpx.Client
    a: dict[str, Any]
    b: dict[str, Any]

    def beat(self, *sites: dict[str, Any]) -> None:
        """Heartbeats from ``sites`` (both when none is named)."""
        for site in sites or (self.a, self.b):
            self.http.post(f"/sites/{site['id']}/heartbeat").raise_for_status()

    def job(self, job_id: int) -> dict[str, Any]:
        return self.http.get(f"/jobs/{job_id}").json()  # type: ignore[no-any-return]

    @contextmanager
    def beating(self, site: dict[str, Any], period_s: float = 0.3) -> Iterator[None]:
        """``site`` sends a heartbeat every ``period_s`` from its own thread while the block runs, as its
        agent would: a test's own steps, slow on a loaded machine, must not make a live site look down."""
        stop = threading.Event()

        def beat() -> None:
            with httpx.Client(base_url=self.http.base_url, headers=self.http.headers, timeout=30) as own:
                while not stop.is_set():
                    own.post(f"/sites/{site['id']}/heartbeat").raise_for_status()
                    stop.wait(period_s)

        thread = threading.Thread(target=beat, name=f"heartbeat-{site['name']}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=30)


@pytest.fixture
def two_sites(alice: ApiUser, fast: LiveServer) -> Iterator[TwoSites]:
    http = httpx.Client(base_url=fast.url, headers=alice.http.headers, timeout=30)
    made = TwoSites(alice, http, alice.site("a"), alice.site("b"))
    for site in (made.a, made.b):
        alice.app(site["id"], "echo", parameters=PARAMS)
    made.beat()
    yield made
    http.close()


def eventually(check: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
