"""Signing-key rotation without logging anyone out: the old key is accepted for a grace period, then a
token signed with it gets a 401 that says to refresh, and the SDK refreshes by itself.

Tried as an attacker would: tokens naming an unknown key, a key id that is not a string, a token signed with
a retired key after its retirement, ``alg: none`` — every one a 401 naming the problem, never a 500.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import jwt
import pytest

from beambridge.client import Client
from beambridge.server.app import create_app
from beambridge.server.auth.keys import CURRENT_FILE, key_id, rotate_key
from beambridge.server.settings import ServerSettings
from beambridge.server.users import add_user
from tests.conftest import PASSWORD
from tests.servers import LiveServer


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def server(home: Path) -> Iterator[LiveServer]:
    settings = ServerSettings(home=home, database_url=f"sqlite:///{home / 'db.sqlite'}")
    home.mkdir(parents=True, exist_ok=True)
    app = create_app(settings)
    add_user(app.state.ctx.db, "ada", PASSWORD)
    with LiveServer(app) as live:
        yield live
    app.state.ctx.db.dispose()


def _login(url: str) -> dict[str, str]:
    answer = httpx.post(f"{url}/auth/login", json={"username": "ada", "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def _me(url: str, token: str) -> httpx.Response:
    return httpx.get(f"{url}/auth/me", headers={"Authorization": f"Bearer {token}"})


def test_tokens_name_their_key_and_survive_a_rotation_for_the_grace_period(
    server: LiveServer, home: Path
) -> None:
    before = _login(server.url)["access_token"]
    first = key_id((home / CURRENT_FILE).read_text().strip())
    assert jwt.get_unverified_header(before)["kid"] == first
    new, old, _ = rotate_key(home, grace_s=60)
    assert old == first and new != first
    time.sleep(1.1)  # every process looks at the key files at least once a second
    assert _me(server.url, before).status_code == 200  # still accepted: nobody is logged out
    after = _login(server.url)["access_token"]
    assert jwt.get_unverified_header(after)["kid"] == new
    assert _me(server.url, after).status_code == 200


def test_after_the_grace_period_old_tokens_are_refused_and_the_sdk_refreshes(
    server: LiveServer, home: Path
) -> None:
    client = Client.login(server.url, "ada", PASSWORD)
    old_token = client._transport.access_token
    assert old_token is not None
    rotate_key(home, grace_s=0)
    time.sleep(1.1)  # every process looks at the key files at least once a second
    refused = _me(server.url, old_token)
    assert refused.status_code == 401
    assert "rotated out" in refused.json()["detail"] and "/auth/refresh" in refused.json()["detail"]
    assert client.whoami().name == "ada"  # the SDK refreshed with its refresh token: still logged in
    assert client._transport.access_token != old_token
    client.close()


def test_a_second_server_process_sees_the_new_key_at_once(server: LiveServer, home: Path) -> None:
    other = create_app(ServerSettings(home=home, database_url=f"sqlite:///{home / 'db.sqlite'}"))
    with LiveServer(other) as second:
        rotate_key(home, grace_s=60)
        token = _login(server.url)["access_token"]  # signed by the first process with the new key…
        assert _me(second.url, token).status_code == 200  # …and known to the second without a restart
    other.state.ctx.db.dispose()


def _raw_token(header: dict[str, object], claims: dict[str, object], key: str) -> str:
    """A JWT put together by hand (PyJWT refuses to make some of the odd ones an attacker would send)."""
    import base64
    import hashlib
    import hmac
    import json

    def part(value: bytes) -> str:
        return base64.urlsafe_b64encode(value).rstrip(b"=").decode()

    signing_input = f"{part(json.dumps(header).encode())}.{part(json.dumps(claims).encode())}"
    signature = hmac.new(key.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{part(signature)}"


def test_forged_and_odd_tokens_are_refused_clearly(server: LiveServer, home: Path) -> None:
    current = (home / CURRENT_FILE).read_text().strip()
    exp = int(time.time()) + 600
    claims = {"sub": "1", "iat": time.time(), "exp": exp}
    unknown = jwt.encode(
        claims, "another-key-of-at-least-32-bytes-long!!", "HS256", headers={"kid": "0123456789ab"}
    )
    answer = _me(server.url, unknown)
    assert answer.status_code == 401 and "signing key this service does not have" in answer.json()["detail"]
    wrong_secret = jwt.encode(
        claims, "another-key-of-at-least-32-bytes-long!!", "HS256", headers={"kid": key_id(current)}
    )
    assert _me(server.url, wrong_secret).status_code == 401
    odd_kid = _raw_token({"alg": "HS256", "typ": "JWT", "kid": 7}, claims, current)
    answer = _me(server.url, odd_kid)
    assert answer.status_code == 401 and "invalid access token" in answer.json()["detail"]
    none_alg = jwt.encode(claims, None, "none", headers={"kid": key_id(current)})  # type: ignore[arg-type]
    assert _me(server.url, none_alg).status_code == 401
    retired_copy = jwt.encode(claims, current, "HS256", headers={"kid": key_id(current)})
    assert _me(server.url, retired_copy).status_code == 200
    rotate_key(home, grace_s=0)
    time.sleep(1.1)
    answer = _me(server.url, retired_copy)  # cached as valid a moment ago: its key's retirement still counts
    assert answer.status_code == 401 and "rotated out" in answer.json()["detail"]


def test_a_configured_key_accepts_its_predecessor_until_the_given_time(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    url = f"sqlite:///{home / 'db.sqlite'}"
    old_key, new_key = "old-key-of-at-least-32-bytes-long!!!!", "new-key-of-at-least-32-bytes-long!!!!"
    claims = {"sub": "1", "iat": time.time(), "exp": int(time.time()) + 600}
    signed_by_old = jwt.encode(claims, old_key, "HS256", headers={"kid": key_id(old_key)})
    for until, status in ((datetime.now(UTC) + timedelta(hours=1), 200), (datetime.now(UTC), 401)):
        settings = ServerSettings(
            home=home,
            database_url=url,
            secret_key=new_key,
            previous_secret_key=old_key,
            previous_secret_key_until=until,
        )
        app = create_app(settings)
        if status == 200:
            add_user(app.state.ctx.db, "ada", PASSWORD)
        with LiveServer(app) as live:
            assert _me(live.url, signed_by_old).status_code == status
        app.state.ctx.db.dispose()
    assert not (home / CURRENT_FILE).exists()  # a configured key is never written to disk


def test_rotate_key_command(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from beambridge.cli.main import main

    monkeypatch.setenv("BEAMBRIDGE_HOME", str(home))
    monkeypatch.delenv("BEAMBRIDGE_SECRET_KEY", raising=False)
    home.mkdir(parents=True)
    assert main(["server", "rotate-key", "--grace", "120"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("signing key ") and "are accepted until" in out
    monkeypatch.setenv("BEAMBRIDGE_SECRET_KEY", "configured-key-of-at-least-32-bytes!!")
    assert main(["server", "rotate-key"]) == 2
    assert "BEAMBRIDGE_PREVIOUS_SECRET_KEY" in capsys.readouterr().err
