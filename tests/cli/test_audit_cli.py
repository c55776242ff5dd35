"""``beambridge events`` names each event's actor; ``beambridge audit`` shows the account's audit log."""

from __future__ import annotations

import json

from tests.cli.conftest import RunCli
from tests.conftest import PASSWORD, ApiUser
from tests.servers import LiveServer


def test_events_and_audit_are_shown_by_the_cli(cli: RunCli, live_server: LiveServer, alice: ApiUser) -> None:
    site = alice.site()
    app = alice.app(site["id"])
    alice.jobs([{"app_id": app["id"], "workdir": "w"}])
    alice.ok(alice.http.post(f"/sites/{site['id']}/tokens", json={"name": "agent"}), 201)
    assert (
        cli("login", live_server.url, "--user", alice.name, "--password-stdin", stdin=PASSWORD + "\n").code
        == 0
    )
    events = cli("events")
    assert events.code == 0, events.err
    assert f"by user:{alice.name}" in events.out and "by system" in events.out  # a default hook
    mine = cli("events", "--actor", "user:", "--json")
    assert mine.code == 0 and {e["actor"] for e in json.loads(mine.out)} == {f"user:{alice.name}"}
    audit = cli("audit", "--action", "site_token")
    assert audit.code == 0, audit.err
    assert "site_token.create" in audit.out and "site.create" not in audit.out
    as_json = cli("audit", "--json")
    assert [e["action"] for e in json.loads(as_json.out)] == [
        "user.add",
        "site.create",
        "site_token.create",
        "user.login",
    ]
