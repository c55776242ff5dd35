"""Site health: ``up``, ``degraded``, ``down`` or ``draining``, as a pure function of what the service knows.

::

    signals ─────────────────────────────────────────────────────────────▶ state
    owner drain ................................................ draining   (no new work; unclaimed jobs leave)
    heartbeat older than heartbeat_down_s, or never heard ....... down       (no new work; unclaimed jobs leave)
    scheduler commands failing >= scheduler_failures_down ....... down
    transfer failure rate >= transfer_failure_down .............. down
    any of the three past its *degraded* threshold .............. degraded   (work still goes there, at a penalty)
    otherwise ................................................... up

Every state comes with the reasons behind it, worded for a person ("no heartbeat for 6 min"), so the
service can show why a site gets no work. The thresholds are data (:class:`HealthThresholds`); the
defaults follow Balsam's "a site is active if it refreshed within 2 min" and the agent's 1-minute periods.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class HealthState(StrEnum):
    """Whether a site takes new work."""

    UP = "up"
    DEGRADED = "degraded"
    DOWN = "down"
    DRAINING = "draining"

    @property
    def accepts_work(self) -> bool:
        """Whether new jobs may be placed on a site in this state."""
        return self in (HealthState.UP, HealthState.DEGRADED)


@dataclass(frozen=True, slots=True)
class HealthSignals:
    """What the service observed about one site, as of the snapshot's time.

    ``scheduler_failures`` counts the agent's consecutive failed scheduler commands (``sbatch``,
    ``squeue``…) as it last reported them; ``transfer_failures`` / ``transfer_attempts`` are the site's
    transfer tasks that ended in the recent window (see :func:`~beambridge.placement.estimators.failure_rate`).
    """

    heartbeat_age_s: float | None
    """Seconds since the agent's last heartbeat; ``None`` if it never sent one."""
    scheduler_failures: int = 0
    transfer_failures: int = 0
    transfer_attempts: int = 0
    drain: bool = False
    """Set by the site's owner (e.g. ``beambridge site drain`` before planned maintenance)."""
    scheduler_error: str = ""
    """The last failed scheduler command's message, as the agent reported it."""


@dataclass(frozen=True, slots=True)
class HealthThresholds:
    """Where each signal turns a site ``degraded`` or ``down``."""

    heartbeat_degraded_s: float = 90.0
    heartbeat_down_s: float = 180.0
    scheduler_failures_degraded: int = 3
    scheduler_failures_down: int = 10
    transfer_failure_degraded: float = 0.2
    transfer_failure_down: float = 0.8
    min_transfer_attempts: int = 5
    """Fewer recent transfer tasks than this say nothing about the failure rate."""

    def __post_init__(self) -> None:
        if not 0 < self.heartbeat_degraded_s <= self.heartbeat_down_s:
            raise ValueError("need 0 < heartbeat_degraded_s <= heartbeat_down_s")
        if not 0 < self.scheduler_failures_degraded <= self.scheduler_failures_down:
            raise ValueError("need 0 < scheduler_failures_degraded <= scheduler_failures_down")
        if not 0 < self.transfer_failure_degraded <= self.transfer_failure_down <= 1:
            raise ValueError("need 0 < transfer_failure_degraded <= transfer_failure_down <= 1")
        if self.min_transfer_attempts < 1:
            raise ValueError("min_transfer_attempts must be at least 1")


DEFAULT_THRESHOLDS = HealthThresholds()


@dataclass(frozen=True, slots=True)
class SiteHealth:
    """A site's health state and the reasons for it (empty when ``up``)."""

    state: HealthState = HealthState.UP
    reasons: tuple[str, ...] = ()

    @property
    def accepts_work(self) -> bool:
        """Whether new jobs may be placed here."""
        return self.state.accepts_work

    def describe(self) -> str:
        """``"down: no heartbeat for 6 min"`` — the state and its reasons in one line."""
        return f"{self.state.value}: {'; '.join(self.reasons)}" if self.reasons else self.state.value


UP = SiteHealth()


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def site_health(signals: HealthSignals, thresholds: HealthThresholds = DEFAULT_THRESHOLDS) -> SiteHealth:
    """The health of a site from its signals: the worst state any signal calls for, with every reason.

    An owner's drain wins over everything else (planned maintenance explains the silence that follows);
    otherwise ``down`` beats ``degraded`` beats ``up``.
    """
    down: list[str] = []
    degraded: list[str] = []
    age = signals.heartbeat_age_s
    if age is None:
        down.append("the agent has never sent a heartbeat")
    elif age >= thresholds.heartbeat_down_s:
        down.append(f"no heartbeat for {_duration(age)}")
    elif age >= thresholds.heartbeat_degraded_s:
        degraded.append(f"last heartbeat {_duration(age)} ago")
    failures = signals.scheduler_failures
    words = f"{failures} scheduler commands failed in a row"
    if signals.scheduler_error:
        words += f" (last: {signals.scheduler_error[:200]})"
    if failures >= thresholds.scheduler_failures_down:
        down.append(words)
    elif failures >= thresholds.scheduler_failures_degraded:
        degraded.append(words)
    attempts = signals.transfer_attempts
    if attempts >= thresholds.min_transfer_attempts:
        rate = signals.transfer_failures / attempts
        words = f"{signals.transfer_failures} of the last {attempts} transfer tasks failed"
        if rate >= thresholds.transfer_failure_down:
            down.append(words)
        elif rate >= thresholds.transfer_failure_degraded:
            degraded.append(words)
    if signals.drain:
        return SiteHealth(HealthState.DRAINING, ("drained by its owner", *down, *degraded))
    if down:
        return SiteHealth(HealthState.DOWN, (*down, *degraded))
    if degraded:
        return SiteHealth(HealthState.DEGRADED, tuple(degraded))
    return UP
