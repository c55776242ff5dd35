"""The state machine, pinned through the service: every (from, to) pair of job states is tried over HTTP
and the service must allow exactly the documented transitions — a 409 listing the allowed next states for
every other pair.

``DOCUMENTED`` is written out here on purpose instead of being read from ``states.py``: widening the table
there (say ``RUN_DONE → RUNNING``, a late launcher report re-opening a finished run) must fail this test
until the documentation and this table say the same.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from beambridge.states import ALLOWED_TRANSITIONS, SESSION_REPORTED_STATES, JobState
from tests.conftest import ApiUser
from tests.server.helpers import acquire, report

S = JobState
_LIVE_EXITS = {S.FAILED, S.KILLED}
DOCUMENTED: dict[JobState, set[JobState]] = {
    S.CREATED: {S.AWAITING_PARENTS, S.READY, S.STAGED_IN, *_LIVE_EXITS},
    S.AWAITING_PARENTS: {S.READY, S.STAGED_IN, *_LIVE_EXITS},
    S.READY: {S.STAGED_IN, *_LIVE_EXITS},
    S.STAGED_IN: {S.PREPROCESSED, *_LIVE_EXITS},
    S.PREPROCESSED: {S.RUNNING, *_LIVE_EXITS},
    S.RUNNING: {S.RUN_DONE, S.RUN_ERROR, S.RUN_TIMEOUT, S.KILLED},
    S.RUN_DONE: {S.POSTPROCESSED, S.RESTART_READY, *_LIVE_EXITS},
    S.RUN_ERROR: {S.RESTART_READY, *_LIVE_EXITS},
    S.RUN_TIMEOUT: {S.RESTART_READY, *_LIVE_EXITS},
    S.RESTART_READY: {S.RUNNING, *_LIVE_EXITS},
    S.POSTPROCESSED: {S.STAGED_OUT, S.JOB_FINISHED, *_LIVE_EXITS},
    S.STAGED_OUT: {S.JOB_FINISHED, *_LIVE_EXITS},
    S.JOB_FINISHED: set(),
    S.FAILED: set(),
    S.KILLED: set(),
}

# How a job with stage-ins and stage-outs, whose app overrides every hook (so the service takes no step by
# itself), is brought from READY to each resting state: (route, state) steps. "report" needs the session.
_PATHS: dict[JobState, list[JobState]] = {
    S.READY: [],
    S.STAGED_IN: [S.STAGED_IN],
    S.PREPROCESSED: [S.STAGED_IN, S.PREPROCESSED],
    S.RUNNING: [S.STAGED_IN, S.PREPROCESSED, S.RUNNING],
    S.RUN_DONE: [S.STAGED_IN, S.PREPROCESSED, S.RUNNING, S.RUN_DONE],
    S.RUN_ERROR: [S.STAGED_IN, S.PREPROCESSED, S.RUNNING, S.RUN_ERROR],
    S.RUN_TIMEOUT: [S.STAGED_IN, S.PREPROCESSED, S.RUNNING, S.RUN_TIMEOUT],
    S.RESTART_READY: [S.STAGED_IN, S.PREPROCESSED, S.RUNNING, S.RUN_ERROR, S.RESTART_READY],
    S.POSTPROCESSED: [S.STAGED_IN, S.PREPROCESSED, S.RUNNING, S.RUN_DONE, S.POSTPROCESSED],
    S.STAGED_OUT: [S.STAGED_IN, S.PREPROCESSED, S.RUNNING, S.RUN_DONE, S.POSTPROCESSED, S.STAGED_OUT],
    S.JOB_FINISHED: [S.STAGED_IN, S.PREPROCESSED, S.RUNNING, S.RUN_DONE, S.POSTPROCESSED, S.STAGED_OUT,
                     S.JOB_FINISHED],
    S.FAILED: [S.FAILED],
    S.KILLED: [S.KILLED],
}  # fmt: skip


def test_states_module_matches_the_documented_table() -> None:
    assert {state: set(targets) for state, targets in ALLOWED_TRANSITIONS.items()} == DOCUMENTED


def test_states_module_docstring_lists_every_transition() -> None:
    import beambridge.states

    doc = beambridge.states.__doc__ or ""
    for state, targets in DOCUMENTED.items():
        line = f"{state} → " + (", ".join(sorted(targets)) if targets else "(terminal)")
        assert line in doc, f"states.py does not document: {line}"


class Walker:
    """Jobs of one site whose app overrides every hook and has an input and an output slot."""

    def __init__(self, user: ApiUser) -> None:
        self.user = user
        self.site = user.site(f"walk-{uuid.uuid4().hex[:6]}")
        slots = {
            "raw": {"direction": "in", "local_path": "raw.h5"},
            "result": {"direction": "out", "local_path": "result.h5"},
        }
        self.app = user.app(
            self.site["id"],
            "walker",
            transfer_slots=slots,
            hooks=["preprocess", "postprocess", "handle_error", "handle_timeout"],
        )
        self.session = user.session(self.site["id"])["id"]
        self.parent = self.create(1, {})[0]  # stays READY: a job waiting for it stays AWAITING_PARENTS

    def create(self, count: int, tags: dict[str, str], parents: list[int] | None = None) -> list[int]:
        spec = {
            "app_id": self.app["id"],
            "workdir": "w",
            "tags": tags,
            "transfers": {"raw": "a:/in.h5", "result": "a:/out.h5"},
            "parent_ids": parents or [],
        }
        return [job["id"] for job in self.user.jobs([spec] * count)]

    def step(self, ids: list[int], state: JobState, tag: str) -> None:
        if state is S.RUNNING:
            taken = acquire(self.user, self.session, max_jobs=len(ids), filter_tags={"walk": tag})
            assert sorted(j["id"] for j in taken) == sorted(ids)
        if state in SESSION_REPORTED_STATES:
            report(self.user, self.session, [{"id": i, "state": state.value} for i in ids])
        elif state is S.KILLED:
            self.user.ok(self.user.http.post("/jobs/cancel", json={"ids": ids}))
        else:
            self.user.ok(self.user.http.patch("/jobs", json=[{"id": i, "state": state.value} for i in ids]))

    def jobs_in(self, state: JobState, count: int) -> list[int]:
        tag = f"{state.value}-{uuid.uuid4().hex[:6]}"
        if state is S.AWAITING_PARENTS:
            return self.create(count, {"walk": tag}, [self.parent])
        ids = self.create(count, {"walk": tag})
        for step in _PATHS[state]:
            self.step(ids, step, tag)
        if state in (S.PREPROCESSED, S.RESTART_READY):  # held by the session, as a launcher would hold it
            taken = acquire(self.user, self.session, max_jobs=count, filter_tags={"walk": tag})
            assert sorted(j["id"] for j in taken) == sorted(ids)
        return ids

    def attempt(self, job_id: int, state: JobState) -> Any:
        if state in SESSION_REPORTED_STATES:
            body = {"reports": [{"id": job_id, "state": state.value}]}
            return self.user.http.post(f"/sessions/{self.session}/report", json=body)
        return self.user.http.patch(f"/jobs/{job_id}", json={"state": state.value})

    def current(self, job_id: int) -> str:
        return self.user.ok(self.user.http.get(f"/jobs/{job_id}"))["state"]  # type: ignore[index]


def _allowed_in(body: dict[str, Any]) -> list[str]:
    entries = body.get("errors") or body.get("refused") or []
    assert entries, body
    return list(entries[0]["allowed"])


@pytest.mark.parametrize("start", [s for s in JobState if s is not S.CREATED], ids=str)
def test_every_transition_through_the_service(alice: ApiUser, start: JobState) -> None:
    walker = Walker(alice)
    targets = list(JobState)
    ids = walker.jobs_in(start, len(targets))
    problems = []
    for job_id, target in zip(ids, targets, strict=True):
        assert walker.current(job_id) == start
        response = walker.attempt(job_id, target)
        legal = target in DOCUMENTED[start]
        if legal:
            if response.status_code != 200:
                problems.append(f"{start} → {target} is documented but refused: {response.text}")
                continue
            events = alice.ok(alice.http.get(f"/jobs/{job_id}/events"))
            last = events[-1]  # type: ignore[index]
            if (last["from_state"], last["to_state"]) != (start, target):
                problems.append(f"{start} → {target}: last event is {last}")
        elif response.status_code != 409:
            problems.append(f"{start} → {target} is not documented but answered {response.status_code}")
        else:
            allowed = _allowed_in(response.json())
            documented = sorted(s.value for s in DOCUMENTED[start])
            if allowed != documented:
                problems.append(f"{start} → {target}: 409 lists {allowed}, not {documented}")
            if walker.current(job_id) != start:
                problems.append(f"{start} → {target}: refused, yet the job moved")
    assert problems == []


def test_creation_takes_only_documented_first_steps(alice: ApiUser) -> None:
    """CREATED is never a resting state; its way out is chosen at creation and recorded as an event."""
    walker = Walker(alice)
    waiting = walker.create(1, {}, [walker.parent])[0]
    staged = walker.create(1, {})[0]
    plain_app = alice.app(walker.site["id"], "plain", hooks=["preprocess"])
    [plain] = alice.jobs([{"app_id": plain_app["id"], "workdir": "w"}])
    for job_id, first in ((waiting, S.AWAITING_PARENTS), (staged, S.READY), (plain["id"], S.STAGED_IN)):
        events = alice.ok(alice.http.get(f"/jobs/{job_id}/events"))
        assert (events[0]["from_state"], events[0]["to_state"]) == (S.CREATED, first)  # type: ignore[index]
        assert first in DOCUMENTED[S.CREATED]
