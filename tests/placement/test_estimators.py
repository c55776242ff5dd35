"""Estimators: medians, robust lines, Kaplan–Meier queue waits and transfer rates from recorded samples."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from beambridge.placement import (
    QueueWaitSample,
    RunSample,
    TransferSample,
    completions_per_s,
    estimate_queue_wait,
    estimate_run_time,
    estimate_transfer,
    failure_rate,
)
from beambridge.placement.estimators import kaplan_meier_quantile, quantile, recent, robust_line


@settings(deadline=None)
@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=50), st.floats(0, 1))
def test_quantile_matches_numpy(values: list[float], q: float) -> None:
    assert quantile(values, q) == pytest.approx(float(np.quantile(values, q)), rel=1e-9, abs=1e-6)


def test_quantile_of_nothing_is_nan() -> None:
    assert math.isnan(quantile([], 0.5))


def test_robust_line_ignores_outliers() -> None:
    xs = [float(x) for x in range(1, 21)]
    ys = [5 + 2 * x for x in xs]
    ys[3] = 500.0
    ys[11] = -300.0
    a, b = robust_line(xs, ys) or (0, 0)
    assert a == pytest.approx(5) and b == pytest.approx(2)
    assert robust_line([3.0, 3.0], [1.0, 2.0]) is None


def test_recent_keeps_the_window_or_the_newest() -> None:
    samples = [RunSample(10, at=t) for t in (0, 100, 900, 950, 990)]
    assert [s.at for s in recent(samples, now=1000, window_s=200, min_samples=2)] == [990, 950, 900]
    assert [s.at for s in recent(samples, now=1000, window_s=20, min_samples=2)] == [990, 950]


def test_run_time_without_history_is_the_prior() -> None:
    estimate = estimate_run_time([], now=0, prior_s=300, prior_spread=2)
    assert estimate.source == "prior" and estimate.median_s == 300 and estimate.p95_s == 600
    assert estimate.predict(5e9) == 300  # a prior does not scale


def test_run_time_scales_with_input_size() -> None:
    rng = random.Random(1)
    samples = [
        RunSample(20 + 1e-8 * size * rng.uniform(0.95, 1.05), at=i, input_bytes=size)
        for i, size in enumerate(rng.uniform(1e8, 2e9) for _ in range(30))
    ]
    estimate = estimate_run_time(samples, now=30, prior_s=999)
    assert estimate.source == "history" and estimate.scales_with_size
    assert estimate.predict(1e9) == pytest.approx(30, rel=0.05)
    assert estimate.predict(None) == estimate.median_s
    assert 1.0 <= estimate.spread < 1.2


def test_run_time_with_one_size_scales_proportionally() -> None:
    samples = [RunSample(100 + i, at=i, input_bytes=1e9) for i in range(5)]
    estimate = estimate_run_time(samples, now=5, prior_s=1)
    assert estimate.predict(2e9) == pytest.approx(204)
    unsized = estimate_run_time(
        [RunSample(100, at=0), RunSample(110, at=1), RunSample(90, at=2)], 3, prior_s=1
    )
    assert unsized.predict(5e9) == 100 and not unsized.scales_with_size


def test_kaplan_meier_without_censoring_is_the_lower_median() -> None:
    assert kaplan_meier_quantile([5, 1, 3, 2, 4], [], 0.5) == 3
    assert kaplan_meier_quantile([1, 2, 3, 4], [], 0.5) == 2


def test_pilots_still_queued_lengthen_the_wait() -> None:
    finished = [QueueWaitSample(60, at=t) for t in range(5)]
    quick = estimate_queue_wait(finished, now=10, prior_s=600)
    stuck = estimate_queue_wait(finished, now=10, prior_s=600, still_queued_ages=[3600] * 6)
    assert quick.median_s == 60
    assert stuck.median_s >= 3600 and stuck.still_queued == 6
    only_stuck = estimate_queue_wait([], now=10, prior_s=600, still_queued_ages=[7200])
    assert only_stuck.median_s == 7200 and only_stuck.p95_s >= 7200


def test_queue_wait_prior_and_remaining_wait() -> None:
    assert estimate_queue_wait([], now=0, prior_s=600).source == "prior"
    estimate = estimate_queue_wait(
        [QueueWaitSample(w, at=0) for w in (100, 200, 300, 400, 500)], 1, prior_s=1
    )
    assert estimate.remaining(0) == 300
    assert estimate.remaining(250) == 400 - 250  # median of the waits longer than 250
    assert estimate.remaining(1000) == 1000  # past every observed wait: as long again


def test_transfer_line_recovers_overhead_and_rate() -> None:
    samples = [
        TransferSample(size, 8 + size / 250e6, at=i) for i, size in enumerate([1e8, 5e8, 1e9, 5e9, 2e10])
    ]
    estimate = estimate_transfer(samples, now=5, prior_rate_bps=1, prior_overhead_s=1)
    assert estimate.overhead_s == pytest.approx(8) and estimate.rate_bps == pytest.approx(250e6)
    assert estimate.seconds(1e9) == pytest.approx(12)


def test_transfer_with_one_size_keeps_the_configured_overhead() -> None:
    samples = [TransferSample(1e9, 9.0, at=i) for i in range(4)]
    estimate = estimate_transfer(samples, now=4, prior_rate_bps=1, prior_overhead_s=4)
    assert estimate.overhead_s == 4 and estimate.rate_bps == pytest.approx(2e8)


def test_failures_are_counted_in_the_window() -> None:
    samples = [TransferSample(1, 1, at=t, ok=t % 2 == 0) for t in range(10)]
    assert failure_rate(samples, now=10, window_s=4) == (2, 4)
    estimate = estimate_transfer(samples, now=10, prior_rate_bps=1, prior_overhead_s=0.5, window_s=4)
    assert estimate.failure_rate == 0.5
    nothing_ok = estimate_transfer(
        [TransferSample(1, 1, at=0, ok=False)], 1, prior_rate_bps=7, prior_overhead_s=2
    )
    assert nothing_ok.source == "prior" and nothing_ok.rate_bps == 7 and nothing_ok.failure_rate == 1


def test_completions_per_second() -> None:
    assert completions_per_s([10, 20, 30, 950], now=1000, window_s=100) == pytest.approx(0.01)
