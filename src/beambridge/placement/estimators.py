"""Estimators: robust figures from recorded samples, as pure functions the service feeds with rows.

Each estimator takes samples stamped with the snapshot's clock (seconds), keeps the recent ones (a time
window, topped up with the newest samples when the window holds too few: stale data beats none), and
returns a small frozen object the placement code asks for predictions:

* :func:`estimate_run_time` → :class:`RunTimeEstimate`: median run time of an app at a site, scaled by
  input size where sizes are known (Theil–Sen line ``seconds = a + b·bytes``, robust to outliers; with
  one size only, proportional scaling) — the size being the input bytes or, when the jobs move no data,
  the numeric job parameter that explains the run times best (an app whose ``frames`` or ``size``
  parameter sets its work) — and the spread to its 95th percentile;
* :func:`estimate_queue_wait` → :class:`QueueWaitEstimate`: how long a new pilot waits in a batch queue,
  by Kaplan–Meier over finished waits *and* the pilots still queued (censored at their age), so a queue
  that has stopped moving looks slow at once rather than when its first stuck pilot finally starts;
* :func:`estimate_transfer` → :class:`TransferEstimate`: per-task overhead and rate of a route
  (location → site), from the same robust line over (bytes, seconds), and its failure rate;
* :func:`failure_rate`, :func:`completions_per_s`: counts over the window.

With no samples at all each falls back to the prior it is given (from the site's configuration).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

Source = Literal["history", "prior"]

DEFAULT_WINDOW_S = 6 * 3600.0
MIN_SAMPLES = 5
MAX_SAMPLES = 64
"""The newest samples kept per estimate: enough for a stable median, few enough for an O(n²) line fit."""


@dataclass(frozen=True, slots=True)
class RunSample:
    """One finished run of an app at a site."""

    seconds: float
    at: float
    """When the run ended (snapshot clock)."""
    input_bytes: float | None = None
    parameters: tuple[tuple[str, float], ...] = ()
    """The job's numeric parameters (name, value): candidates for its size when it moves no data."""


@dataclass(frozen=True, slots=True)
class QueueWaitSample:
    """One pilot's wait in a batch queue, from submission to start."""

    seconds: float
    at: float


@dataclass(frozen=True, slots=True)
class TransferSample:
    """One finished transfer task between a location and a site (either direction)."""

    bytes: float
    seconds: float
    at: float
    ok: bool = True


class _Stamped(Protocol):
    @property
    def at(self) -> float: ...


S = TypeVar("S", bound=_Stamped)


def recent(
    samples: Sequence[S], now: float, window_s: float = DEFAULT_WINDOW_S, min_samples: int = MIN_SAMPLES
) -> list[S]:
    """The samples of the last ``window_s`` seconds, or the newest ``min_samples`` if the window has fewer;
    newest first, at most :data:`MAX_SAMPLES`."""
    ordered = sorted(samples, key=lambda s: s.at, reverse=True)
    inside = [s for s in ordered if now - s.at <= window_s]
    chosen = inside if len(inside) >= min_samples else ordered[:min_samples]
    return chosen[:MAX_SAMPLES]


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of ``values`` by linear interpolation (NumPy's default); ``nan`` if empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median(values: Sequence[float]) -> float:
    """The median of ``values`` (``nan`` if empty)."""
    return quantile(values, 0.5)


def robust_line(x: Sequence[float], y: Sequence[float]) -> tuple[float, float] | None:
    """Theil–Sen fit ``y = a + b·x``: ``b`` the median of pairwise slopes, ``a`` the median of ``y − b·x``.

    Robust to up to ~29 % outliers (Sen 1968). ``None`` when no two points differ in ``x``.
    """
    import numpy as np  # here, not at the top: the CLI imports this package and must start fast

    xs = np.asarray(x, dtype=float)
    ys = np.asarray(y, dtype=float)
    dx = np.subtract.outer(xs, xs)
    upper = np.triu(np.ones_like(dx, dtype=bool), k=1) & (np.abs(dx) > 0)
    if not upper.any():
        return None
    slopes = np.subtract.outer(ys, ys)[upper] / dx[upper]
    b = float(np.median(slopes))
    a = float(np.median(ys - b * xs))
    return a, b


@dataclass(frozen=True, slots=True)
class RunTimeEstimate:
    """How long an app runs at a site: ``seconds = intercept_s + seconds_per_byte · input_bytes``, or
    ``median_s`` when the job's size is unknown or sizes did not matter; ``spread`` = p95 / median."""

    median_s: float
    spread: float = 1.5
    intercept_s: float = 0.0
    seconds_per_byte: float = 0.0
    samples: int = 0
    source: Source = "prior"
    size_parameter: str | None = None
    """When set, the size is this numeric job parameter (``seconds_per_byte`` is then per unit of it)
    rather than the input bytes."""

    @property
    def p95_s(self) -> float:
        """The 95th percentile of a typical run."""
        return self.median_s * self.spread

    @property
    def scales_with_size(self) -> bool:
        """Whether predictions depend on the input size."""
        return self.seconds_per_byte > 0

    def predict(self, input_bytes: float | None) -> float:
        """The median run time of a job with ``input_bytes`` of input (``None``: size unknown); with a
        :attr:`size_parameter`, ``input_bytes`` is that parameter's value (see :meth:`job_size`)."""
        if input_bytes is None or self.seconds_per_byte <= 0:
            return self.median_s
        return max(self.intercept_s + self.seconds_per_byte * input_bytes, 0.05 * self.median_s, 1e-3)

    def job_size(self, parameters: Mapping[str, Any], input_bytes: float | None) -> float | None:
        """The size this model scales by for a job: its :attr:`size_parameter` when the model has one
        (``None`` if the job lacks it or it is not a number), else its input bytes."""
        if self.size_parameter is None:
            return input_bytes
        value = parameters.get(self.size_parameter)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return None
        return float(value)


def prior_run_time(seconds: float, spread: float = 1.5) -> RunTimeEstimate:
    """A run-time estimate from configuration alone."""
    return RunTimeEstimate(median_s=seconds, spread=spread, source="prior")


def _size_fit(sizes: Sequence[float], seconds: Sequence[float]) -> tuple[float, float]:
    """``(intercept, per_unit)`` of run time against size: a Theil–Sen line where sizes vary by at least
    20 %, proportional scaling where they do not; ``(0, 0)`` when the line does not rise."""
    if max(sizes) >= 1.2 * min(sizes):
        line = robust_line(sizes, seconds)
        if line is not None and line[1] > 0:
            return line
        return 0.0, 0.0
    return 0.0, median(seconds) / median(sizes)


MIN_PARAMETER_GAIN = 0.3
"""A numeric parameter becomes the size only if its line cuts the run times' median absolute deviation
by at least this share (so a parameter unrelated to the work is never taken for its size)."""


def _parameter_size(rows: Sequence[RunSample], mid: float) -> tuple[str, float, float] | None:
    """The numeric parameter that explains the run times best: ``(name, intercept, per_unit)``.

    Candidates are the parameters every sample has, positive and varying by at least 20 %; each gets a
    Theil–Sen line, and the one with the smallest median absolute residual wins if that is at most
    ``1 − MIN_PARAMETER_GAIN`` of the run times' own median absolute deviation."""
    if len(rows) < 3:
        return None
    names = set(dict(rows[0].parameters))
    for row in rows[1:]:
        names &= set(dict(row.parameters))
    spread = median([abs(s.seconds - mid) for s in rows])
    best: tuple[float, str, float, float] | None = None
    for name in sorted(names):
        sizes = [dict(s.parameters)[name] for s in rows]
        if min(sizes) <= 0 or max(sizes) < 1.2 * min(sizes):
            continue
        line = robust_line(sizes, [s.seconds for s in rows])
        if line is None or line[1] <= 0:
            continue
        residual = median([abs(s.seconds - line[0] - line[1] * x) for s, x in zip(rows, sizes, strict=True)])
        if residual <= (1 - MIN_PARAMETER_GAIN) * spread and (best is None or residual < best[0]):
            best = (residual, name, line[0], line[1])
    return None if best is None else (best[1], best[2], best[3])


def estimate_run_time(
    samples: Sequence[RunSample],
    now: float,
    *,
    prior_s: float,
    prior_spread: float = 1.5,
    window_s: float = DEFAULT_WINDOW_S,
    min_samples: int = MIN_SAMPLES,
) -> RunTimeEstimate:
    """The run-time model of one app at one site from its recent runs (see the module docstring)."""
    rows = [s for s in recent(samples, now, window_s, min_samples) if s.seconds >= 0]
    if not rows:
        return prior_run_time(prior_s, prior_spread)
    seconds = [s.seconds for s in rows]
    mid = median(seconds)
    sized = [s for s in rows if s.input_bytes is not None and s.input_bytes > 0]
    intercept, per_unit, parameter = 0.0, 0.0, None
    sizes: list[float] = []
    if len(sized) >= 3:
        sizes = [float(s.input_bytes or 0.0) for s in sized]
        intercept, per_unit = _size_fit(sizes, [s.seconds for s in sized])
    elif not sized:
        found = _parameter_size(rows, mid)
        if found is not None:
            parameter, intercept, per_unit = found
            sized = rows
            sizes = [dict(s.parameters)[parameter] for s in rows]
    if per_unit > 0:
        ratios = [s.seconds / max(intercept + per_unit * x, 1e-9) for s, x in zip(sized, sizes, strict=True)]
    else:
        ratios = [x / mid for x in seconds] if mid > 0 else [1.0]
    spread = max(1.0, quantile(ratios, 0.95) / max(median(ratios), 1e-9)) if len(rows) >= 3 else prior_spread
    return RunTimeEstimate(
        mid, spread, intercept, per_unit, len(rows), "history", parameter if per_unit > 0 else None
    )


@dataclass(frozen=True, slots=True)
class QueueWaitEstimate:
    """How long a pilot waits in one batch queue; ``finished`` holds the observed waits, sorted."""

    median_s: float
    p95_s: float
    finished: tuple[float, ...] = ()
    still_queued: int = 0
    source: Source = "prior"

    def remaining(self, age_s: float) -> float:
        """Expected further wait of a pilot already queued for ``age_s``: the median of the observed
        waits longer than that, less its age; past every observed wait, as long again as it has waited."""
        start = bisect.bisect_right(self.finished, age_s)
        longer = self.finished[start:]
        if longer:
            return longer[len(longer) // 2] - age_s
        return max(self.median_s - age_s, age_s)


def prior_queue_wait(seconds: float) -> QueueWaitEstimate:
    """A queue-wait estimate from configuration alone (p95 taken as three times the median)."""
    return QueueWaitEstimate(median_s=seconds, p95_s=3 * seconds, source="prior")


def kaplan_meier_quantile(events: Sequence[float], censored: Sequence[float], q: float) -> float | None:
    """The time by which a fraction ``q`` of waits have ended (Kaplan–Meier), counting ``censored``
    waits as "at least this long"; ``None`` when the curve never reaches ``q`` (too much censoring)."""
    marks = sorted([(t, 1) for t in events] + [(t, 0) for t in censored])
    at_risk = len(marks)
    survival = 1.0
    i = 0
    while i < len(marks):
        t = marks[i][0]
        ended = 0
        leaving = 0
        while i < len(marks) and marks[i][0] == t:
            ended += marks[i][1]
            leaving += 1
            i += 1
        if ended:
            survival *= 1 - ended / at_risk
            if 1 - survival >= q - 1e-12:
                return t
        at_risk -= leaving
    return None


def estimate_queue_wait(
    samples: Sequence[QueueWaitSample],
    now: float,
    *,
    prior_s: float,
    still_queued_ages: Sequence[float] = (),
    window_s: float = 7 * 24 * 3600.0,
    min_samples: int = MIN_SAMPLES,
) -> QueueWaitEstimate:
    """The queue-wait model of one (site, queue) from recent pilot waits and the pilots still queued."""
    rows = recent(samples, now, window_s, min_samples)
    waits = sorted(max(s.seconds, 0.0) for s in rows)
    ages = [max(a, 0.0) for a in still_queued_ages]
    if not waits and not ages:
        return prior_queue_wait(prior_s)
    longest = max([*waits, *ages])
    mid = kaplan_meier_quantile(waits, ages, 0.5)
    p95 = kaplan_meier_quantile(waits, ages, 0.95)
    if mid is None:  # most pilots are still waiting: the wait is at least the longest seen, or the prior
        mid = max(longest, prior_s)
    if p95 is None:
        p95 = max(mid, longest, 3 * prior_s if not waits else longest)
    return QueueWaitEstimate(mid, max(p95, mid), tuple(waits), len(ages), "history")


@dataclass(frozen=True, slots=True)
class TransferEstimate:
    """A route's transfer model: ``seconds = overhead_s + bytes / rate_bps`` (bytes per second)."""

    rate_bps: float
    overhead_s: float
    failure_rate: float = 0.0
    samples: int = 0
    source: Source = "prior"

    def __post_init__(self) -> None:
        if not self.rate_bps > 0 or not self.overhead_s >= 0:
            raise ValueError(f"a transfer estimate needs rate_bps > 0 and overhead_s >= 0, got {self}")

    def seconds(self, nbytes: float) -> float:
        """Predicted duration of one task moving ``nbytes``."""
        return self.overhead_s + nbytes / self.rate_bps


def prior_transfer(rate_bps: float, overhead_s: float) -> TransferEstimate:
    """A transfer estimate from configuration alone."""
    return TransferEstimate(rate_bps=rate_bps, overhead_s=overhead_s, source="prior")


def failure_rate(samples: Sequence[TransferSample], now: float, window_s: float = 3600.0) -> tuple[int, int]:
    """``(failed, total)`` transfer tasks that ended in the last ``window_s`` seconds."""
    inside = [s for s in samples if now - s.at <= window_s]
    return sum(not s.ok for s in inside), len(inside)


def estimate_transfer(
    samples: Sequence[TransferSample],
    now: float,
    *,
    prior_rate_bps: float,
    prior_overhead_s: float,
    window_s: float = DEFAULT_WINDOW_S,
    min_samples: int = MIN_SAMPLES,
) -> TransferEstimate:
    """The transfer model of one route from its recent tasks.

    With sizes spread at least 2× apart, a Theil–Sen line over (bytes, seconds) gives the overhead
    (intercept) and the rate (1 / slope); otherwise the configured overhead stays and the rate is the
    median of ``bytes / (seconds − overhead)``.
    """
    failed, total = failure_rate(samples, now, window_s)
    fail = failed / total if total else 0.0
    ok = [s for s in recent([s for s in samples if s.ok], now, window_s, min_samples) if s.bytes > 0]
    if not ok:
        return TransferEstimate(prior_rate_bps, prior_overhead_s, fail, 0, "prior")
    sizes = [s.bytes for s in ok]
    if len(ok) >= 3 and max(sizes) >= 2 * min(sizes):
        line = robust_line(sizes, [s.seconds for s in ok])
        if line is not None and line[1] > 0:
            overhead = min(max(line[0], 0.0), min(s.seconds for s in ok))
            return TransferEstimate(1.0 / line[1], overhead, fail, len(ok), "history")
    overhead = min(prior_overhead_s, 0.5 * min(s.seconds for s in ok))
    rate = median([s.bytes / max(s.seconds - overhead, 1e-6) for s in ok])
    return TransferEstimate(rate, overhead, fail, len(ok), "history")


def completions_per_s(end_times: Sequence[float], now: float, window_s: float = 900.0) -> float:
    """Runs finished per second over the last ``window_s`` seconds (a site's measured rate)."""
    return sum(1 for t in end_times if 0 <= now - t <= window_s) / window_s
