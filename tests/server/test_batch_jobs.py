"""Batch-job states: the service follows the table in ``schemas/batch_jobs.py``, pair by pair."""

from __future__ import annotations

import itertools
from collections import deque

import pytest

from beambridge.schemas.batch_jobs import (
    BATCH_JOB_FINAL_STATES,
    BATCH_JOB_TRANSITIONS,
    BatchJobState,
    can_change_batch_job,
)
from tests.conftest import ApiUser

B = BatchJobState


def _paths_from(start: BatchJobState) -> dict[BatchJobState, list[BatchJobState]]:
    """For each state the table lets ``start`` reach, the shortest chain of changes that gets there."""
    paths: dict[BatchJobState, list[BatchJobState]] = {start: []}
    todo = deque([start])
    while todo:
        state = todo.popleft()
        for following in sorted(BATCH_JOB_TRANSITIONS[state]):
            if following not in paths:
                paths[following] = [*paths[state], following]
                todo.append(following)
    return paths


def _path_to(target: BatchJobState) -> list[BatchJobState]:
    return _paths_from(B.PENDING_SUBMISSION)[target]


def test_the_table_keeps_the_rules_that_matter() -> None:
    assert set(BATCH_JOB_TRANSITIONS) == set(B)
    assert {B.SUBMIT_FAILED, B.FINISHED} == BATCH_JOB_FINAL_STATES
    assert set(_paths_from(B.PENDING_SUBMISSION)) == set(B)  # every state is reachable…
    for state in B:
        assert BATCH_JOB_FINAL_STATES & set(_paths_from(state)), f"a {state} pilot can never end"  # …and ends
    assert not any(B.PENDING_SUBMISSION in nexts for nexts in BATCH_JOB_TRANSITIONS.values())  # no resubmit
    assert BATCH_JOB_TRANSITIONS[B.PENDING_DELETION] == {B.FINISHED}  # a deleted pilot cannot be revived
    for flow in ([B.QUEUED, B.RUNNING, B.QUEUED, B.RUNNING, B.FINISHED], [B.SUBMIT_FAILED]):  # requeues
        state = B.PENDING_SUBMISSION
        for following in flow:
            assert can_change_batch_job(state, following), (state, following)
            state = following
    for state in set(B) - BATCH_JOB_FINAL_STATES:
        assert can_change_batch_job(state, B.PENDING_DELETION)


@pytest.mark.parametrize(("current", "requested"), list(itertools.product(B, B)), ids=lambda s: str(s))
def test_every_pair_of_states(alice: ApiUser, current: BatchJobState, requested: BatchJobState) -> None:
    site = alice.site()
    body = {"site_id": site["id"], "num_nodes": 1, "wall_time_min": 5}
    batch = alice.ok(alice.http.post("/batch-jobs", json=body), 201)
    path = f"/batch-jobs/{batch['id']}"  # type: ignore[index]
    for state in _path_to(current):
        alice.ok(alice.http.patch(path, json={"state": state}))
    response = alice.http.patch(path, json={"state": requested, "status_info": {"seen": True}})
    if requested == current or requested in BATCH_JOB_TRANSITIONS[current]:
        assert response.status_code == 200, response.text
        assert response.json()["state"] == requested and response.json()["status_info"] == {"seen": True}
    else:
        assert response.status_code == 409, response.text
        detail = response.json()["detail"]
        assert f"is {current}; it cannot become {requested}" in detail
        allowed = ", ".join(sorted(BATCH_JOB_TRANSITIONS[current])) or f"none ({current} is final)"
        assert f"(allowed next states: {allowed})" in detail
        after = alice.ok(alice.http.get(path))
        assert after["state"] == current and after["status_info"] == {}, "a refused change changes nothing"  # type: ignore[index]
    # fields other than the state can always be recorded
    alice.ok(alice.http.patch(path, json={"scheduler_id": "42"}))
