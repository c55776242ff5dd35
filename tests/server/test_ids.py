"""Ids and event cursors never repeat, even after the newest objects are deleted (both databases).

A reused id would hand a deleted job's id to someone else's new job, and an ``events --follow`` or
``as_completed`` cursor (the last event id seen) would skip the new events that reuse old numbers.
"""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import FastAPI

from beambridge.server.db.tables import metadata
from tests.conftest import ApiUser


def test_deleting_the_newest_job_never_frees_its_id(alice: ApiUser, bob: ApiUser) -> None:
    site = alice.site()
    app = alice.app(site["id"])
    first, newest = alice.jobs([{"app_id": app["id"], "workdir": "w"}] * 2)
    latest_event = alice.ok(alice.http.get("/events/latest"))["id"]  # type: ignore[index]
    alice.ok(alice.http.post("/jobs/delete", json={"ids": [newest["id"]]}))

    [again] = alice.jobs([{"app_id": app["id"], "workdir": "w"}])
    assert again["id"] > newest["id"]
    bob_site = bob.site()
    bob_app = bob.app(bob_site["id"])
    [bobs] = bob.jobs([{"app_id": bob_app["id"], "workdir": "w"}])
    assert bobs["id"] > again["id"]
    # a follower holding the old cursor sees the new job's events
    page = alice.ok(alice.http.get(f"/events?after={latest_event}"))["items"]  # type: ignore[index]
    assert [e["job_id"] for e in page][:1] == [again["id"]]
    assert first["id"] < newest["id"]


def test_deleted_sites_and_apps_leave_their_ids_behind(alice: ApiUser) -> None:
    site = alice.site("gone")
    app = alice.app(site["id"], "gone")
    alice.ok(alice.http.delete(f"/sites/{site['id']}"), 204)
    again = alice.site("gone")
    assert again["id"] > site["id"]
    assert alice.app(again["id"], "gone")["id"] > app["id"]


def test_every_sqlite_table_with_an_id_uses_autoincrement(server_app: FastAPI) -> None:
    db = server_app.state.ctx.db
    if not db.is_sqlite:
        return  # PostgreSQL: identity sequences never hand out a number twice
    with db.read() as conn:
        ddl = dict(conn.execute(sa.text("SELECT name, sql FROM sqlite_master WHERE type = 'table'")).all())
    with_ids = [table.name for table in metadata.sorted_tables if "id" in table.c and table.c.id.primary_key]
    assert with_ids
    for name in with_ids:
        assert "AUTOINCREMENT" in ddl[name].upper(), f"{name}: {ddl[name]}"
