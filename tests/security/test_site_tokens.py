"""Site tokens expire and rotate: a rotated-out or expired token gets a 401 that says why and what to do.

Tried as an attacker would: an old token may not rotate itself twice (minting a fresh one after its owner
moved on), a site token may not rotate its siblings, and nothing outlives its ``expires_at``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import sqlalchemy as sa
from fastapi import FastAPI

from beambridge.server.db.tables import site_tokens
from tests.conftest import ApiUser


def _as(base_url: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=60)


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _set_expiry(server_app: FastAPI, token_id: int, when: datetime) -> None:
    with server_app.state.ctx.db.write() as conn:
        conn.execute(site_tokens.update().where(site_tokens.c.id == token_id).values(expires_at=when))


def _token(user: ApiUser, site_id: int, **body: Any) -> dict[str, Any]:
    return user.ok(user.http.post(f"/sites/{site_id}/tokens", json={"name": "agent", **body}), 201)  # type: ignore[return-value]


def test_a_new_token_expires_after_the_services_lifetime_or_its_own(
    alice: ApiUser, server_app: FastAPI
) -> None:
    site = alice.site()
    ttl = server_app.state.ctx.settings.site_token_ttl_s
    made = _token(alice, site["id"])
    lifetime = (_when(made["expires_at"]) - _when(made["created_at"])).total_seconds()
    assert abs(lifetime - ttl) < 1
    short = _token(alice, site["id"], expires_in_days=2)
    assert abs((_when(short["expires_at"]) - _when(short["created_at"])).total_seconds() - 2 * 86400) < 1
    for bad in (0, -1, 3651, "soon", [1]):
        answer = alice.http.post(f"/sites/{site['id']}/tokens", json={"name": "x", "expires_in_days": bad})
        assert answer.status_code == 422 and "expires_in_days" in answer.text, (bad, answer.text)
    listed = alice.ok(alice.http.get(f"/sites/{site['id']}/tokens"))
    assert [t["expires_at"] is not None for t in listed] == [True, True]  # type: ignore[union-attr]


def test_an_expired_token_gets_a_401_that_says_so(alice: ApiUser, server_app: FastAPI) -> None:
    site = alice.site()
    made = _token(alice, site["id"])
    with _as(alice.base_url, made["token"]) as agent:
        assert agent.get(f"/sites/{site['id']}").status_code == 200
        _set_expiry(server_app, made["id"], datetime.now(UTC) - timedelta(seconds=1))
        answer = agent.get(f"/sites/{site['id']}")
        assert answer.status_code == 401, answer.text
        detail = answer.json()["detail"]
        assert f"site token {made['id']} expired at" in detail and "beambridge site token" in detail
        assert agent.post(f"/sites/{site['id']}/tokens/rotate").status_code == 401  # too late to rotate


def test_a_site_token_rotates_itself_and_the_old_one_works_only_for_the_grace_period(
    alice: ApiUser, server_app: FastAPI
) -> None:
    site = alice.site()
    made = _token(alice, site["id"])
    grace = server_app.state.ctx.settings.site_token_rotation_grace_s
    with _as(alice.base_url, made["token"]) as old:
        current = old.get(f"/sites/{site['id']}/tokens/current").json()
        assert current["id"] == made["id"] and current["replaced_by"] is None
        rotated = old.post(f"/sites/{site['id']}/tokens/rotate")
        assert rotated.status_code == 201, rotated.text
        new = rotated.json()
        assert new["previous_id"] == made["id"] and new["name"] == "agent" and new["token"] != made["token"]
        until = _when(new["previous_expires_at"])
        assert abs((until - _when(new["created_at"])).total_seconds() - grace) < 1
        assert old.get(f"/sites/{site['id']}").status_code == 200  # in its grace period: work goes on
        again = old.post(f"/sites/{site['id']}/tokens/rotate")  # a copy of the old token mints no other
        assert again.status_code == 409 and f"replaced by token {new['id']}" in again.json()["detail"]
        _set_expiry(server_app, made["id"], datetime.now(UTC) - timedelta(seconds=1))
        refused = old.get(f"/sites/{site['id']}")
        assert refused.status_code == 401
        assert f"replaced by token {new['id']}" in refused.json()["detail"]
        assert "token file" in refused.json()["detail"]
    with _as(alice.base_url, new["token"]) as fresh:
        assert fresh.get(f"/sites/{site['id']}").status_code == 200
        assert fresh.get(f"/sites/{site['id']}/tokens/current").json()["id"] == new["id"]
    records = {t["id"]: t for t in alice.ok(alice.http.get(f"/sites/{site['id']}/tokens"))}  # type: ignore[union-attr]
    assert records[made["id"]]["replaced_by"] == new["id"]
    audit = alice.ok(alice.http.get("/audit?action=site_token.rotate"))["items"]  # type: ignore[index]
    assert [(e["actor"], e["data"]["new_token"]) for e in audit] == [
        (f"site:polaris (token {made['id']})", new["id"])
    ]


def test_rotation_never_extends_a_token_past_its_own_end(alice: ApiUser, server_app: FastAPI) -> None:
    site = alice.site()
    made = _token(alice, site["id"])
    soon = datetime.now(UTC) + timedelta(seconds=30)
    _set_expiry(server_app, made["id"], soon)
    with _as(alice.base_url, made["token"]) as old:
        new = old.post(f"/sites/{site['id']}/tokens/rotate").json()
    assert _when(new["previous_expires_at"]) <= soon + timedelta(milliseconds=1)


def test_a_site_token_cannot_rotate_another_and_a_user_must_name_one(alice: ApiUser) -> None:
    site = alice.site()
    first, second = _token(alice, site["id"]), _token(alice, site["id"])
    other_site = alice.site("other")
    foreign = _token(alice, other_site["id"])
    with _as(alice.base_url, first["token"]) as agent:
        sibling = agent.post(f"/sites/{site['id']}/tokens/rotate", json={"token_id": second["id"]})
        assert sibling.status_code == 403 and "only itself" in sibling.json()["detail"]
        elsewhere = agent.post(f"/sites/{other_site['id']}/tokens/rotate", json={"token_id": foreign["id"]})
        assert elsewhere.status_code == 404
    unnamed = alice.http.post(f"/sites/{site['id']}/tokens/rotate", json={})
    assert unnamed.status_code == 422 and "token_id" in unnamed.json()["detail"]
    wrong_site = alice.http.post(f"/sites/{site['id']}/tokens/rotate", json={"token_id": foreign["id"]})
    assert wrong_site.status_code == 404
    by_owner = alice.http.post(f"/sites/{site['id']}/tokens/rotate", json={"token_id": second["id"]})
    assert by_owner.status_code == 201 and by_owner.json()["previous_id"] == second["id"]
    alice.ok(alice.http.delete(f"/sites/{site['id']}/tokens/{first['id']}"), 204)
    revoked = alice.http.post(f"/sites/{site['id']}/tokens/rotate", json={"token_id": first["id"]})
    assert revoked.status_code == 404
    assert alice.http.get(f"/sites/{site['id']}/tokens/current").status_code == 403  # a user has none


def test_tokens_from_before_expiry_keep_working(alice: ApiUser, server_app: FastAPI) -> None:
    site = alice.site()
    made = _token(alice, site["id"])
    with server_app.state.ctx.db.write() as conn:  # as the migration leaves tokens made before it
        conn.execute(sa.update(site_tokens).where(site_tokens.c.id == made["id"]).values(expires_at=None))
    with _as(alice.base_url, made["token"]) as agent:
        assert agent.get(f"/sites/{site['id']}").status_code == 200
        assert agent.get(f"/sites/{site['id']}/tokens/current").json()["expires_at"] is None


def test_the_sdk_reads_a_refused_site_token_again_from_the_token_file(
    alice: ApiUser, server_app: FastAPI, tmp_path: Any
) -> None:
    from beambridge.client import Client
    from beambridge.client.errors import AuthError

    site = alice.site()
    made = _token(alice, site["id"])
    path = tmp_path / "token"
    path.write_text(made["token"] + "\n")
    with (
        Client(alice.base_url, site_token=made["token"], site_token_file=path, retries=1) as launcher,
        Client(alice.base_url, site_token=made["token"], retries=1) as without_file,
    ):
        assert launcher.sites.get(site["id"]).id == site["id"]
        rotated = alice.ok(
            alice.http.post(f"/sites/{site['id']}/tokens/rotate", json={"token_id": made["id"]}), 201
        )
        path.write_text(rotated["token"] + "\n")  # what the agent does
        _set_expiry(server_app, made["id"], datetime.now(UTC) - timedelta(seconds=1))
        assert launcher.sites.get(site["id"]).id == site["id"]  # refused, read again, retried: no error
        assert launcher._transport.access_token == rotated["token"]
        try:
            without_file.sites.get(site["id"])
        except AuthError as exc:
            assert f"replaced by token {rotated['id']}" in exc.detail
        else:
            raise AssertionError("an expired site token was accepted")
        path.write_text("")  # an emptied file changes nothing: the 401 stands
        _set_expiry(server_app, rotated["id"], datetime.now(UTC) - timedelta(seconds=1))
        try:
            launcher.sites.get(site["id"])
        except AuthError as exc:
            assert "expired" in exc.detail
        else:
            raise AssertionError("an expired site token was accepted")
