"""Every error class from a real answer, and retries with backoff."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from beambridge.client import (
    APIError,
    AuthError,
    BeambridgeError,
    Client,
    Conflict,
    ConnectionFailed,
    NotFound,
    ServerError,
    ValidationError,
)
from beambridge.client import transport as transport_module
from beambridge.server.app import create_app
from tests.client.conftest import RecordingTransport, Workspace
from tests.conftest import PASSWORD, ApiUser, make_settings
from tests.servers import LiveServer, free_port


def test_not_found_conflict_validation_auth(client: Client, ws: Workspace, live_server: LiveServer) -> None:
    with pytest.raises(NotFound) as missing:
        client.jobs.get(2**40)
    assert missing.value.status_code == 404 and str(missing.value) == f"job {2**40} not found"
    assert missing.value.body == {"detail": f"job {2**40} not found"}

    with pytest.raises(Conflict) as taken:
        client.sites.create("polaris")
    assert taken.value.status_code == 409 and "already have a site named 'polaris'" in taken.value.detail

    with pytest.raises(ValidationError) as invalid:
        client.jobs.create(ws.app.id, "/absolute/path")
    assert invalid.value.status_code == 422 and "relative POSIX path" in str(invalid.value)
    assert invalid.value.body["errors"]

    anonymous = Client(live_server.url, access_token="not-a-token")
    with anonymous, pytest.raises(AuthError) as denied:
        anonymous.sites.get(1)
    assert denied.value.status_code == 401 and "invalid access token" in str(denied.value)

    with pytest.raises(APIError) as other:
        client._transport.request("PUT", "/jobs")
    assert type(other.value) is APIError and other.value.status_code == 405
    for cls in (NotFound, Conflict, ValidationError, AuthError, ServerError):
        assert issubclass(cls, APIError) and issubclass(cls, BeambridgeError)


def test_body_over_the_limit_is_a_validation_error(database_url: str, tmp_path: Path, alice: ApiUser) -> None:
    app = create_app(make_settings(tmp_path, database_url, max_body_bytes=2000))
    with LiveServer(app) as server, Client.login(server.url, alice.name, PASSWORD) as client:
        site = client.sites.create("small")
        with pytest.raises(ValidationError) as info:
            client.sites.update(site.id, description="x" * 1900, status={"pad": "y" * 500})
    app.state.ctx.db.dispose()
    assert info.value.status_code == 413 and "over the limit of 2000 bytes" in str(info.value)


class _Flaky(BaseHTTPRequestHandler):
    """Answers 503 to the first ``failures`` requests, then 200 (GET) / 201 (POST)."""

    failures = 0
    seen: ClassVar[list[str]] = []

    def _answer(self) -> None:
        type(self).seen.append(self.command)
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        if len(type(self).seen) <= type(self).failures:
            body, status = b'{"detail": "upstream unavailable"}', 503
        else:
            body, status = b'{"status": "ok"}', 200
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def flaky() -> Iterator[tuple[str, type[_Flaky]]]:
    handler = type("Flaky", (_Flaky,), {"seen": [], "failures": 0})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads, server.block_on_close = True, False
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


def test_503_is_retried_for_gets_but_not_for_creates(flaky: tuple[str, type[_Flaky]]) -> None:
    url, handler = flaky
    handler.failures = 2
    with Client(url, access_token="t", retries=5, backoff_s=0.01) as client:
        assert client.health() == {"status": "ok"}
        assert handler.seen == ["GET", "GET", "GET"]
        handler.seen.clear()
        with pytest.raises(ServerError) as info:
            client._transport.request("POST", "/jobs", json=[])
        assert handler.seen == ["POST"]
    assert info.value.status_code == 503 and str(info.value) == "upstream unavailable"


def test_gives_up_with_server_error_after_the_last_try(flaky: tuple[str, type[_Flaky]]) -> None:
    url, handler = flaky
    handler.failures = 100
    with Client(url, access_token="t", retries=3, backoff_s=0.01) as client, pytest.raises(ServerError):
        client.health()
    assert handler.seen == ["GET", "GET", "GET"]


def test_connection_refused_is_retried_with_backoff_then_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    delays: list[float] = []
    real_sleep = time.sleep
    monkeypatch.setattr(transport_module.time, "sleep", lambda s: (delays.append(s), real_sleep(s)))
    recorder = RecordingTransport()
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    client = Client(url, access_token="t", retries=4, backoff_s=0.05, transport=recorder)
    with client, pytest.raises(ConnectionFailed, match=r"Connection refused \(gave up after 4 tries\)"):
        client.sites.create("x")  # never sent, so safe to retry even though it is a POST
    assert len(recorder.requests) == 4
    assert len(delays) == 3 and all(0 <= d <= 0.05 * 2**i for i, d in enumerate(delays))
