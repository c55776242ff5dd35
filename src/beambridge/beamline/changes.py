"""Online change detection over per-dataset features: Page-Hinkley and Bayesian online change points.

``ruptures`` is offline only (it needs the whole signal); river's detectors pull in pandas and scipy for
a few lines of arithmetic. These are the two classic online tests, small enough to read:

- :class:`PageHinkley` (Page 1954; Hinkley 1971), two-sided: after a warm-up that sets the baseline
  (median and MAD, so one odd dataset does not poison it), the cumulative sums of the standardised
  deviations beyond an allowance ``delta`` are compared with their running extremes; a gap wider than
  ``threshold`` (in noise σ) is a change. The detector then re-learns the baseline from the new level.
- :class:`Bocpd` (Adams & MacKay 2007, arXiv:0710.3742) with a Gaussian of known noise (from the warm-up)
  and a normal prior on each segment's mean: the run-length posterior is updated per dataset; a change is
  flagged when most of the posterior mass sits on a run that started in the last ``window`` datasets.

Positive features (intensity, D) are followed in log space, so a change is relative (×2 is a change at
any scale). Every detector is fed one number per dataset and answers whether that dataset starts a
change.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


class Detector(Protocol):
    """One feature's online detector."""

    def update(self, value: float) -> bool:
        """Feed one dataset's value; True if a change is detected at it."""
        ...

    @property
    def learning(self) -> bool:
        """Whether it is (re)learning its baseline: no verdict of "unchanged" yet."""
        ...


def _robust_scale(values: Sequence[float], rel_floor: float, abs_floor: float) -> tuple[float, float]:
    arr = np.asarray(values, dtype=np.float64)
    centre = float(np.median(arr))
    mad = float(np.median(np.abs(arr - centre))) * 1.4826
    return centre, max(mad, rel_floor * abs(centre), abs_floor)


@dataclass
class PageHinkley:
    """Two-sided Page-Hinkley test on standardised values (see the module docstring)."""

    threshold: float = 8.0
    delta: float = 0.5
    warmup: int = 8
    rel_floor: float = 0.0
    abs_floor: float = 1e-9
    _warm: list[float] = field(default_factory=list)
    _centre: float = 0.0
    _scale: float = 1.0
    _up: float = 0.0
    _down: float = 0.0
    _n: int = 0
    _sum: float = 0.0
    _sum2: float = 0.0

    def _learn(self, z: float) -> None:
        """Refine the baseline with every dataset seen since it was set (clipped at ±3σ, so a change
        itself does not drag the baseline before it is flagged)."""
        if self._n == 0:
            self._n, self._sum = len(self._warm), float(np.sum(self._warm))
            self._sum2 = self._n * self._scale**2
        clipped = self._centre + max(-3.0, min(3.0, z)) * self._scale
        self._n += 1
        self._sum += clipped
        self._sum2 += (clipped - self._centre) ** 2
        floor = max(self.rel_floor * abs(self._centre), self.abs_floor)
        self._centre = self._sum / self._n
        self._scale = max(math.sqrt(self._sum2 / self._n), floor)

    @property
    def learning(self) -> bool:
        return len(self._warm) < self.warmup

    def update(self, value: float) -> bool:
        if len(self._warm) < self.warmup:
            self._warm.append(value)
            if len(self._warm) == self.warmup:
                self._centre, self._scale = _robust_scale(self._warm, self.rel_floor, self.abs_floor)
            return False
        z = (value - self._centre) / self._scale
        self._learn(z)
        self._up = max(0.0, self._up + z - self.delta)
        self._down = max(0.0, self._down - z - self.delta)
        if self._up > self.threshold or self._down > self.threshold:
            self._warm, self._up, self._down, self._n = [value], 0.0, 0.0, 0
            return True
        return False


@dataclass
class Bocpd:
    """Bayesian online change-point detection, Gaussian with known noise (see the module docstring)."""

    hazard: float = 1 / 1000
    warmup: int = 8
    window: int = 3
    probability: float = 0.9
    prior_scale: float = 10.0
    max_run: int = 500
    rel_floor: float = 0.0
    abs_floor: float = 1e-9
    _warm: list[float] = field(default_factory=list)
    _noise: float = 1.0
    _prior_mean: float = 0.0
    _log_r: np.ndarray = field(default_factory=lambda: np.zeros(1))
    _mean: np.ndarray = field(default_factory=lambda: np.zeros(1))
    _var: np.ndarray = field(default_factory=lambda: np.ones(1))
    _since: int = 0

    def _reset(self, centre: float) -> None:
        self._prior_mean = centre
        self._log_r = np.zeros(1)
        self._mean = np.array([centre])
        self._var = np.array([(self.prior_scale * self._noise) ** 2])
        self._since = 0

    @property
    def learning(self) -> bool:
        return len(self._warm) < self.warmup

    def update(self, value: float) -> bool:
        if len(self._warm) < self.warmup:
            self._warm.append(value)
            if len(self._warm) == self.warmup:
                centre, self._noise = _robust_scale(self._warm, self.rel_floor, self.abs_floor)
                self._reset(centre)
                # The warm-up belongs to the first run: start the posterior with a run of that length.
                for x in self._warm:
                    self._step(x)
            return False
        self._step(value)
        self._since += 1
        recent = float(np.exp(self._log_r[: self.window]).sum())
        if self._since > self.window and recent > self.probability:
            self._warm = [value]
            return True
        return False

    def _step(self, x: float) -> None:
        noise2 = self._noise**2
        pred_var = self._var + noise2
        log_pred = -0.5 * (np.log(2 * math.pi * pred_var) + (x - self._mean) ** 2 / pred_var)
        log_h, log_1h = math.log(self.hazard), math.log1p(-self.hazard)
        growth = self._log_r + log_pred + log_1h
        change = np.logaddexp.reduce(self._log_r + log_pred + log_h)
        log_r = np.concatenate([[change], growth])
        log_r -= np.logaddexp.reduce(log_r)
        # posterior of each run's mean (normal-normal update), then a fresh prior for the new run
        post_var = 1.0 / (1.0 / self._var + 1.0 / noise2)
        post_mean = post_var * (self._mean / self._var + x / noise2)
        prior_var = (self.prior_scale * self._noise) ** 2
        self._mean = np.concatenate([[self._prior_mean], post_mean])[: self.max_run]
        self._var = np.concatenate([[prior_var], post_var])[: self.max_run]
        self._log_r = log_r[: self.max_run]


def make_detector(
    method: str,
    *,
    threshold: float,
    hazard: float,
    warmup: int,
    rel_floor: float = 0.0,
    abs_floor: float = 1e-9,
) -> Detector:
    """A detector by name: ``page_hinkley`` or ``bocpd``; the noise scale is at least ``abs_floor`` and
    ``rel_floor`` × the baseline (identical datasets have no noise to measure)."""
    if method == "page_hinkley":
        return PageHinkley(threshold=threshold, warmup=warmup, rel_floor=rel_floor, abs_floor=abs_floor)
    if method == "bocpd":
        return Bocpd(hazard=hazard, warmup=warmup, rel_floor=rel_floor, abs_floor=abs_floor)
    raise ValueError(f"unknown change detection method {method!r} (page_hinkley or bocpd)")


def feature_value(result: object, path: str) -> float | None:
    """The number at dotted ``path`` in a job's result (``features.D``), or None."""
    node = result
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    if isinstance(node, bool) or not isinstance(node, int | float) or not math.isfinite(node):
        return None
    return float(node)


@dataclass
class FeatureWatch:
    """One detector per feature; positive features are followed in log space."""

    features: list[str]
    method: str = "page_hinkley"
    threshold: float = 8.0
    hazard: float = 1 / 250
    warmup: int = 5
    log_floor: float = 0.02
    """The least noise assumed of a positive feature, in log units (0.02: 2 %)."""
    detectors: dict[str, Detector] = field(default_factory=dict)
    seen: int = 0
    _log: dict[str, bool] = field(default_factory=dict)

    def update(self, result: object) -> list[str]:
        """Feed one dataset's result; the features in which it shows a change."""
        changed = []
        self.seen += 1
        for name in self.features:
            value = feature_value(result, name)
            if value is None:
                continue
            detector = self.detectors.get(name)
            if detector is None:
                # Positive features in log space with a noise floor of 2 % (relative); others with 2 % of
                # their baseline.
                self._log[name] = value > 0
                detector = self.detectors[name] = make_detector(
                    self.method,
                    threshold=self.threshold,
                    hazard=self.hazard,
                    warmup=self.warmup,
                    rel_floor=0.0 if value > 0 else 0.02,
                    abs_floor=self.log_floor if value > 0 else 1e-9,
                )
            if self._log[name]:
                if value <= 0:
                    continue
                value = math.log(value)
            if detector.update(value):
                changed.append(name)
        return changed

    @property
    def learning(self) -> bool:
        """Whether a baseline is still being (re)learnt: no dataset can be called unchanged yet."""
        return not self.detectors or any(d.learning for d in self.detectors.values())
