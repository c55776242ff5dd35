"""Workflows, submissions and beamline events in the SDK (``client.workflows``, ``client.submissions``,
``client.beamline_events``).

::

    client.workflows.put(Workflow.model_validate(yaml.safe_load(text)))     # or load_workflow(path)
    answer = client.submissions.submit("xpcs", key=run_uid, dataset="/data/A001.h5",
                                       context={"metadata": {...}}, closed_at=closed)
    answer.created            # False when the key was seen before: answer.submission has its jobs
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from beambridge.client.transport import Transport
from beambridge.schemas.common import MAX_PAGE_SIZE
from beambridge.schemas.workflows import (
    BeamlineEvent,
    StepAction,
    Submission,
    SubmissionAnswer,
    SubmissionSource,
    Workflow,
    WorkflowOut,
)


def _pages(
    transport: Transport, path: str, params: dict[str, Any], limit: int | None, after: int | None = None
) -> Iterator[Any]:
    """Every item of a list route, page by page, after the id ``after``; at most ``limit``."""
    seen = 0
    while True:
        size = MAX_PAGE_SIZE if limit is None else min(MAX_PAGE_SIZE, limit - seen)
        if size <= 0:
            return
        query = {k: v for k, v in {**params, "after": after, "limit": size}.items() if v is not None}
        page = transport.request("GET", path, params=query)
        for item in page["items"]:
            yield item
            seen += 1
        after = page["next_after"]
        if after is None:
            return


class WorkflowManager:
    """Workflows stored in the service by name."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def put(self, workflow: Workflow | Mapping[str, Any]) -> WorkflowOut:
        """Store ``workflow`` under its name, replacing yours of that name."""
        spec = workflow if isinstance(workflow, Workflow) else Workflow.model_validate(workflow)
        body = self._transport.request("POST", "/workflows", json=spec.model_dump(mode="json"), retry=True)
        return WorkflowOut.model_validate(body)

    def list(self) -> list[WorkflowOut]:
        """Your workflows."""
        return [WorkflowOut.model_validate(item) for item in _pages(self._transport, "/workflows", {}, None)]

    def get(self, name: str) -> WorkflowOut | None:
        """Your workflow called ``name``, or None."""
        items = self._transport.request("GET", "/workflows", params={"name": name})["items"]
        return WorkflowOut.model_validate(items[0]) if items else None

    def delete(self, workflow_id: int) -> None:
        """Forget a workflow (its submissions and jobs stay)."""
        self._transport.request("DELETE", f"/workflows/{int(workflow_id)}")


class SubmissionManager:
    """Datasets through workflows, once per idempotency key."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def submit(
        self,
        workflow: str,
        *,
        key: str,
        dataset: str,
        context: Mapping[str, Any] | None = None,
        closed_at: datetime | None = None,
        source: SubmissionSource | str = SubmissionSource.SDK,
    ) -> SubmissionAnswer:
        """Run ``workflow`` on ``dataset`` once: a key seen before answers with the existing jobs.

        Safe to retry after any failure (the request is retried on connection errors for that reason).
        """
        body = {
            "workflow": workflow,
            "key": key,
            "dataset": dataset,
            "context": dict(context or {}),
            "source": str(source),
            "closed_at": closed_at.isoformat() if closed_at else None,
        }
        answer = self._transport.request("POST", "/submissions", json=body, retry=True)
        return SubmissionAnswer.model_validate(answer)

    def get(self, submission_id: int) -> Submission:
        """One submission with its latencies."""
        return Submission.model_validate(self._transport.request("GET", f"/submissions/{int(submission_id)}"))

    def by_key(self, key: str) -> Submission | None:
        """Your submission with idempotency key ``key``, or None."""
        items = self._transport.request("GET", "/submissions", params={"key": key})["items"]
        return Submission.model_validate(items[0]) if items else None

    def list(
        self, *, workflow: str | None = None, after: int | None = None, limit: int | None = None
    ) -> Iterator[Submission]:
        """Your submissions, oldest first (after the id ``after``; at most ``limit``)."""
        for item in _pages(self._transport, "/submissions", {"workflow": workflow}, limit, after):
            yield Submission.model_validate(item)

    def decide(self, submission_id: int, step: str, action: StepAction | str, reason: str = "") -> Submission:
        """Run or skip a held step (running a skipped step undoes the skip)."""
        body = {"action": str(action), "reason": reason}
        answer = self._transport.request(
            "POST", f"/submissions/{int(submission_id)}/steps/{step}", json=body, retry=True
        )
        return Submission.model_validate(answer)


class BeamlineEventManager:
    """What the beamline saw: runs aborted, changes detected, alerts sent, steps skipped."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def record(
        self,
        kind: str,
        *,
        dataset: str = "",
        workflow: str = "",
        submission_id: int | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> BeamlineEvent:
        """Record one event."""
        body = {
            "kind": kind,
            "dataset": dataset,
            "workflow": workflow,
            "submission_id": submission_id,
            "data": dict(data or {}),
        }
        return BeamlineEvent.model_validate(self._transport.request("POST", "/beamline-events", json=body))

    def list(
        self, *, kind: str | None = None, workflow: str | None = None, after: int | None = None
    ) -> Iterator[BeamlineEvent]:
        """Your beamline events, oldest first."""
        params = {"kind": kind, "workflow": workflow}
        for item in _pages(self._transport, "/beamline-events", params, None, after):
            yield BeamlineEvent.model_validate(item)
