"""The state machine as data: the documented paths are legal, everything else is not."""

import itertools

import pytest

from beambridge.states import (
    ALLOWED_TRANSITIONS,
    REVERSE_TRANSITIONS,
    RUNNABLE_STATES,
    TERMINAL_STATES,
    IllegalTransition,
    JobState,
    can_transition,
    check_transition,
    initial_state,
    released_state,
)

S = JobState
HAPPY_PATH = [
    S.CREATED, S.AWAITING_PARENTS, S.READY, S.STAGED_IN, S.PREPROCESSED, S.RUNNING,
    S.RUN_DONE, S.POSTPROCESSED, S.STAGED_OUT, S.JOB_FINISHED,
]  # fmt: skip


def test_every_state_has_an_entry() -> None:
    assert set(ALLOWED_TRANSITIONS) == set(JobState)


@pytest.mark.parametrize(("a", "b"), list(itertools.pairwise(HAPPY_PATH)))
def test_documented_path_is_legal(a: JobState, b: JobState) -> None:
    assert can_transition(a, b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (S.CREATED, S.STAGED_IN),  # no parents, no stage-ins
        (S.CREATED, S.READY),
        (S.POSTPROCESSED, S.JOB_FINISHED),  # no stage-outs
        (S.RUN_ERROR, S.RESTART_READY),
        (S.RUN_ERROR, S.FAILED),
        (S.RUN_TIMEOUT, S.RESTART_READY),
        (S.RUN_TIMEOUT, S.FAILED),
        (S.RESTART_READY, S.RUNNING),
        (S.RUNNING, S.KILLED),
    ],
)
def test_skips_and_retries_are_legal(a: JobState, b: JobState) -> None:
    assert can_transition(a, b)


@pytest.mark.parametrize(
    ("a", "b"),
    [(S.RUNNING, S.READY), (S.CREATED, S.RUNNING), (S.STAGED_IN, S.RUNNING), (S.RUNNING, S.JOB_FINISHED)],
)
def test_shortcuts_are_illegal(a: JobState, b: JobState) -> None:
    with pytest.raises(IllegalTransition) as info:
        check_transition(a, b)
    assert str(a) in str(info.value) and str(b) in str(info.value)
    assert info.value.allowed == sorted(ALLOWED_TRANSITIONS[a])


@pytest.mark.parametrize("state", sorted(TERMINAL_STATES))
def test_terminal_states_are_final(state: JobState) -> None:
    assert not ALLOWED_TRANSITIONS[state]
    with pytest.raises(IllegalTransition, match="terminal"):
        check_transition(state, S.RUNNING)


def test_every_live_state_can_be_killed() -> None:
    for state in set(JobState) - TERMINAL_STATES:
        assert can_transition(state, S.KILLED), state


def test_runnable_states_lead_to_running() -> None:
    for state in RUNNABLE_STATES:
        assert can_transition(state, S.RUNNING)


def test_reverse_table_matches() -> None:
    for target, sources in REVERSE_TRANSITIONS.items():
        for source in JobState:
            assert (source in sources) == can_transition(source, target)


def test_initial_and_released_states() -> None:
    assert initial_state(has_unfinished_parents=True, has_stage_ins=True) is S.AWAITING_PARENTS
    assert initial_state(has_unfinished_parents=False, has_stage_ins=True) is S.READY
    assert initial_state(has_unfinished_parents=False, has_stage_ins=False) is S.STAGED_IN
    assert released_state(has_stage_ins=False) is S.STAGED_IN
    assert released_state(has_stage_ins=True) is S.READY
