"""The agent's placement figures: scheduler-command failures counted through the site's adapter, timed
transfer tasks per location, and site.yml's priors — in the shape the service reads."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from beambridge.platform.schedulers import PilotRequest, PilotStatus, Scheduler
from beambridge.platform.schedulers.base import SchedulerUnavailable, SubmitRejected
from beambridge.schemas.placement import MAX_TRANSFER_SAMPLES, SiteFigures, SitePriors
from beambridge.site.config import SiteConfig
from beambridge.site.figures import CountedScheduler, PlacementFigures


class Flaky(Scheduler):
    """An adapter whose commands fail while ``down`` (no answer) or ``refuse`` (a definite no)."""

    name = "flaky"

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.refuse = False

    def submit(self, request: PilotRequest) -> str:
        if self.down:
            raise SchedulerUnavailable("sbatch: error: Slurm controller not responding")
        if self.refuse:
            raise SubmitRejected("sbatch: error: invalid partition specified: nope")
        return "1"

    def statuses(self, scheduler_ids: Sequence[str]) -> dict[str, PilotStatus]:
        if self.down:
            raise SchedulerUnavailable("squeue: error: timeout")
        return {}

    def cancel(self, scheduler_id: str) -> None:
        return None

    @staticmethod
    def allocation_nodes(environ: Mapping[str, str]) -> list[str] | None:
        return None


def request() -> PilotRequest:
    return PilotRequest(
        script=Path("p.sh"), job_name="bb1-1", num_nodes=1, wall_time_min=5, workdir=Path(".")
    )


def test_failures_in_a_row_are_counted_and_one_answer_resets_them() -> None:
    figures = PlacementFigures()
    inner = Flaky()
    scheduler = CountedScheduler(inner, figures)
    assert scheduler.name == "flaky"
    inner.down = True
    for _ in range(3):
        with pytest.raises(SchedulerUnavailable):
            scheduler.statuses(["1"])
    inner.down, inner.refuse = False, True
    with pytest.raises(SubmitRejected):
        scheduler.submit(request())
    report = SiteFigures.model_validate(figures.report())
    assert report.scheduler_failures == 4
    assert report.scheduler_error == "SubmitRejected: sbatch: error: invalid partition specified: nope"
    assert scheduler.statuses(["1"]) == {}
    assert SiteFigures.model_validate(figures.report()).scheduler_failures == 0


def test_transfer_tasks_are_kept_per_location_newest_only() -> None:
    figures = PlacementFigures()
    for n in range(MAX_TRANSFER_SAMPLES + 10):
        figures.transfer_done("aps_dtn", n * 1e6, 1.0 + n, ok=n % 7 != 0)
    figures.transfer_done("dtn", 5e6, 2.0, ok=True)
    report = SiteFigures.model_validate(figures.report())
    aps = report.transfers["aps_dtn"]
    assert len(aps) == MAX_TRANSFER_SAMPLES and aps[-1].bytes == (MAX_TRANSFER_SAMPLES + 9) * 1e6
    assert [m.bytes for m in report.transfers["dtn"]] == [5e6]


def test_site_yml_priors_are_validated_and_reported() -> None:
    base = {"name": "polaris", "server": "http://127.0.0.1:1", "site_id": 1}
    config = SiteConfig.model_validate(
        {**base, "placement": {"run_time_s": {"XpcsMultiTau": 95.0}, "queue_wait_s": 300}}
    )
    report = SiteFigures.model_validate(PlacementFigures(config.placement).report())
    assert report.priors == SitePriors(run_time_s={"XpcsMultiTau": 95.0}, queue_wait_s=300)
    for bad in ({"queue_wait_s": -1}, {"run_time_s": {"x": -3}}, {"transfer_rate_bps": 0}, {"wall": 1}):
        with pytest.raises(ValueError):
            SiteConfig.model_validate({**base, "placement": bad})


def test_the_elastic_queue_limits_are_reported() -> None:
    """The service counts a new pilot only where the site may still ask for one."""
    report = SiteFigures.model_validate(PlacementFigures(max_total_nodes=4, max_pilot_nodes=2).report())
    assert (report.max_total_nodes, report.max_pilot_nodes) == (4, 2)
    unknown = SiteFigures.model_validate(PlacementFigures().report())  # an older agent's report
    assert unknown.max_total_nodes is None and unknown.max_pilot_nodes is None
