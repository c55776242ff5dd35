"""The figures a beamline cares about: seconds from file closed to the first and to the full result."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence

from beambridge.schemas.workflows import Submission


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation between the closest ranks."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def describe(values: Sequence[float]) -> str:
    """``median 1.2 s, p95 3.4 s (n=20)``, or ``none yet``."""
    if not values:
        return "none yet"
    return f"median {statistics.median(values):.2f} s, p95 {percentile(values, 95):.2f} s (n={len(values)})"


def latency_summary(submissions: Iterable[Submission]) -> str:
    """Two lines: the first-result and full-result latencies of ``submissions``."""
    items = list(submissions)
    first = [s.first_result_s for s in items if s.first_result_s is not None]
    full = [s.full_result_s for s in items if s.full_result_s is not None]
    return f"first result: {describe(first)}\nfull result:  {describe(full)}"
