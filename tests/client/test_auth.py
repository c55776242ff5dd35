"""Logging in, saved tokens, automatic refresh, and site tokens."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import jwt
import pytest
from fastapi import FastAPI

from beambridge.client import AuthError, Client
from beambridge.client.credentials import SavedCredentials
from beambridge.server.app import create_app
from tests.client.conftest import RecordingTransport
from tests.conftest import PASSWORD, ApiUser, make_settings
from tests.servers import LiveServer


def test_login_and_whoami(live_server: LiveServer, alice: ApiUser) -> None:
    with Client.login(live_server.url, alice.name, PASSWORD) as client:
        me = client.whoami()
        assert me.name == alice.name
        assert client.access_token and client.refresh_token and client.refresh_token.startswith("bbr_")
        assert client.health()["status"] == "ok"


def test_login_with_a_wrong_password_is_an_auth_error(live_server: LiveServer, alice: ApiUser) -> None:
    with pytest.raises(AuthError) as info:
        Client.login(live_server.url, alice.name, "not the password")
    assert info.value.status_code == 401
    assert str(info.value) == "wrong username or password"


def test_saved_tokens_are_private_and_reload(
    live_server: LiveServer, alice: ApiUser, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BEAMBRIDGE_HOME", str(tmp_path / "home"))
    with Client.login(live_server.url, alice.name, PASSWORD) as client:
        path = client.save()
    assert path == tmp_path / "home" / "client.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["username"] == alice.name
    with Client.from_saved() as again:
        assert again.whoami().name == alice.name
        assert again.token_file == path


def test_no_saved_tokens_says_log_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BEAMBRIDGE_HOME", str(tmp_path))
    with pytest.raises(Exception, match=r"not logged in.*beambridge login"):
        Client.from_saved()


def _wait_until_expired(token: str) -> None:
    """Sleep past the token's expiry, into the first part of a second, so a token issued next
    (whole-second expiry, 1 s lifetime) stays valid long enough for one retried request."""
    expires = jwt.decode(token, options={"verify_signature": False})["exp"]
    while time.time() < expires or time.time() % 1 > 0.3:
        time.sleep(0.02)


@pytest.fixture
def short_lived_server(database_url: str, tmp_path: Path) -> tuple[LiveServer, FastAPI]:
    app = create_app(make_settings(tmp_path, database_url, access_token_ttl_s=1))
    with LiveServer(app) as server:
        yield server, app  # type: ignore[misc]
    app.state.ctx.db.dispose()


def test_expired_access_token_is_refreshed_once_and_saved(
    short_lived_server: tuple[LiveServer, FastAPI], alice: ApiUser, tmp_path: Path
) -> None:
    server, _app = short_lived_server
    token_file = tmp_path / "client.json"
    with Client.login(server.url, alice.name, PASSWORD) as first:
        first.save(token_file)
    recorder = RecordingTransport()
    with Client.from_saved(token_file, transport=recorder) as client:
        old = SavedCredentials.load(token_file)
        _wait_until_expired(old.access_token)
        assert client.whoami().name == alice.name
        assert [r.url.path for r in recorder.requests] == ["/auth/me", "/auth/refresh", "/auth/me"]
        new = SavedCredentials.load(token_file)
        assert new.refresh_token != old.refresh_token and new.access_token != old.access_token
        assert client.refresh_token == new.refresh_token
    # the old refresh token was used up: a client still holding it cannot renew itself
    stale = Client(server.url, access_token=old.access_token, refresh_token=old.refresh_token)
    with (
        stale,
        pytest.raises(
            AuthError,
            match=r"cannot renew your login to http\S+: refresh token has been revoked.*beambridge login http",
        ),
    ):
        stale.whoami()


def test_site_token_client_sees_only_its_site(client: Client, live_server: LiveServer) -> None:
    mine = client.sites.create("theta")
    other = client.sites.create("aurora")
    created = client.sites.create_token(mine.id, "agent")
    assert created.token.startswith("bbs_")
    with Client(live_server.url, site_token=created.token) as agent:
        assert [s.id for s in agent.sites.all()] == [mine.id]
        assert agent.sites.heartbeat(mine.id).last_heartbeat is not None
        with pytest.raises(AuthError) as info:
            agent.sites.create("sneaky")
        assert info.value.status_code == 403
        with pytest.raises(Exception, match=f"site {other.id} not found"):
            agent.sites.get(other.id)
    assert [t.name for t in client.sites.tokens(mine.id)] == ["agent"]
    client.sites.revoke_token(mine.id, created.id)
    revoked = Client(live_server.url, site_token=created.token)
    with revoked, pytest.raises(AuthError, match="site token has been revoked"):
        list(revoked.sites.all())


def test_site_token_and_user_tokens_are_exclusive(live_server: LiveServer) -> None:
    with pytest.raises(ValueError, match="either a site token"):
        Client(live_server.url, site_token="bbs_x", access_token="y")
