"""What a placement returns: the decision and, for every site considered, the estimate behind it.

A :class:`Decision` serialises with :meth:`Decision.to_dict` to the JSON the service records in the
job's placement event; :mod:`beambridge.schemas.placement` holds the same shape as pydantic models for
the SDK and the CLI (a test keeps the two equal).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

from beambridge.placement.snapshot import JobKey


class Outcome(StrEnum):
    """What became of a job."""

    PLACED = "placed"
    DEFERRED = "deferred"
    """Eligible sites exist but none takes work now (down, draining, full): try again later."""
    REFUSED = "refused"
    """No site could ever run it (each site's reason is in the estimates)."""


class SiteStatus(StrEnum):
    """A site's part in one decision."""

    CHOSEN = "chosen"
    CANDIDATE = "candidate"
    UNAVAILABLE = "unavailable"
    INELIGIBLE = "ineligible"


class WaitBasis(StrEnum):
    """What the predicted wait for a slot rests on."""

    FREE_SLOT = "free_slot"
    """An idle slot in a running pilot."""
    BACKLOG = "backlog"
    """The work ahead, drained by the running pilots."""
    QUEUED_PILOT = "queued_pilot"
    """A pilot already in the batch queue."""
    NEW_PILOT = "new_pilot"
    """A pilot the site will have to submit."""


class SiteEstimate(NamedTuple):
    """One site's figures in one decision (seconds from the decision's time; ``None`` where not computed).

    ``finish_s = max(stage_in_s, wait_s) + run_s + stage_out_s``, times ``penalty`` for a degraded site:
    data moves while the work ahead drains, so the slower of the two decides when the job can start.
    ``marginal_s``: the delay the job would impose on the jobs after it there (``fastest_finish`` ranks
    by ``finish_s + marginal_s``).
    """

    site: str
    status: SiteStatus
    health: str
    reasons: tuple[str, ...] = ()
    backlog: int = 0
    stage_in_s: float | None = None
    wait_s: float | None = None
    wait_basis: WaitBasis | None = None
    run_s: float | None = None
    run_basis: str | None = None
    """``history``, ``history_scaled`` (by input size) or ``prior``."""
    stage_out_s: float | None = None
    finish_s: float | None = None
    finish_p95_s: float | None = None
    penalty: float = 1.0
    marginal_s: float | None = None
    """The delay placing the job here would impose on later jobs (``None``: none — it finds an idle
    slot — or the site was not costed); ``fastest_finish`` ranks sites by ``finish_s + marginal_s``."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (seconds rounded to milliseconds)."""
        return {
            "site": self.site,
            "status": self.status.value,
            "health": self.health,
            "reasons": list(self.reasons),
            "backlog": self.backlog,
            "stage_in_s": _ms(self.stage_in_s),
            "wait_s": _ms(self.wait_s),
            "wait_basis": self.wait_basis.value if self.wait_basis is not None else None,
            "run_s": _ms(self.run_s),
            "run_basis": self.run_basis,
            "stage_out_s": _ms(self.stage_out_s),
            "finish_s": _ms(self.finish_s),
            "finish_p95_s": _ms(self.finish_p95_s),
            "penalty": self.penalty,
            "marginal_s": _ms(self.marginal_s),
        }

    def to_compact_dict(self) -> dict[str, Any]:
        """:meth:`to_dict` without the fields at their defaults (null figures, no reasons, no penalty):
        what a job's placement event stores (the API's schema fills the defaults back in)."""
        out: dict[str, Any] = {"site": self.site, "status": self.status.value, "health": self.health}
        if self.reasons:
            out["reasons"] = list(self.reasons)
        out["backlog"] = self.backlog
        inf = _INF
        if self.stage_in_s is not None and self.stage_in_s != inf:
            out["stage_in_s"] = round(self.stage_in_s, 3)
        if self.wait_s is not None and self.wait_s != inf:
            out["wait_s"] = round(self.wait_s, 3)
        if self.run_s is not None and self.run_s != inf:
            out["run_s"] = round(self.run_s, 3)
        if self.stage_out_s is not None and self.stage_out_s != inf:
            out["stage_out_s"] = round(self.stage_out_s, 3)
        if self.finish_s is not None and self.finish_s != inf:
            out["finish_s"] = round(self.finish_s, 3)
        if self.finish_p95_s is not None and self.finish_p95_s != inf:
            out["finish_p95_s"] = round(self.finish_p95_s, 3)
        if self.wait_basis is not None:
            out["wait_basis"] = self.wait_basis.value
        if self.run_basis is not None:
            out["run_basis"] = self.run_basis
        if self.penalty != 1.0:
            out["penalty"] = self.penalty
        if self.marginal_s is not None:
            out["marginal_s"] = round(self.marginal_s, 3)
        return out


_INF = float("inf")


def _ms(value: float | None) -> float | None:
    if value is None:
        return None
    return round(value, 3) if value != float("inf") else None


@dataclass(frozen=True, slots=True)
class Decision:
    """Where one job goes (or why it does not), by which policy, with every site's estimate."""

    job: JobKey
    policy: str
    outcome: Outcome
    site: str | None
    reason: str
    at: float
    estimates: tuple[SiteEstimate, ...]
    explored: bool = False

    @property
    def chosen(self) -> SiteEstimate | None:
        """The chosen site's estimate."""
        return next((e for e in self.estimates if e.status is SiteStatus.CHOSEN), None)

    @property
    def runner_up(self) -> SiteEstimate | None:
        """The best candidate that was not chosen (by predicted finish), if any."""
        others = [e for e in self.estimates if e.status is SiteStatus.CANDIDATE and e.finish_s is not None]
        return min(others, key=lambda e: e.finish_s or 0.0) if others else None

    def reasons_by_site(self) -> dict[str, list[str]]:
        """For a refused or deferred job: each site's reasons."""
        return {e.site: list(e.reasons) for e in self.estimates}

    def to_dict(self) -> dict[str, Any]:
        """The JSON the service stores with the placement event."""
        return {
            "job": self.job if isinstance(self.job, int | str) else repr(self.job),
            "policy": self.policy,
            "outcome": self.outcome.value,
            "site": self.site,
            "reason": self.reason,
            "at": self.at,
            "explored": self.explored,
            "estimates": [e.to_dict() for e in self.estimates],
        }
