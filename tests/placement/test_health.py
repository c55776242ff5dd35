"""Site health from heartbeat age, scheduler failures, transfer failures and the owner's drain."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from beambridge.placement import HealthSignals, HealthState, HealthThresholds, site_health

ORDER = {HealthState.UP: 0, HealthState.DEGRADED: 1, HealthState.DOWN: 2}


def test_fresh_heartbeat_is_up() -> None:
    health = site_health(HealthSignals(heartbeat_age_s=5))
    assert health.state is HealthState.UP and health.reasons == () and health.accepts_work


def test_silent_agent_is_down_with_the_reason_in_words() -> None:
    health = site_health(HealthSignals(heartbeat_age_s=360))
    assert health.state is HealthState.DOWN
    assert health.describe() == "down: no heartbeat for 6 min"
    assert not health.accepts_work
    assert site_health(HealthSignals(heartbeat_age_s=None)).reasons == (
        "the agent has never sent a heartbeat",
    )


def test_late_heartbeat_and_scheduler_failures_degrade() -> None:
    assert site_health(HealthSignals(heartbeat_age_s=100)).state is HealthState.DEGRADED
    health = site_health(HealthSignals(heartbeat_age_s=1, scheduler_failures=3))
    assert health.state is HealthState.DEGRADED and health.accepts_work
    assert health.reasons == ("3 scheduler commands failed in a row",)
    assert site_health(HealthSignals(heartbeat_age_s=1, scheduler_failures=10)).state is HealthState.DOWN


def test_transfer_failure_rate_needs_enough_attempts() -> None:
    few = HealthSignals(heartbeat_age_s=1, transfer_failures=4, transfer_attempts=4)
    assert site_health(few).state is HealthState.UP
    some = HealthSignals(heartbeat_age_s=1, transfer_failures=3, transfer_attempts=10)
    assert site_health(some).reasons == ("3 of the last 10 transfer tasks failed",)
    assert site_health(some).state is HealthState.DEGRADED
    most = HealthSignals(heartbeat_age_s=1, transfer_failures=9, transfer_attempts=10)
    assert site_health(most).state is HealthState.DOWN


def test_drain_wins_and_keeps_the_other_reasons() -> None:
    health = site_health(HealthSignals(heartbeat_age_s=400, drain=True))
    assert health.state is HealthState.DRAINING and not health.accepts_work
    assert health.reasons == ("drained by its owner", "no heartbeat for 7 min")


def test_thresholds_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="heartbeat_degraded_s"):
        HealthThresholds(heartbeat_degraded_s=200, heartbeat_down_s=100)
    with pytest.raises(ValueError, match="transfer_failure"):
        HealthThresholds(transfer_failure_down=1.5)


@settings(deadline=None)
@given(
    st.floats(0, 10_000),
    st.floats(0, 10_000),
    st.integers(0, 50),
    st.integers(0, 50),
    st.integers(0, 50),
)
def test_worse_signals_never_give_better_health(
    age: float, more_age: float, failures: int, more_failures: int, transfer_fails: int
) -> None:
    attempts = 50
    better = HealthSignals(age, failures, transfer_fails, attempts)
    worse = HealthSignals(age + more_age, failures + more_failures, transfer_fails, attempts)
    assert ORDER[site_health(worse).state] >= ORDER[site_health(better).state]
