"""Authentication: login, refresh, logout, expiry, forgery, site tokens."""

from __future__ import annotations

import time

import httpx
import jwt
from fastapi import FastAPI

from tests.conftest import PASSWORD, ApiUser


def login(base_url: str, username: str, password: str) -> httpx.Response:
    return httpx.post(f"{base_url}/auth/login", json={"username": username, "password": password})


def test_login_refresh_logout(alice: ApiUser) -> None:
    response = login(alice.base_url, alice.name, PASSWORD)
    assert response.status_code == 200
    pair = response.json()
    assert pair["token_type"] == "bearer" and pair["expires_in"] > 0
    me = httpx.get(f"{alice.base_url}/auth/me", headers={"Authorization": f"Bearer {pair['access_token']}"})
    assert me.json()["name"] == alice.name
    refreshed = httpx.post(f"{alice.base_url}/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert refreshed.status_code == 200
    # a refresh token works once: rotation
    again = httpx.post(f"{alice.base_url}/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert again.status_code == 401 and "revoked" in again.json()["detail"]
    new_refresh = refreshed.json()["refresh_token"]
    assert httpx.post(f"{alice.base_url}/auth/logout", json={"refresh_token": new_refresh}).status_code == 204
    after = httpx.post(f"{alice.base_url}/auth/refresh", json={"refresh_token": new_refresh})
    assert after.status_code == 401


def test_wrong_password_and_unknown_user(alice: ApiUser) -> None:
    for name, password in ((alice.name, "wrong password"), ("nobody-at-all", PASSWORD)):
        response = login(alice.base_url, name, password)
        assert response.status_code == 401
        assert response.json()["detail"] == "wrong username or password"


def test_expired_and_forged_tokens(alice: ApiUser, server_app: FastAPI) -> None:
    user_id = int(jwt.decode(alice.token, options={"verify_signature": False})["sub"])
    now = int(time.time())
    expired = jwt.encode(
        {"sub": str(user_id), "exp": now - 10}, "test-secret-key-of-at-least-32-bytes!", "HS256"
    )
    response = httpx.get(f"{alice.base_url}/jobs", headers={"Authorization": f"Bearer {expired}"})
    assert response.status_code == 401 and "expired" in response.json()["detail"]
    forged = jwt.encode(
        {"sub": str(user_id), "exp": now + 100}, "some-other-secret-key-32-bytes-long!", "HS256"
    )
    response = httpx.get(f"{alice.base_url}/jobs", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401 and "invalid access token" in response.json()["detail"]
    unsigned = jwt.encode({"sub": str(user_id), "exp": now + 100}, None, "none")
    response = httpx.get(f"{alice.base_url}/jobs", headers={"Authorization": f"Bearer {unsigned}"})
    assert response.status_code == 401


def test_site_token_acts_on_its_site_and_can_be_revoked(alice: ApiUser) -> None:
    site = alice.site()
    app = alice.app(site["id"])
    created = alice.ok(alice.http.post(f"/sites/{site['id']}/tokens", json={"name": "agent"}), 201)
    assert created["token"].startswith("bbs_")
    listed = alice.ok(alice.http.get(f"/sites/{site['id']}/tokens"))
    assert [t["id"] for t in listed] == [created["id"]] and "token" not in listed[0]
    agent = httpx.Client(base_url=alice.base_url, headers={"Authorization": f"Bearer {created['token']}"})
    jobs = agent.post("/jobs", json=[{"app_id": app["id"], "workdir": "w"}])
    assert jobs.status_code == 201
    assert agent.post("/sites", json={"name": "new"}).status_code == 403  # a site token cannot make sites
    assert agent.post(f"/sites/{site['id']}/tokens", json={"name": "x"}).status_code == 403
    alice.ok(alice.http.delete(f"/sites/{site['id']}/tokens/{created['id']}"), 204)
    response = agent.get("/jobs")
    assert response.status_code == 401 and "revoked" in response.json()["detail"]
    agent.close()
