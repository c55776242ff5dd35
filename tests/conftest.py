"""Fixtures shared by every test: real databases (SQLite and PostgreSQL) and real HTTP servers.

The server suite runs once per database: fixtures that depend on ``database_url`` are parametrised over
``sqlite`` and ``postgresql``. PostgreSQL is the machine's (127.0.0.1:5432, or ``BEAMBRIDGE_TEST_PG_URL``),
else a throwaway cluster; with ``CI=true`` its absence fails the run instead of skipping.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from beambridge.server.app import create_app
from beambridge.server.auth.passwords import hash_password
from beambridge.server.settings import ServerSettings
from beambridge.server.users import add_user
from tests.servers import IN_CI, LiveServer, postgres_admin_url, postgres_database

PASSWORD = "correct horse battery"

# A `beambridge xpcs corr` that a test starts runs in its own process unless the test asks for the warm
# worker (tests/xpcs/test_cli_worker.py does, in a runtime directory of its own): no test leaves one behind.
os.environ.setdefault("BEAMBRIDGE_XPCS_WORKER", "0")


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str | None]:
    with postgres_admin_url() as url:
        yield url


@pytest.fixture(scope="session", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, pg_admin_url: str | None
) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'beambridge.db'}"
        return
    if pg_admin_url is None:
        assert not IN_CI, "PostgreSQL is required in CI"
        pytest.skip("PostgreSQL is not available here (in CI this is an error)")
    with postgres_database(pg_admin_url) as url:
        yield url


@pytest.fixture
def own_database_url(
    database_url: str, tmp_path_factory: pytest.TempPathFactory, pg_admin_url: str | None
) -> Iterator[str]:
    """A new, empty database of the same kind as ``database_url``, for a server whose shared state (failed
    logins locking 127.0.0.1 out, quota counts) must not reach the other tests' server."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path_factory.mktemp('own-sqlite') / 'beambridge.db'}"
        return
    assert pg_admin_url is not None
    with postgres_database(pg_admin_url) as url:
        yield url


def make_settings(home: Path, database_url: str, **overrides: object) -> ServerSettings:
    return ServerSettings(
        home=home, database_url=database_url, secret_key="test-secret-key-of-at-least-32-bytes!", **overrides
    )


@pytest.fixture(scope="session")
def server_app(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    # every test logs in from 127.0.0.1: the per-address back-off (tested on servers of its own) must not
    # lock the shared server's tests out after the fuzzer's and the other tests' wrong passwords
    settings = make_settings(
        tmp_path_factory.mktemp("home"), database_url, login_free_failures_per_address=10_000
    )
    app = create_app(settings)
    yield app
    app.state.ctx.db.dispose()


@pytest.fixture(scope="session")
def live_server(server_app: FastAPI) -> Iterator[LiveServer]:
    with LiveServer(server_app) as server:
        yield server


class ApiUser:
    """A logged-in user of the live server, with shortcuts for making the objects tests need."""

    def __init__(self, base_url: str, name: str, token: str) -> None:
        self.name = name
        self.base_url = base_url
        self.token = token
        self.http = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=60)

    def ok(self, response: httpx.Response, status: int = 200) -> object:
        assert response.status_code == status, f"{response.status_code}: {response.text}"
        return response.json() if response.content else None

    def site(self, name: str = "polaris", locations: dict[str, str] | None = None) -> dict:
        """A site, with transfer locations registered as its agent would (``aps_dtn``, ``dtn``, ``a``)."""
        site: dict = self.ok(self.http.post("/sites", json={"name": name}), 201)  # type: ignore[assignment]
        wanted = {"aps_dtn": "globus", "dtn": "rsync", "a": "local"} if locations is None else locations
        body = {"locations": wanted}
        return self.ok(self.http.patch(f"/sites/{site['id']}", json=body))  # type: ignore[return-value]

    def app(self, site_id: int, name: str = "echo", **fields: object) -> dict:
        body = {"site_id": site_id, "name": name, **fields}
        return self.ok(self.http.post("/apps", json=body), 201)  # type: ignore[return-value]

    def jobs(self, specs: list[dict]) -> list[dict]:
        return self.ok(self.http.post("/jobs", json=specs), 201)  # type: ignore[return-value]

    def session(self, site_id: int) -> dict:
        return self.ok(self.http.post("/sessions", json={"site_id": site_id}), 201)  # type: ignore[return-value]

    def close(self) -> None:
        self.http.close()


@pytest.fixture(scope="session")
def password_hash() -> str:
    return hash_password(PASSWORD)  # Argon2 is slow on purpose: hash once per test session


@pytest.fixture
def make_user(
    live_server: LiveServer, server_app: FastAPI, password_hash: str
) -> Iterator[Callable[[], ApiUser]]:
    """Users with a password (PASSWORD) and an access token minted directly (login has its own tests)."""
    made: list[ApiUser] = []

    def factory() -> ApiUser:
        name = f"u{uuid.uuid4().hex[:10]}"
        ctx = server_app.state.ctx
        user_id = add_user(ctx.db, name, PASSWORD, password_hash=password_hash)
        user = ApiUser(live_server.url, name, ctx.tokens.issue(user_id))
        made.append(user)
        return user

    yield factory
    for user in made:
        user.close()


@pytest.fixture
def alice(make_user: Callable[[], ApiUser]) -> ApiUser:
    return make_user()


@pytest.fixture
def bob(make_user: Callable[[], ApiUser]) -> ApiUser:
    return make_user()
