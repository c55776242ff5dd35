"""A launcher says which apps (and versions) it can run; acquire hands it only those.

Found by a new user: after an app was added to a site's ``apps/`` folder, the pilot already running took
every job of it and failed them all ("app Sleep is not in this site's apps folder"), children too. A
launcher must never be handed a job it cannot run; a launcher that says nothing (an older one) is served
as before.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from tests.conftest import ApiUser
from tests.server.helpers import acquire


def _ids(jobs: list[dict[str, Any]]) -> list[int]:
    return [job["id"] for job in jobs]


def _site_with_two_apps(user: ApiUser, **versions: str) -> tuple[dict, list[int], list[int]]:
    site = user.site()
    made = {name: user.app(site["id"], name=name, **({"version": v} if (v := versions.get(name)) else {}))
            for name in ("Known", "Added")}  # fmt: skip
    known = _ids(user.jobs([{"app_id": made["Known"]["id"], "workdir": "k"}] * 2))
    added = _ids(user.jobs([{"app_id": made["Added"]["id"], "workdir": "a"}] * 3))
    return site, known, added


def test_only_the_advertised_apps_are_handed_out(alice: ApiUser) -> None:
    site, known, added = _site_with_two_apps(alice)
    session = alice.session(site["id"])["id"]
    assert _ids(acquire(alice, session, max_jobs=100, apps={"Known": None})) == known
    assert acquire(alice, session, max_jobs=100, apps={"Known": None}) == []
    assert acquire(alice, session, max_jobs=100, apps={}) == []  # a launcher that can run nothing
    assert acquire(alice, session, max_jobs=100, apps={"NotOnThisSite": None}) == []
    # what it could not run stayed untouched for a launcher that can
    assert _ids(acquire(alice, session, max_jobs=100, apps={"Added": None, "Other": None})) == added


def test_a_launcher_that_advertises_nothing_is_served_as_before(alice: ApiUser) -> None:
    """Older launchers send no ``apps``: they get every runnable job, as they always did."""
    site, known, added = _site_with_two_apps(alice)
    session = alice.session(site["id"])["id"]
    answer = alice.http.post(f"/sessions/{session}/acquire", json={"max_jobs": 100})
    assert answer.status_code == 200, answer.text
    assert sorted(_ids(answer.json())) == sorted(known + added)


def test_versions_must_match_when_both_sides_know_one(alice: ApiUser) -> None:
    site, known, added = _site_with_two_apps(alice, Known="3f9a0c1d2e4b5a69", Added="")
    session = alice.session(site["id"])["id"]
    # an older copy of the app's file: not handed out (the job may use parameters that copy lacks)
    assert acquire(alice, session, max_jobs=100, apps={"Known": "0000000000000000"}) == []
    assert _ids(acquire(alice, session, max_jobs=100, apps={"Known": "3f9a0c1d2e4b5a69"})) == known
    # the app was registered without a version: any copy of it will do
    assert _ids(acquire(alice, session, max_jobs=100, apps={"Added": "abc"})) == added


def test_a_launcher_that_does_not_know_the_version_gets_the_app(alice: ApiUser) -> None:
    site, known, _ = _site_with_two_apps(alice, Known="v1")
    session = alice.session(site["id"])["id"]
    assert _ids(acquire(alice, session, max_jobs=100, apps={"Known": None})) == known


def test_the_registered_version_is_shown_and_can_change(alice: ApiUser) -> None:
    site = alice.site()
    app = alice.app(site["id"], name="Versioned", version="v1")
    assert app["version"] == "v1"
    [job] = alice.jobs([{"app_id": app["id"], "workdir": "w"}])
    changed = alice.ok(alice.http.patch(f"/apps/{app['id']}", json={"version": "v2"}))
    assert changed["version"] == "v2"  # type: ignore[index]
    session = alice.session(site["id"])["id"]
    assert acquire(alice, session, max_jobs=5, apps={"Versioned": "v1"}) == []
    assert _ids(acquire(alice, session, max_jobs=5, apps={"Versioned": "v2"})) == [job["id"]]


def test_a_long_poll_is_not_answered_with_an_app_it_did_not_advertise(alice: ApiUser) -> None:
    """Woken by a job it cannot run, a waiting acquire goes on waiting, and takes the next one it can."""
    site = alice.site()
    known = alice.app(site["id"], name="Known")
    added = alice.app(site["id"], name="Added")
    session = alice.session(site["id"])["id"]
    got: list[Any] = []

    def poll() -> None:
        got.append(acquire(alice, session, max_jobs=10, wait_s=20, apps={"Known": None}))

    waiting = threading.Thread(target=poll)
    waiting.start()
    time.sleep(0.5)
    [other] = alice.jobs([{"app_id": added["id"], "workdir": "a"}])
    time.sleep(0.5)
    assert waiting.is_alive(), "answered with nothing it can run"
    [mine] = alice.jobs([{"app_id": known["id"], "workdir": "k"}])
    waiting.join(timeout=15)
    assert not waiting.is_alive()
    assert _ids(got[0]) == [mine["id"]]
    still = alice.ok(alice.http.get(f"/jobs/{other['id']}"))
    assert still["session_id"] is None and still["state"] == "PREPROCESSED"  # type: ignore[index]


@pytest.mark.parametrize(
    ("apps", "named"),
    [
        (["Known"], "apps"),
        ({"Known": 5}, "Known"),
        ({"Known": {"v": 1}}, "Known"),
        ({"": None}, "apps"),
        ({"a" * 101: None}, "apps"),
        ({"bad name": None}, "apps"),
        ({"Known": "has spaces"}, "Known"),
        ({"Known": "v" * 65}, "Known"),
        ({f"App{i}": None for i in range(10_001)}, "apps"),
        ("Known", "apps"),
    ],
)
def test_a_bad_advertisement_is_refused_naming_it(alice: ApiUser, apps: Any, named: str) -> None:
    site = alice.site()
    session = alice.session(site["id"])["id"]
    answer = alice.http.post(f"/sessions/{session}/acquire", json={"max_jobs": 1, "apps": apps})
    assert answer.status_code == 422, answer.text
    assert named in answer.text and "Traceback" not in answer.text


@pytest.mark.parametrize("version", ["", "x y", "v" * 65, "ünïcode"])
def test_a_bad_app_version_is_refused(alice: ApiUser, version: str) -> None:
    site = alice.site()
    answer = alice.http.post("/apps", json={"site_id": site["id"], "name": "V", "version": version})
    assert answer.status_code == 422, answer.text
    assert "version" in answer.text
