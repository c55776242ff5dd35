"""The workflow monitor: the change detector runs or skips held steps, and alerts reach a real webhook."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from beambridge.beamline.alerts import Webhooks
from beambridge.beamline.monitor import AlertLimits, WorkflowMonitor
from beambridge.client import Client
from beambridge.schemas.workflows import Workflow
from tests.conftest import PASSWORD, ApiUser
from tests.servers import LiveServer

WORKFLOW = {
    "name": "xpcs",
    "steps": [
        {"name": "quick", "app": "echo", "quick_look": True, "priority": 10},
        {"name": "full", "app": "echo", "after": ["quick"], "skip_unless_changed": True},
    ],
    "change_detection": {"features": ["features.D"], "warmup": 3},
}


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A webhook receiver on 127.0.0.1 that keeps what it is sent."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()
    server.server_close()


@pytest.fixture
def client(live_server: LiveServer, alice: ApiUser) -> Iterator[Client]:
    with Client.login(live_server.url, alice.name, PASSWORD) as made:
        site = made.sites.create("polaris")
        made.apps.create(site.id, "echo")
        made.workflows.put(WORKFLOW)
        yield made


def finish_quick(client: Client, session_id: int, job_id: int, diffusion: float | None) -> None:
    result = None if diffusion is None else {"features": {"D": diffusion}}
    client.sessions.report(session_id, [{"id": job_id, "state": "RUNNING"}])
    client.sessions.report(
        session_id, [{"id": job_id, "state": "RUN_DONE", "return_code": 0, "result": result}]
    )


def test_held_steps_follow_the_detector_and_changes_raise_alerts(
    client: Client, receiver: tuple[str, list[dict[str, Any]]]
) -> None:
    url, received = receiver
    site = next(iter(client.sites.all()))
    session = client.sessions.open(site.id)
    series = [2.0e6, 2.02e6, 1.98e6, 2.0e6, 2.01e6, 4.0e6]
    subs = []
    for i, diffusion in enumerate(series):
        sub = client.submissions.submit("xpcs", key=f"run-{i}", dataset=f"/d/s{i}.h5").submission
        [job] = client.sessions.acquire(session.id, max_jobs=1)
        finish_quick(client, session.id, job.id, diffusion)
        subs.append(sub)
    monitor = WorkflowMonitor(client, Workflow.model_validate(WORKFLOW), hooks=Webhooks([url]))
    monitor.check()
    assert [d for _, d in monitor.decisions] == ["run", "run", "skip", "skip", "skip", "run"]
    states = [client.submissions.get(s.id).steps["full"] for s in subs]
    assert [s.status.value for s in states] == ["submitted"] * 2 + ["skipped"] * 3 + ["submitted"]
    assert states[3].reason == "no change since the previous datasets"
    assert states[5].reason == "change in features.D"
    [alert] = received
    assert alert["kind"] == "change_detected" and alert["data"]["dataset"] == "/d/s5.h5"
    kinds = [e.kind for e in client.beamline_events.list(workflow="xpcs")]
    assert kinds.count("change.detected") == 1 and kinds.count("step.skipped") == 3

    # A skip is reversible: the operator runs the skipped step after all.
    again = client.submissions.decide(subs[3].id, "full", "run", reason="operator")
    assert again.steps["full"].status.value == "submitted"

    # A restarted monitor rebuilds its baseline from the decided submissions and judges the next one.
    fresh = WorkflowMonitor(client, Workflow.model_validate(WORKFLOW), hooks=Webhooks([url]))
    fresh.replay()
    sub = client.submissions.submit("xpcs", key="run-next", dataset="/d/next.h5").submission
    jobs = client.sessions.acquire(session.id, max_jobs=10)
    quick = next(j for j in jobs if j.id == sub.steps["quick"].job_id)
    finish_quick(client, session.id, quick.id, 4.02e6)
    fresh.check()
    assert fresh.decisions == [(sub.id, "run")]  # still learning the new level: never skipped blind


def test_late_feedback_failures_and_silent_sites_raise_alerts(
    client: Client, receiver: tuple[str, list[dict[str, Any]]]
) -> None:
    url, received = receiver
    site = next(iter(client.sites.all()))
    client.sites.heartbeat(site.id)
    closed = datetime.now(UTC) - timedelta(seconds=60)
    session = client.sessions.open(site.id)
    spec = Workflow.model_validate(WORKFLOW)
    spec.steps[0].retry_limit = 0  # an error fails the quick look at once
    client.workflows.put(spec)
    for i in range(3):
        client.submissions.submit("xpcs", key=f"f{i}", dataset=f"/d/f{i}.h5")
    for job in client.sessions.acquire(session.id, max_jobs=3):
        for state in ("RUNNING", "RUN_ERROR"):
            client.sessions.report(session.id, [{"id": job.id, "state": state}])
    client.submissions.submit("xpcs", key="late", dataset="/d/late.h5", closed_at=closed)
    limits = AlertLimits(failures=3, first_feedback_s=30, site_silent_s=0.0)
    monitor = WorkflowMonitor(client, spec, hooks=Webhooks([url]), limits=limits)
    monitor.check()
    kinds = sorted(alert["kind"] for alert in received)
    assert kinds == ["failure_burst", "late_first_feedback", "site_down"], received
    monitor.check()
    assert len(received) == 3  # the same alert is not sent again within its quiet time


def test_a_quick_look_that_takes_much_longer_is_flagged(
    client: Client, receiver: tuple[str, list[dict[str, Any]]]
) -> None:
    import time

    url, received = receiver
    spec = Workflow.model_validate(
        {"name": "timed", "steps": [{"name": "quick", "app": "echo", "quick_look": True}]}
    )
    client.workflows.put(spec)
    site = next(iter(client.sites.all()))
    session = client.sessions.open(site.id)
    monitor = WorkflowMonitor(client, spec, hooks=Webhooks([url]))
    for i in range(12):
        sub = client.submissions.submit("timed", key=f"t{i}", dataset=f"/d/t{i}.h5").submission
        [job] = client.sessions.acquire(session.id, max_jobs=1)
        client.sessions.report(session.id, [{"id": job.id, "state": "RUNNING"}])
        time.sleep(4.0 if i == 11 else 0.3)
        client.sessions.report(session.id, [{"id": job.id, "state": "RUN_DONE", "return_code": 0}])
        monitor.check()
        if i < 11:
            assert received == [], f"dataset {i} flagged"
    [alert] = received
    assert alert["kind"] == "timing_changed" and "run_s" in alert["data"]["timings"]
    assert alert["data"]["submission_id"] == sub.id and alert["data"]["timings"]["run_s"] >= 4.0
    [event] = [e for e in client.beamline_events.list(workflow="timed") if e.kind == "timing.changed"]
    assert event.submission_id == sub.id
