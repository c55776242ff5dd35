"""Fixtures for the SDK tests: a logged-in Client on the live server, a site with an app, and a
launcher thread that finishes jobs through a real session."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest

from beambridge.client import Client
from beambridge.schemas import App, Site
from tests.conftest import PASSWORD, ApiUser
from tests.servers import LiveServer


class RecordingTransport(httpx.HTTPTransport):
    """An ordinary HTTP transport that remembers every request it sends (method, path, query)."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return super().handle_request(request)

    def calls(self, method: str, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and r.url.path == path]


@pytest.fixture
def recorder() -> RecordingTransport:
    return RecordingTransport()


@pytest.fixture
def client(live_server: LiveServer, alice: ApiUser, recorder: RecordingTransport) -> Iterator[Client]:
    with Client.login(live_server.url, alice.name, PASSWORD, transport=recorder) as made:
        yield made


@dataclass
class Workspace:
    site: Site
    app: App


@pytest.fixture
def ws(client: Client) -> Workspace:
    site = client.sites.create("polaris")
    app = client.apps.create(site.id, "echo", parameters={"n": {"required": False, "default": 0}})
    return Workspace(site, app)


class Launcher(threading.Thread):
    """Finishes jobs of a site through a real session: acquire (long-poll) → RUNNING → RUN_DONE.

    ``gate`` (optional) is called with each job id before it is finished, so a test can hold a job back.
    """

    def __init__(self, client: Client, site_id: int, total: int, gate: Callable[[int], None] | None = None):
        super().__init__(daemon=True)
        self.client, self.site_id, self.total, self.gate = client, site_id, total, gate
        self.finished: list[int] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            session = self.client.sessions.open(self.site_id)
            while len(self.finished) < self.total:
                for job in self.client.sessions.acquire(session.id, max_jobs=1, wait_s=5):
                    self.client.sessions.report(session.id, [{"id": job.id, "state": "RUNNING"}])
                    if self.gate is not None:
                        self.gate(job.id)
                    self.client.sessions.report(
                        session.id, [{"id": job.id, "state": "RUN_DONE", "return_code": 0}]
                    )
                    self.finished.append(job.id)
        except BaseException as exc:
            self.error = exc

    def check(self) -> None:
        self.join(30)
        assert not self.is_alive(), "launcher thread did not finish"
        if self.error is not None:
            raise self.error
