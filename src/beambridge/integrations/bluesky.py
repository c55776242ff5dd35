"""Bluesky: a run that stops with ``exit_status == "success"`` is a dataset; submit it to a workflow.

Subscribe the callback to a RunEngine directly, or to a ``RemoteDispatcher`` that receives the documents
over 0MQ (or Kafka, with ``bluesky_kafka.RemoteDispatcher``), in a process beside the beamline's::

    from beambridge.client import Client
    from beambridge.integrations.bluesky import SubmitOnStop

    callback = SubmitOnStop(Client.from_saved(), "xpcs")
    RE.subscribe(callback)                       # or: dispatcher.subscribe(callback); dispatcher.start()

On ``stop`` with ``exit_status == "success"`` it submits the workflow with the idempotency key
``bluesky:<run start uid>`` (a document delivered twice, or a consumer restarted from an earlier offset,
submits once), the dataset named by the start document's ``data_path`` (or ``bluesky://<uid>``), the
template variables ``run`` (the start document), ``stop`` (the stop document) and ``metadata`` (the
start document's ``md`` or ``metadata`` dictionary, when it has one), and the latency clock started at
the stop document's ``time``. On ``abort`` or ``fail`` it records a beamline event (``run.abort`` /
``run.fail``, with the reason) and submits nothing.

A callback must never raise into the RunEngine: a failure to reach the service is logged and kept in
``errors``; the run itself goes on.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from beambridge.client import Client
from beambridge.client.errors import BeambridgeError
from beambridge.schemas.workflows import SubmissionAnswer, SubmissionSource

log = logging.getLogger("beambridge.integrations.bluesky")

DatasetNamer = Callable[[Mapping[str, Any], Mapping[str, Any]], str]


def default_dataset(start: Mapping[str, Any], stop: Mapping[str, Any]) -> str:
    """The start document's ``data_path``, else ``bluesky://<run start uid>``."""
    path = start.get("data_path")
    if isinstance(path, str) and path:
        return path
    return f"bluesky://{stop.get('run_start') or start.get('uid')}"


def as_json(document: Mapping[str, Any]) -> dict[str, Any]:
    """A document as plain JSON (numpy scalars and arrays, tuples, datetimes made JSON)."""

    def fallback(value: Any) -> Any:
        if hasattr(value, "tolist"):
            return value.tolist()
        if isinstance(value, set | frozenset):
            return sorted(value, key=str)
        return str(value)

    result: dict[str, Any] = json.loads(json.dumps(dict(document), default=fallback))
    return result


class SubmitOnStop:
    """A Bluesky callback ``(name, doc)`` that submits ``workflow`` for every successful run."""

    KEEP_STARTS = 1000

    def __init__(
        self,
        client: Client,
        workflow: str,
        *,
        dataset: DatasetNamer = default_dataset,
        key_prefix: str = "bluesky:",
    ) -> None:
        self.client = client
        self.workflow = workflow
        self.dataset = dataset
        self.key_prefix = key_prefix
        # The start documents of recent runs (kept after their stop: a replayed stop still finds its start).
        self._starts: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.answers: list[SubmissionAnswer] = []
        self.errors: list[str] = []

    def __call__(self, name: str, doc: Mapping[str, Any]) -> None:
        try:
            if name == "start":
                self._starts[str(doc["uid"])] = as_json(doc)
                while len(self._starts) > self.KEEP_STARTS:
                    self._starts.popitem(last=False)
            elif name == "stop":
                self._stopped(as_json(doc))
        except Exception as err:  # never into the RunEngine
            message = f"{type(err).__name__}: {err}"
            log.error("event=callback_failed document=%s error=%s", name, message)
            self.errors.append(message)

    def _stopped(self, stop: dict[str, Any]) -> None:
        uid = str(stop.get("run_start", ""))
        start = self._starts.get(uid, {"uid": uid})
        status = stop.get("exit_status")
        dataset = self.dataset(start, stop)
        if status != "success":
            self.client.beamline_events.record(
                f"run.{status if status in ('abort', 'fail') else 'unknown'}",
                dataset=dataset,
                workflow=self.workflow,
                data={
                    "run_start": uid,
                    "exit_status": str(status),
                    "reason": str(stop.get("reason", "")),
                    "plan_name": str(start.get("plan_name", "")),
                },
            )
            log.info("event=run_not_submitted run_start=%s exit_status=%s", uid, status)
            return
        metadata = start.get("md") or start.get("metadata") or {}
        stopped_at = stop.get("time")
        closed = datetime.fromtimestamp(float(stopped_at), UTC) if stopped_at else None
        try:
            answer = self.client.submissions.submit(
                self.workflow,
                key=f"{self.key_prefix}{uid}",
                dataset=dataset,
                context={
                    "run": start,
                    "stop": stop,
                    "metadata": metadata if isinstance(metadata, dict) else {},
                },
                closed_at=closed,
                source=SubmissionSource.BLUESKY,
            )
        except BeambridgeError as err:
            raise RuntimeError(f"run {uid} was not submitted: {err}") from err
        self.answers.append(answer)
        log.info(
            "event=submitted run_start=%s submission=%d created=%s",
            uid,
            answer.submission.id,
            answer.created,
        )
