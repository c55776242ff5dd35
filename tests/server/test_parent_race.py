"""A child created at the very moment its parent finishes (or is cancelled) is never stranded.

Each pair of requests — create a child of P, finish P — is sent at the same instant from two threads, a
few hundred times, on both databases. Whatever order the two transactions take, the child must end up
released (parent finished) or failed (parent cancelled), never ``AWAITING_PARENTS`` under a parent that
has ended.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.conftest import ApiUser
from tests.server.helpers import acquire, report, states

PAIRS = 200


Call = Callable[[httpx.Client], None]


def _race(user: ApiUser, pairs: list[tuple[Call, Call]]) -> None:
    """Run each pair's two calls at the same instant (a barrier per pair), 16 calls at a time."""
    local = threading.local()

    def client() -> httpx.Client:
        if not hasattr(local, "http"):
            local.http = httpx.Client(base_url=user.base_url, headers=user.http.headers, timeout=60)
        return local.http  # type: ignore[no-any-return]

    def run(call: Callable[[httpx.Client], None], barrier: threading.Barrier) -> None:
        http = client()
        barrier.wait(timeout=60)
        call(http)

    with ThreadPoolExecutor(16) as pool:
        futures = []
        for first, second in pairs:
            barrier = threading.Barrier(2)
            futures += [pool.submit(run, first, barrier), pool.submit(run, second, barrier)]
        for future in futures:
            future.result()


def _running_parents(user: ApiUser, count: int) -> tuple[int, int, list[int]]:
    site = user.site()
    app = user.app(site["id"])
    parents = [j["id"] for j in user.jobs([{"app_id": app["id"], "workdir": f"p/{i}"} for i in range(count)])]
    session = user.session(site["id"])["id"]
    assert len(acquire(user, session, max_jobs=count)) == count
    report(user, session, [{"id": p, "state": "RUNNING"} for p in parents])
    return app["id"], session, parents


def _child_maker(app_id: int, parent: int, children: list[int]) -> Callable[[httpx.Client], None]:
    def create(http: httpx.Client) -> None:
        response = http.post("/jobs", json=[{"app_id": app_id, "workdir": "c", "parent_ids": [parent]}])
        if response.status_code == 201:
            children.append(response.json()[0]["id"])
        else:  # the parent had already been cancelled: refused, which is right
            assert response.status_code == 409 and "could never run" in response.text, response.text

    return create


def test_children_created_while_parents_finish(alice: ApiUser) -> None:
    app_id, session, parents = _running_parents(alice, PAIRS)
    children: list[int] = []

    def finisher(parent: int) -> Callable[[httpx.Client], None]:
        def finish(http: httpx.Client) -> None:
            body = {"reports": [{"id": parent, "state": "RUN_DONE", "return_code": 0}]}
            assert http.post(f"/sessions/{session}/report", json=body).status_code == 200

        return finish

    _race(alice, [(_child_maker(app_id, p, children), finisher(p)) for p in parents])
    assert set(states(alice, parents).values()) == {"JOB_FINISHED"}
    stranded = [c for c, state in states(alice, children).items() if state == "AWAITING_PARENTS"]
    assert len(children) == PAIRS
    assert stranded == [], f"{len(stranded)} of {PAIRS} children stranded under finished parents"


def test_children_created_while_parents_are_cancelled(alice: ApiUser) -> None:
    app_id, _session, parents = _running_parents(alice, PAIRS)
    children: list[int] = []

    def canceller(parent: int) -> Callable[[httpx.Client], None]:
        def cancel(http: httpx.Client) -> None:
            assert http.post("/jobs/cancel", json={"ids": [parent]}).status_code == 200

        return cancel

    _race(alice, [(_child_maker(app_id, p, children), canceller(p)) for p in parents])
    assert set(states(alice, parents).values()) == {"KILLED"}
    left = {c: s for c, s in states(alice, children).items() if s != "FAILED"}
    assert left == {}, f"{len(left)} of {len(children)} children of cancelled parents did not fail"


def test_two_parents_finishing_at_once_release_their_child(alice: ApiUser) -> None:
    count = PAIRS // 2
    site = alice.site()
    app = alice.app(site["id"])
    groups, sessions = [], []
    for group in ("a", "b"):
        spec = {"app_id": app["id"], "workdir": "p", "tags": {"g": group}}
        ids = [j["id"] for j in alice.jobs([spec] * count)]
        session = alice.session(site["id"])["id"]
        assert len(acquire(alice, session, max_jobs=count, filter_tags={"g": group})) == count
        report(alice, session, [{"id": p, "state": "RUNNING"} for p in ids])
        groups.append(ids)
        sessions.append(session)
    pairs = list(zip(*groups, strict=True))
    children = alice.jobs([{"app_id": app["id"], "workdir": "c", "parent_ids": [a, b]} for a, b in pairs])

    def finisher(session: int, parent: int) -> Callable[[httpx.Client], None]:
        def finish(http: httpx.Client) -> None:
            body = {"reports": [{"id": parent, "state": "RUN_DONE", "return_code": 0}]}
            assert http.post(f"/sessions/{session}/report", json=body).status_code == 200

        return finish

    _race(alice, [(finisher(sessions[0], a), finisher(sessions[1], b)) for a, b in pairs])
    assert set(states(alice, groups[0] + groups[1]).values()) == {"JOB_FINISHED"}
    waiting = [c for c, s in states(alice, [c["id"] for c in children]).items() if s == "AWAITING_PARENTS"]
    assert waiting == [], f"{len(waiting)} of {count} children stranded under two finished parents"
