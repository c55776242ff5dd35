"""The SDK's workflows, submissions and beamline events, against the live service."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from beambridge.beamline.workflow_file import WorkflowFileError, parse_workflow
from beambridge.client import Client
from beambridge.client.errors import Conflict, NotFound
from tests.client.conftest import Launcher, Workspace

WORKFLOW = """
name: scan
steps:
  - {name: quick, app: echo, quick_look: true, priority: 10, parameters: {n: '{{ metadata.n }}'}}
  - {name: full, app: echo, after: [quick], skip_unless_changed: true}
change_detection: {features: [n]}
"""


def test_submit_repeat_decide_and_follow_latency(client: Client, ws: Workspace) -> None:
    stored = client.workflows.put(parse_workflow(WORKFLOW))
    assert client.workflows.get("scan") == stored and client.workflows.get("nope") is None
    closed = datetime.now(UTC)
    answer = client.submissions.submit(
        "scan", key="uid-1", dataset="/d/a.h5", context={"metadata": {"n": 5}}, closed_at=closed
    )
    assert answer.created and answer.submission.steps["full"].status == "held"
    repeat = client.submissions.submit("scan", key="uid-1", dataset="/d/a.h5", context={"metadata": {"n": 5}})
    assert not repeat.created and repeat.submission.id == answer.submission.id
    assert client.submissions.by_key("uid-1") is not None and client.submissions.by_key("uid-2") is None

    launcher = Launcher(client, ws.site.id, total=2)
    launcher.start()
    sub = client.submissions.decide(answer.submission.id, "full", "run", reason="looks new")
    assert sub.steps["full"].status == "submitted" and len(sub.job_ids) == 2
    client.jobs.wait(sub.job_ids, timeout=30)
    launcher.join(30)
    done = client.submissions.get(sub.id)
    assert done.full_result_s is not None and done.first_result_s is not None
    assert 0 < done.first_result_s <= done.full_result_s
    assert [e.kind for e in client.beamline_events.list()] == ["step.run"]
    with pytest.raises(Conflict, match="already runs"):
        client.submissions.decide(sub.id, "full", "skip")
    with pytest.raises(NotFound, match="workflow 'nope' not found"):
        client.submissions.submit("nope", key="k", dataset="d")


def test_workflow_file_errors_name_the_problem() -> None:
    with pytest.raises(WorkflowFileError, match="steps"):
        parse_workflow("name: x")
