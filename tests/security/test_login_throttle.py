"""Login cannot be flooded: failed logins back off per user and per address, and password hashing runs on
its own few threads, never on the threads that serve everyone else.

Found from outside: 32 clients posting logins for 10 s pushed another user's ``GET /sites`` from ~10 ms to
6–10 s; 40 wrong passwords in a row, then the right one, was accepted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI

from beambridge.server.app import create_app
from beambridge.server.users import add_user
from tests.conftest import PASSWORD, make_settings
from tests.servers import LiveServer


@pytest.fixture
def own_server(
    own_database_url: str, tmp_path_factory: pytest.TempPathFactory, password_hash: str
) -> Iterator[tuple[LiveServer, FastAPI]]:
    """A server with a database of its own (failed logins are counted in the database, and these tests lock
    their address out)."""
    app = create_app(
        make_settings(
            tmp_path_factory.mktemp("throttle"),
            own_database_url,
            login_free_failures_per_user=5,
            login_free_failures_per_address=12,
            login_first_lockout_s=5,
            password_check_threads=1,
            password_check_queue=4,
        )
    )
    with LiveServer(app) as server:
        yield server, app
    app.state.ctx.db.dispose()


def _user(app: FastAPI, password_hash: str) -> str:
    import uuid

    name = f"t{uuid.uuid4().hex[:10]}"
    add_user(app.state.ctx.db, name, PASSWORD, password_hash=password_hash)
    return name


def _login(url: str, name: str, password: str) -> httpx.Response:
    return httpx.post(f"{url}/auth/login", json={"username": name, "password": password}, timeout=60)


def test_failed_logins_back_off_per_user(own_server: tuple[LiveServer, FastAPI], password_hash: str) -> None:
    server, app = own_server
    name = _user(app, password_hash)
    answers = [_login(server.url, name, f"wrong {i}").status_code for i in range(8)]
    assert answers[:5] == [401] * 5 and set(answers[5:]) == {429}, answers
    refused = _login(server.url, name, PASSWORD)  # the right password, while locked out
    assert refused.status_code == 429, refused.text
    assert int(refused.headers["Retry-After"]) >= 1
    assert "too many failed logins" in refused.json()["detail"]
    # the lock-out ends: then the right password works, and wipes the slate
    time.sleep(int(refused.headers["Retry-After"]) + 0.2)
    assert _login(server.url, name, PASSWORD).status_code == 200
    assert _login(server.url, name, "wrong again").status_code == 401


def test_failed_logins_back_off_per_address(
    own_server: tuple[LiveServer, FastAPI], password_hash: str
) -> None:
    server, app = own_server
    name = _user(app, password_hash)
    # guessing across many user names: each name stays under its own limit, the address does not
    answers = [_login(server.url, f"nobody{i}", "guess").status_code for i in range(14)]
    assert answers[:12] == [401] * 12 and set(answers[12:]) == {429}, answers
    assert _login(server.url, name, PASSWORD).status_code == 429


def test_a_login_flood_never_holds_the_threads_others_need(
    own_server: tuple[LiveServer, FastAPI], password_hash: str
) -> None:
    server, app = own_server
    names = [_user(app, password_hash) for _ in range(2)]
    token = httpx.post(
        f"{server.url}/auth/login", json={"username": names[0], "password": PASSWORD}, timeout=60
    ).json()["access_token"]
    stop = threading.Event()
    statuses: list[int] = []

    def flood(index: int) -> None:
        with httpx.Client(timeout=60) as http:
            attempt = 0
            while not stop.is_set():  # a new user name every time: no per-user lock-out helps here
                attempt += 1
                body = {"username": f"flood{index}-{attempt}", "password": "x" * 12}
                statuses.append(http.post(f"{server.url}/auth/login", json=body).status_code)

    threads = [threading.Thread(target=flood, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        with httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        ) as me:
            for _ in range(10):
                assert me.get("/sites").status_code == 200
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    checks = app.state.ctx.password_checks
    assert checks.peak_running <= 1, checks.peak_running  # the hashing threads, never more
    assert 429 in statuses or 503 in statuses, sorted(set(statuses))  # the excess is turned away at once
