"""Uploading a run's result artifacts before its RUN_DONE report, off the launcher's main loop."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from beambridge.apps.artifacts import collect_artifacts
from beambridge.client import Client
from beambridge.client.errors import BeambridgeError
from beambridge.logs import get_logger

log = get_logger(__name__)

Then = Callable[[dict[str, Any]], None]
"""Called with what happened to the artifacts (``{"uploaded": [...], "refused": {name: why}}``)."""


def upload_artifacts(client: Client, job_id: int, workdir: Path) -> dict[str, Any]:
    """Upload what the run saved; a summary for the RUN_DONE event (refusals never fail the job)."""
    collected = collect_artifacts(workdir)
    uploaded: list[str] = []
    refused = dict(collected.refused)
    for name, artifact in collected.ready.items():
        try:
            client.jobs.put_artifact(job_id, name, artifact)
            uploaded.append(name)
        except BeambridgeError as exc:
            refused[name] = str(getattr(exc, "detail", None) or exc)[:300]
    for name, why in refused.items():
        log.warning("artifact_refused", job_id=job_id, artifact=name, reason=why)
    return {"uploaded": uploaded, "refused": refused}


class ArtifactUploader:
    """A thread that uploads artifacts in the order runs end, then calls back to report the run."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._queue: queue.Queue[tuple[int, Path, Then] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="artifacts", daemon=True)
        self._started = False

    def submit(self, job_id: int, workdir: Path, then: Then) -> None:
        if not self._started:
            self._started = True
            self._thread.start()
        self._queue.put((job_id, workdir, then))

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            job_id, workdir, then = item
            try:
                outcome = upload_artifacts(self.client, job_id, workdir)
            except Exception as exc:  # the run's report must go out whatever happened here
                log.warning("artifact_upload_failed", job_id=job_id, error=exc)
                outcome = {"uploaded": [], "refused": {"*": f"upload failed: {exc}"[:300]}}
            then(outcome)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Finish the queued uploads (their reports go out), then end the thread."""
        if self._started:
            self._queue.put(None)
            self._thread.join(timeout=timeout_s)
