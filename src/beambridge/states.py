"""The job state machine: the single source of truth for which transition is legal.

::

    CREATED ─┬─▶ AWAITING_PARENTS ─┬─▶ READY ─▶ STAGED_IN ─▶ PREPROCESSED ─▶ RUNNING ─┬─▶ RUN_DONE ─▶ POSTPROCESSED
             ├─────────────────────┘            ▲                          ▲           ├─▶ RUN_ERROR ──┐      │
             └──────────────────────────────────┘ (no stage-ins)           │           └─▶ RUN_TIMEOUT ┤      ▼
                                                               RESTART_READY ◀────────────────────────┘  STAGED_OUT
                                                                                                            │
                          any non-terminal state ─▶ KILLED (user cancel)                     JOB_FINISHED ◀─┘

                 FAILED, KILLED ─▶ AWAITING_PARENTS | READY | STAGED_IN   (only by a user's retry)

Jobs with no parents skip ``AWAITING_PARENTS``; jobs with no stage-ins go straight to ``STAGED_IN``;
jobs with no stage-outs go from ``POSTPROCESSED`` to ``JOB_FINISHED``. ``RUN_ERROR`` and ``RUN_TIMEOUT``
each go to ``RESTART_READY`` or ``FAILED`` as the app's ``handle_error`` / ``handle_timeout`` decides.
``RUN_DONE`` may also go to ``RESTART_READY`` (a postprocess hook asking for a re-run). A job may fail
(``FAILED``: a parent failed, a hook gave up) from every live state but ``RUNNING``, which ends through
``RUN_ERROR``. Nothing leaves a terminal state by itself: only a user's retry (``POST /jobs/retry``,
``beambridge job retry``) sends a ``FAILED`` or ``KILLED`` job back to where a new job would start
(:data:`RETRY_TRANSITIONS`; waiting for its parents, for its stage-ins, or runnable at once), with a fresh
retry count and an event naming who asked. An update asking for such a move is refused like any other
illegal transition.

Every transition, as the service enforces it (``tests/server/test_state_machine.py`` walks each pair
through the service against this list)::

    CREATED → AWAITING_PARENTS, FAILED, KILLED, READY, STAGED_IN
    AWAITING_PARENTS → FAILED, KILLED, READY, STAGED_IN
    READY → FAILED, KILLED, STAGED_IN
    STAGED_IN → FAILED, KILLED, PREPROCESSED
    PREPROCESSED → FAILED, KILLED, RUNNING
    RUNNING → KILLED, RUN_DONE, RUN_ERROR, RUN_TIMEOUT
    RUN_DONE → FAILED, KILLED, POSTPROCESSED, RESTART_READY
    RUN_ERROR → FAILED, KILLED, RESTART_READY
    RUN_TIMEOUT → FAILED, KILLED, RESTART_READY
    RESTART_READY → FAILED, KILLED, RUNNING
    POSTPROCESSED → FAILED, JOB_FINISHED, KILLED, STAGED_OUT
    STAGED_OUT → FAILED, JOB_FINISHED, KILLED
    JOB_FINISHED → (terminal)
    FAILED → (terminal)
    KILLED → (terminal)

Retries (``POST /jobs/retry`` only)::

    FAILED → AWAITING_PARENTS, READY, STAGED_IN
    KILLED → AWAITING_PARENTS, READY, STAGED_IN

Hedging (the service only): a job submitted with ``hedge=True`` that runs late gets a *copy*, a second job
row on another site. The first of the two runs to reach ``RUN_DONE`` wins and the other is cancelled
(``KILLED``, its launcher told to stop it). When the copy wins, the original *adopts* its run: it moves
from wherever it is to ``RUN_DONE`` at the copy's site, with the copy's result, and carries on from there
(postprocess, stage-out, ``JOB_FINISHED``) while the copy ends ``KILLED``. So the job the user submitted
finishes exactly once, and no run of it reaches ``RUN_DONE`` after the winner did (a late report from the
losing launcher is refused: the job is no longer held by its session). Only the hedge resolution takes
these steps (:data:`ADOPT_TRANSITIONS`)::

    READY, STAGED_IN, PREPROCESSED, RUNNING, RUN_ERROR, RUN_TIMEOUT, RESTART_READY → RUN_DONE
"""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    """A job's place in its lifecycle (Balsam's names, so its users recognise them)."""

    CREATED = "CREATED"
    AWAITING_PARENTS = "AWAITING_PARENTS"
    READY = "READY"
    STAGED_IN = "STAGED_IN"
    PREPROCESSED = "PREPROCESSED"
    RUNNING = "RUNNING"
    RUN_DONE = "RUN_DONE"
    RUN_ERROR = "RUN_ERROR"
    RUN_TIMEOUT = "RUN_TIMEOUT"
    RESTART_READY = "RESTART_READY"
    POSTPROCESSED = "POSTPROCESSED"
    STAGED_OUT = "STAGED_OUT"
    JOB_FINISHED = "JOB_FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"


S = JobState

TERMINAL_STATES: frozenset[JobState] = frozenset({S.JOB_FINISHED, S.FAILED, S.KILLED})
"""States nothing leaves."""

RUNNABLE_STATES: frozenset[JobState] = frozenset({S.PREPROCESSED, S.RESTART_READY})
"""States a launcher may acquire a job in."""

SESSION_REPORTED_STATES: frozenset[JobState] = frozenset({S.RUNNING, S.RUN_DONE, S.RUN_ERROR, S.RUN_TIMEOUT})
"""States only the launcher session holding the job may report (the server itself may also time a job out)."""

_ALIVE_EXITS = {S.FAILED, S.KILLED}

ALLOWED_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    S.CREATED: frozenset({S.AWAITING_PARENTS, S.READY, S.STAGED_IN, *_ALIVE_EXITS}),
    S.AWAITING_PARENTS: frozenset({S.READY, S.STAGED_IN, *_ALIVE_EXITS}),
    S.READY: frozenset({S.STAGED_IN, *_ALIVE_EXITS}),
    S.STAGED_IN: frozenset({S.PREPROCESSED, *_ALIVE_EXITS}),
    S.PREPROCESSED: frozenset({S.RUNNING, *_ALIVE_EXITS}),
    S.RUNNING: frozenset({S.RUN_DONE, S.RUN_ERROR, S.RUN_TIMEOUT, S.KILLED}),
    S.RUN_DONE: frozenset({S.POSTPROCESSED, S.RESTART_READY, *_ALIVE_EXITS}),
    S.RUN_ERROR: frozenset({S.RESTART_READY, *_ALIVE_EXITS}),
    S.RUN_TIMEOUT: frozenset({S.RESTART_READY, *_ALIVE_EXITS}),
    S.RESTART_READY: frozenset({S.RUNNING, *_ALIVE_EXITS}),
    S.POSTPROCESSED: frozenset({S.STAGED_OUT, S.JOB_FINISHED, *_ALIVE_EXITS}),
    S.STAGED_OUT: frozenset({S.JOB_FINISHED, *_ALIVE_EXITS}),
    S.JOB_FINISHED: frozenset(),
    S.FAILED: frozenset(),
    S.KILLED: frozenset(),
}
"""For each state, the states a job may move to next."""

RETRYABLE_STATES: frozenset[JobState] = frozenset({S.FAILED, S.KILLED})
"""Terminal states a user may send a job back from (a retry)."""

RETRY_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    state: frozenset({S.AWAITING_PARENTS, S.READY, S.STAGED_IN}) for state in sorted(RETRYABLE_STATES)
}
"""Where a retry sends a job: where a new job would start (see :func:`initial_state`). Only the retry
route takes these steps, so the parents' states and the retry count are settled when they happen."""

ADOPT_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    state: frozenset({S.RUN_DONE})
    for state in (
        S.READY,
        S.STAGED_IN,
        S.PREPROCESSED,
        S.RUNNING,
        S.RUN_ERROR,
        S.RUN_TIMEOUT,
        S.RESTART_READY,
    )
}
"""Where an original job goes when its hedged copy's run finished first: it takes that run as its own
(``RUN_DONE``) from any state in which its own run has not ended yet. Only the hedge resolution takes these
steps, in the transaction that records the copy's ``RUN_DONE``."""

RUN_ENDED_STATES: frozenset[JobState] = frozenset({S.RUN_DONE, S.POSTPROCESSED, S.STAGED_OUT, S.JOB_FINISHED})
"""States of a job whose run finished (successfully): a hedged pair is decided once one of them is here."""

REVERSE_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    target: frozenset(src for src, targets in ALLOWED_TRANSITIONS.items() if target in targets)
    for target in JobState
}
"""For each state, the states a job may come from."""


class IllegalTransition(ValueError):
    """A requested state change that the state machine forbids."""

    def __init__(self, current: JobState, requested: JobState) -> None:
        self.current = current
        self.requested = requested
        self.allowed = sorted(ALLOWED_TRANSITIONS[current])
        if self.allowed:
            allowed = ", ".join(self.allowed)
        elif current in RETRYABLE_STATES:
            allowed = f"none ({current} is terminal; a retry sends it back to run)"
        else:
            allowed = f"none ({current} is terminal)"
        super().__init__(f"cannot move from {current} to {requested}; allowed next states: {allowed}")


def is_terminal(state: JobState) -> bool:
    """Whether ``state`` is final."""
    return state in TERMINAL_STATES


def can_transition(current: JobState, requested: JobState) -> bool:
    """Whether a job in ``current`` may move to ``requested``."""
    return requested in ALLOWED_TRANSITIONS[current]


def check_transition(current: JobState, requested: JobState) -> None:
    """Raise :class:`IllegalTransition` unless ``current → requested`` is legal."""
    if requested not in ALLOWED_TRANSITIONS[current]:
        raise IllegalTransition(current, requested)


def check_retry(current: JobState, requested: JobState) -> None:
    """Raise :class:`IllegalTransition` unless a retry may move a job from ``current`` to ``requested``."""
    if requested not in RETRY_TRANSITIONS.get(current, frozenset()):
        raise IllegalTransition(current, requested)


def check_adopt(current: JobState, requested: JobState) -> None:
    """Raise :class:`IllegalTransition` unless a job may adopt its copy's run from ``current``."""
    if requested not in ADOPT_TRANSITIONS.get(current, frozenset()):
        raise IllegalTransition(current, requested)


def initial_state(*, has_unfinished_parents: bool, has_stage_ins: bool) -> JobState:
    """The state a new job enters from ``CREATED``, skipping the steps it does not need."""
    if has_unfinished_parents:
        return S.AWAITING_PARENTS
    return S.READY if has_stage_ins else S.STAGED_IN


def released_state(*, has_stage_ins: bool) -> JobState:
    """The state a waiting child enters when its last parent finishes."""
    return S.READY if has_stage_ins else S.STAGED_IN
