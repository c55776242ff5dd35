"""Following a workflow's submissions: the change detector decides held steps, and alerts go out.

Each cycle (:meth:`WorkflowMonitor.check`):

- **change detection** — submissions are taken in order; once a submission's quick look has finished,
  its result's features feed the detector. Held ``skip_unless_changed`` steps are then **run** if the
  dataset shows a change (or the baseline is still being learnt: never skip on missing information) and
  **skipped** otherwise (or when the quick look failed, since they run after it). Both are recorded by the service (and reversible);
  a change also records a ``change.detected`` event and raises an alert.
- **the workflow's own timings** — once a quick look has finished, its queue wait (created → running),
  its run time (running → done) and the time from the file closed to that first result feed a second
  detector (Page-Hinkley in log space, noise floor 25 %): a run that suddenly takes much longer — one
  about 5× the usual, or a lasting doubling within a few datasets (a slow file system, a site in trouble,
  a bad node) — records a ``timing.changed`` event and raises an alert.
- **alerts** — a burst of failed jobs in the workflow, a site whose agent went silent, a submission
  whose first result is later than the configured limit.

The detector's state is rebuilt on start from the submissions already decided (their quick-look
results, in order), so a restarted monitor decides the next dataset as the previous one would have.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from beambridge.beamline.alerts import Webhooks
from beambridge.beamline.changes import FeatureWatch
from beambridge.client import Client
from beambridge.client.errors import BeambridgeError
from beambridge.schemas.jobs import Job
from beambridge.schemas.workflows import StepStatus, Submission, Workflow
from beambridge.states import JobState

log = logging.getLogger("beambridge.beamline.monitor")


@dataclass
class AlertLimits:
    """When to alert."""

    failures: int = 3
    failure_window_s: float = 600.0
    site_silent_s: float = 120.0
    first_feedback_s: float = 30.0


TIMINGS = ("queue_wait_s", "run_s", "first_result_s")
"""The quick look's timings the monitor follows."""


TIMING_OFFSET_S = 0.1
"""Added to every timing before its logarithm: jitter of a few tens of milliseconds is no change."""


@dataclass
class TimingWatch:
    """The detector over the workflow's timings: only a large, lasting or abrupt slowdown is a change
    (log of seconds + 0.1, a 25 % noise floor, threshold 6 σ, 8 datasets to learn the baseline)."""

    watch: FeatureWatch = field(
        default_factory=lambda: FeatureWatch(
            list(TIMINGS), method="page_hinkley", threshold=6.0, warmup=8, log_floor=0.25
        )
    )

    def update(self, seconds: dict[str, float]) -> list[str]:
        """Feed one dataset's timings; the ones that changed."""
        return self.watch.update({k: v + TIMING_OFFSET_S for k, v in seconds.items() if v >= 0})


def quick_look_timings(client: Client, sub: Submission, quick: Job) -> dict[str, float]:
    """Seconds the quick look waited for a slot and ran (its last run), and from close to its result."""
    running = done = None
    for event in client.events.filter(job_id=quick.id):
        if event.to_state is JobState.RUNNING:
            running, done = event.timestamp, None
        elif event.to_state is JobState.RUN_DONE and running is not None:
            done = event.timestamp
    out: dict[str, float] = {}
    if running is not None:
        out["queue_wait_s"] = (running - quick.created_at).total_seconds()
        if done is not None:
            out["run_s"] = (done - running).total_seconds()
    fresh = client.submissions.get(sub.id)
    if fresh.first_result_s is not None and (fresh.closed_at is not None or not fresh.context.get("live")):
        out["first_result_s"] = fresh.first_result_s
    return out


@dataclass
class WorkflowMonitor:
    """Watches one workflow's submissions (see the module docstring)."""

    client: Client
    workflow: Workflow
    hooks: Webhooks = field(default_factory=lambda: Webhooks([]))
    limits: AlertLimits = field(default_factory=AlertLimits)
    detector: FeatureWatch | None = None
    timings: TimingWatch | None = field(default_factory=TimingWatch)
    """The detector over the quick look's timings (None: not followed)."""
    _cursor: int = 0
    _pending: deque[Submission] = field(default_factory=deque)
    _late_alerted: set[int] = field(default_factory=set)
    _failures: deque[tuple[datetime, int]] = field(default_factory=deque)
    _failed_seen: set[int] = field(default_factory=set)
    decisions: list[tuple[int, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        spec = self.workflow.change_detection
        if spec is not None and self.detector is None:
            self.detector = FeatureWatch(
                list(spec.features),
                method=spec.method,
                threshold=spec.threshold,
                hazard=spec.hazard,
                warmup=spec.warmup,
            )
        self._quick = next((s.name for s in self.workflow.steps if s.quick_look), self.workflow.steps[0].name)

    def run(self, stop: threading.Event, every_s: float = 0.5) -> None:
        """Check every ``every_s`` until ``stop`` is set."""
        while not stop.is_set():
            try:
                self.check()
            except BeambridgeError as err:
                log.warning("event=monitor_failed error=%s", err)
            stop.wait(every_s)

    def check(self) -> None:
        """One cycle: new submissions, decisions, alerts."""
        for sub in self.client.submissions.list(workflow=self.workflow.name, after=self._cursor):
            self._cursor = sub.id
            self._pending.append(sub)
        self._decide()
        self._alert_failures()
        self._alert_sites()

    # -- change detection ------------------------------------------------------------------------------

    def _decide(self) -> None:
        while self._pending:
            sub = self._pending[0]
            quick_id = sub.steps[self._quick].job_id if self._quick in sub.steps else None
            quick = self.client.jobs.get(quick_id) if quick_id else None
            if quick is not None and quick.state not in (
                JobState.JOB_FINISHED,
                JobState.FAILED,
                JobState.KILLED,
            ):
                self._late(sub)
                return  # in order: the next dataset waits for this one's quick look
            held = [name for name, step in sub.steps.items() if step.status is StepStatus.HELD]
            changed: list[str] = []
            learning = True
            if quick is not None and quick.state is JobState.JOB_FINISHED and self.detector is not None:
                changed = self.detector.update(quick.result)
                learning = self.detector.learning and not changed
            if quick is not None and quick.state is JobState.JOB_FINISHED and self.timings is not None:
                self._follow_timings(sub, quick)
            if changed:
                self.client.beamline_events.record(
                    "change.detected",
                    dataset=sub.dataset,
                    workflow=self.workflow.name,
                    submission_id=sub.id,
                    data={"features": changed},
                )
                self.hooks.alert(
                    "change_detected",
                    self.workflow.name,
                    f"{sub.dataset}: change in {', '.join(changed)} (workflow {self.workflow.name})",
                    {"submission_id": sub.id, "features": changed, "dataset": sub.dataset},
                )
            for step in held:
                if quick is not None and quick.state is not JobState.JOB_FINISHED:
                    action, why = "skip", f"the quick look ended {quick.state.value}: nothing runs after it"
                elif changed:
                    action, why = "run", f"change in {', '.join(changed)}"
                elif learning or quick is None:
                    action, why = "run", "baseline still being learnt"
                else:
                    action, why = "skip", "no change since the previous datasets"
                self.client.submissions.decide(sub.id, step, action, reason=why)
                self.decisions.append((sub.id, action))
            self._pending.popleft()

    def _follow_timings(self, sub: Submission, quick: Job) -> None:
        assert self.timings is not None
        values = quick_look_timings(self.client, sub, quick)
        slower = self.timings.update(values)
        if not slower:
            return
        shown = ", ".join(f"{name} {values[name]:.2f} s" for name in slower)
        self.client.beamline_events.record(
            "timing.changed",
            dataset=sub.dataset,
            workflow=self.workflow.name,
            submission_id=sub.id,
            data={"timings": {name: values[name] for name in slower}},
        )
        self.hooks.alert(
            "timing_changed",
            self.workflow.name,
            f"{sub.dataset}: the workflow's timings changed ({shown}; workflow {self.workflow.name})",
            {"submission_id": sub.id, "timings": {name: values[name] for name in slower}},
        )

    def replay(self) -> None:
        """Warm the detectors with the submissions already decided (none held, quick look ended), oldest
        first; the monitor goes on from the first one that is not."""
        for sub in self.client.submissions.list(workflow=self.workflow.name):
            if any(step.status is StepStatus.HELD for step in sub.steps.values()):
                break
            step = sub.steps.get(self._quick)
            quick_id = step.job_id if step is not None else None
            job = self.client.jobs.get(quick_id) if quick_id else None
            if job is not None and job.state not in (JobState.JOB_FINISHED, JobState.FAILED, JobState.KILLED):
                break
            self._cursor = sub.id
            if job is not None and job.state is JobState.JOB_FINISHED:
                if self.detector is not None:
                    self.detector.update(job.result)
                if self.timings is not None:
                    self.timings.update(quick_look_timings(self.client, sub, job))

    # -- alerts ------------------------------------------------------------------------------------

    def _late(self, sub: Submission) -> None:
        if sub.id in self._late_alerted or sub.first_result_at is not None:
            return
        if sub.closed_at is None and sub.context.get("live"):
            return  # submitted while the detector still writes it: the clock starts when it closes
        start = sub.closed_at or sub.created_at
        waited = (datetime.now(UTC) - start).total_seconds()
        if waited > self.limits.first_feedback_s:
            self._late_alerted.add(sub.id)
            self.hooks.alert(
                "late_first_feedback",
                f"submission-{sub.id}",
                f"{sub.dataset}: no quick look {waited:.0f} s after the file closed "
                f"(limit {self.limits.first_feedback_s:.0f} s)",
                {"submission_id": sub.id, "waited_s": round(waited, 1)},
            )

    def _alert_failures(self) -> None:
        now = datetime.now(UTC)
        since = now - timedelta(seconds=self.limits.failure_window_s)
        failed = self.client.jobs.filter(
            state=JobState.FAILED, tags={"workflow": self.workflow.name}, created_after=since
        )
        for job in failed:
            if job.id not in self._failed_seen:
                self._failed_seen.add(job.id)
                self._failures.append((job.updated_at, job.id))
        while self._failures and self._failures[0][0] < since:
            self._failures.popleft()
        if len(self._failures) >= self.limits.failures:
            self.hooks.alert(
                "failure_burst",
                self.workflow.name,
                f"{len(self._failures)} jobs of workflow {self.workflow.name} failed in the last "
                f"{self.limits.failure_window_s / 60:.0f} min",
                {"job_ids": [job_id for _, job_id in self._failures]},
            )

    def _alert_sites(self) -> None:
        now = datetime.now(UTC)
        for site in self.client.sites.all():
            beat = site.last_heartbeat
            if beat is not None and (now - beat).total_seconds() > self.limits.site_silent_s:
                self.hooks.alert(
                    "site_down",
                    f"site-{site.id}",
                    f"site {site.name} has not been heard from for {(now - beat).total_seconds():.0f} s",
                    {"site_id": site.id, "last_heartbeat": beat.isoformat()},
                )
