"""What the agent measures for placement and sends with each heartbeat (``status.placement``, read by the
service's placement snapshot; the shape is :class:`beambridge.schemas.placement.SiteFigures`).

* scheduler commands (``sbatch``, ``squeue``, ``scancel``… through the site's adapter) that failed in a
  row, and the last one's message — a run of failures makes the site ``degraded``, then ``down``;
* the newest timed transfer tasks per location alias (bytes, seconds, ok) — the service fits the route's
  rate and per-task overhead from them;
* the priors of ``site.yml``'s ``placement:`` section — what to expect before there is any history;
* its elastic queue's limits (nodes queued and running, largest pilot), so the service counts only the
  pilots the site can still ask for.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from beambridge.platform.schedulers import PilotRequest, PilotStatus, Scheduler
from beambridge.platform.schedulers.base import SchedulerError
from beambridge.schemas.placement import MAX_TRANSFER_SAMPLES, SiteFigures, SitePriors, TransferMeasurement


class PlacementFigures:
    """The agent's measurements, shared by its services (thread-safe)."""

    def __init__(
        self,
        priors: SitePriors | None = None,
        max_total_nodes: int | None = None,
        max_pilot_nodes: int | None = None,
    ) -> None:
        self.priors = priors or SitePriors()
        self.max_total_nodes = max_total_nodes
        self.max_pilot_nodes = max_pilot_nodes
        self._lock = threading.Lock()
        self._failures = 0
        self._error = ""
        self._transfers: dict[str, deque[TransferMeasurement]] = {}

    def scheduler_ok(self) -> None:
        with self._lock:
            self._failures = 0
            self._error = ""

    def scheduler_failed(self, error: str) -> None:
        with self._lock:
            self._failures += 1
            self._error = error[-1000:]

    @property
    def scheduler_failures(self) -> int:
        with self._lock:
            return self._failures

    def transfer_done(self, location: str, nbytes: float, seconds: float, ok: bool) -> None:
        """One finished transfer task between ``location`` and this site."""
        sample = TransferMeasurement(bytes=max(nbytes, 0.0), seconds=max(seconds, 0.0), at=time.time(), ok=ok)
        with self._lock:
            self._transfers.setdefault(location, deque(maxlen=MAX_TRANSFER_SAMPLES)).append(sample)

    def report(self) -> dict[str, Any]:
        """The ``status.placement`` object."""
        with self._lock:
            figures = SiteFigures(
                scheduler_failures=self._failures,
                scheduler_error=self._error,
                transfers={location: list(samples) for location, samples in self._transfers.items()},
                priors=self.priors,
                max_total_nodes=self.max_total_nodes,
                max_pilot_nodes=self.max_pilot_nodes,
            )
        return figures.model_dump(mode="json", exclude_none=True)


class CountedScheduler(Scheduler):
    """The site's scheduler adapter, counting its commands' failures into :class:`PlacementFigures`: a
    :class:`SchedulerError` (no answer, or a refusal) counts one more in a row, any answer resets the run."""

    def __init__(self, inner: Scheduler, figures: PlacementFigures) -> None:
        super().__init__(inner.runner)
        self.inner = inner
        self.figures = figures
        self.name = inner.name  # type: ignore[misc]

    def _counted(self, call: Any, *args: Any) -> Any:
        try:
            result = call(*args)
        except SchedulerError as exc:
            self.figures.scheduler_failed(f"{type(exc).__name__}: {exc}")
            raise
        self.figures.scheduler_ok()
        return result

    def submit(self, request: PilotRequest) -> str:
        return self._counted(self.inner.submit, request)

    def statuses(self, scheduler_ids: Sequence[str]) -> dict[str, PilotStatus]:
        return self._counted(self.inner.statuses, scheduler_ids)

    def cancel(self, scheduler_id: str) -> None:
        self._counted(self.inner.cancel, scheduler_id)

    def find_by_name(self, job_name: str) -> list[str]:
        return self._counted(self.inner.find_by_name, job_name)

    def allocation_nodes(self, environ: Mapping[str, str]) -> list[str] | None:  # type: ignore[override]
        return self.inner.allocation_nodes(environ)
