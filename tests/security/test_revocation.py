"""Revocation takes effect at once: logout, disabling a user and deleting one end their tokens.

Found from outside: a deleted user's access token still read; logout left the access token valid until it
expired.
"""

from __future__ import annotations

import time

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from beambridge.server.db.tables import users
from beambridge.server.users import disable_user, enable_user
from tests.conftest import PASSWORD, ApiUser


def _login(user: ApiUser) -> dict:
    response = httpx.post(f"{user.base_url}/auth/login", json={"username": user.name, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return response.json()


def _me(user: ApiUser, token: str) -> httpx.Response:
    return httpx.get(f"{user.base_url}/auth/me", headers={"Authorization": f"Bearer {token}"})


def _answer_soon(user: ApiUser, token: str, status: int, within_s: float) -> httpx.Response:
    """The answer once it has ``status`` (a revoked token, or a re-enabled user, reaches every server
    process within ~1 s), else the last answer after ``within_s``."""
    deadline = time.monotonic() + within_s
    while True:
        response = _me(user, token)
        if response.status_code == status or time.monotonic() > deadline:
            return response
        time.sleep(0.1)


def _refused_soon(user: ApiUser, token: str, within_s: float = 3.0) -> httpx.Response:
    return _answer_soon(user, token, 401, within_s)


def _accepted_soon(user: ApiUser, token: str, within_s: float = 3.0) -> httpx.Response:
    return _answer_soon(user, token, 200, within_s)


def test_logout_ends_the_access_token_at_once(alice: ApiUser) -> None:
    pair = _login(alice)
    assert _me(alice, pair["access_token"]).status_code == 200
    logout = httpx.post(f"{alice.base_url}/auth/logout", json={"refresh_token": pair["refresh_token"]})
    assert logout.status_code == 204
    response = _me(alice, pair["access_token"])  # the same process: no wait at all
    assert response.status_code == 401 and "revoked" in response.json()["detail"], response.text
    again = _login(alice)  # logging in again works at once
    assert _me(alice, again["access_token"]).status_code == 200


def test_a_disabled_user_is_out_at_once_tokens_and_login(alice: ApiUser, server_app: FastAPI) -> None:
    db = server_app.state.ctx.db
    pair = _login(alice)
    site = alice.site()
    created = alice.http.post(f"/sites/{site['id']}/tokens", json={"name": "agent"})
    assert created.status_code == 201, created.text
    site_token = created.json()["token"]
    disable_user(db, alice.name)
    refused = _refused_soon(alice, pair["access_token"])
    assert refused.status_code == 401 and "disabled" in refused.json()["detail"], refused.text
    assert _refused_soon(alice, alice.token).status_code == 401
    by_site = httpx.get(
        f"{alice.base_url}/sites/{site['id']}", headers={"Authorization": f"Bearer {site_token}"}
    )
    assert by_site.status_code == 401
    login = httpx.post(f"{alice.base_url}/auth/login", json={"username": alice.name, "password": PASSWORD})
    assert login.status_code == 401
    refresh = httpx.post(f"{alice.base_url}/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert refresh.status_code == 401
    enable_user(db, alice.name)
    assert _accepted_soon(alice, _login(alice)["access_token"]).status_code == 200
    assert _me(alice, pair["access_token"]).status_code == 401  # tokens from before stay ended


def test_a_deleted_users_token_no_longer_reads(make_user, server_app: FastAPI) -> None:  # type: ignore[no-untyped-def]
    user = make_user()
    assert _me(user, user.token).status_code == 200
    with server_app.state.ctx.db.write() as conn:
        conn.execute(sa.delete(users).where(users.c.name == user.name))
    assert _refused_soon(user, user.token).status_code == 401


def test_replaying_a_spent_refresh_token_revokes_the_family(
    alice: ApiUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    from beambridge.server.auth import refresh_tokens

    monkeypatch.setattr(refresh_tokens, "REPLAY_GRACE_S", 0.0)  # the server runs in this process
    stolen = _login(alice)
    rotated = httpx.post(f"{alice.base_url}/auth/refresh", json={"refresh_token": stolen["refresh_token"]})
    assert rotated.status_code == 200
    fresh = rotated.json()
    assert _me(alice, fresh["access_token"]).status_code == 200
    # the thief (or the user) uses the spent token again: both holders lose everything they got from it
    replay = httpx.post(f"{alice.base_url}/auth/refresh", json={"refresh_token": stolen["refresh_token"]})
    assert replay.status_code == 401 and "revoked" in replay.json()["detail"]
    assert _me(alice, fresh["access_token"]).status_code == 401
    after = httpx.post(f"{alice.base_url}/auth/refresh", json={"refresh_token": fresh["refresh_token"]})
    assert after.status_code == 401
    assert _accepted_soon(alice, _login(alice)["access_token"]).status_code == 200  # logging in again works
