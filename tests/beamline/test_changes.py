"""The change detectors on recorded sequences: a step change in D is flagged, stationary data is not."""

from __future__ import annotations

import numpy as np

from beambridge.beamline.changes import Bocpd, FeatureWatch, PageHinkley, feature_value


def sequence(n_before: int, n_after: int, step: float, noise: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    level = np.r_[np.zeros(n_before), np.full(n_after, step)]
    return np.log(2.0e6) + level + rng.normal(0, noise, n_before + n_after)


def delays_and_alarms(make, runs: int) -> tuple[list[int], list[int]]:  # type: ignore[no-untyped-def]
    """Detection delays after a doubling of D (noise 8 %), and false alarms per 500 stationary datasets."""
    delays, alarms = [], []
    for seed in range(runs):
        detector = make()
        values = sequence(40, 20, np.log(2.0), noise=0.08, seed=seed)
        after = [i - 40 for i, v in enumerate(values) if detector.update(float(v)) and i >= 40]
        delays.append(after[0] if after else 99)
        detector = make()
        alarms.append(sum(detector.update(float(v)) for v in sequence(500, 0, 0.0, 0.08, 1000 + seed)))
    return delays, alarms


def test_page_hinkley_flags_a_doubling_at_once_and_stays_quiet_on_stationary_data() -> None:
    delays, alarms = delays_and_alarms(PageHinkley, 50)
    assert max(delays) <= 2, delays  # at the change or at most two datasets later
    assert max(alarms) <= 1 and sum(alarms) <= 5, alarms


def test_bocpd_flags_a_doubling_within_three_and_rarely_alarms() -> None:
    delays, alarms = delays_and_alarms(Bocpd, 50)
    assert sum(d <= 3 for d in delays) >= 47, delays
    assert np.mean(alarms) <= 1.0, alarms


def test_heavy_tails_in_the_warmup_do_not_make_everything_a_change() -> None:
    detector = PageHinkley(warmup=5)
    for value in (1.0, 1.0, 1.0, 50.0, 1.0):  # one wild dataset while learning
        assert not detector.update(value)
    assert detector.update(1.0) is False and detector.update(3.0) is True


def test_feature_watch_follows_dotted_paths_in_log_space() -> None:
    watch = FeatureWatch(["features.D", "features.contrast"], warmup=3)
    for _ in range(3):
        assert watch.update({"features": {"D": 2e6, "contrast": 0.9}}) == []
    assert not watch.learning
    assert watch.update({"features": {"D": 2e6 * 1.001, "contrast": 0.9}}) == []
    assert watch.update({"features": {"D": 4e6, "contrast": 0.9}}) == ["features.D"]
    assert watch.learning  # a new level: learnt again before anything is called unchanged
    assert feature_value({"a": {"b": True}}, "a.b") is None and feature_value({"a": 1}, "a.b") is None
    assert feature_value({"a": float("nan")}, "a") is None


def test_the_timing_watch_flags_slowdowns_not_jitter() -> None:
    import numpy as np

    from beambridge.beamline.monitor import TimingWatch

    rng = np.random.default_rng(3)
    calm = TimingWatch()
    alarms = sum(bool(calm.update({"run_s": float(v)})) for v in np.exp(rng.normal(0.0, 0.15, 500)))
    assert alarms <= 1
    spike = TimingWatch()
    for v in np.exp(rng.normal(0.0, 0.15, 20)):
        assert spike.update({"run_s": float(v)}) == []
    assert spike.update({"run_s": 8.0}) == ["run_s"]  # one run eight times the usual
    lasting = TimingWatch()
    for v in np.exp(rng.normal(0.0, 0.15, 20)):
        lasting.update({"run_s": float(v)})
    flags = [bool(lasting.update({"run_s": 2.0 * float(v)})) for v in np.exp(rng.normal(0.0, 0.15, 10))]
    assert True in flags[:5]  # a lasting doubling within five datasets
