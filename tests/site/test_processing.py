"""The processing service's worker threads, without an agent: what ``close`` does with hooks in hand."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

from beambridge.site.services import processing
from beambridge.states import JobState


def service(threads: int) -> processing.Processing:
    config = SimpleNamespace(
        periods=SimpleNamespace(processing=0.1),
        processing_threads=threads,
        hook_timeout_s=600,
        shutdown_grace_s=0.2,
    )
    return processing.Processing(client=SimpleNamespace(), site=None, config=config, apps=None)


def hand(svc: processing.Processing, *job_ids: int) -> list[processing._Hook]:
    hooks = [processing._Hook(SimpleNamespace(id=i, state=JobState.RUN_DONE), object) for i in job_ids]
    for hook in hooks:
        svc.hooks[hook.job.id] = hook
        svc._queue.put(hook)
    return hooks


def test_close_runs_no_queued_hook_and_leaves_its_job_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopping the agent while hooks wait for a thread: none of them starts afterwards (their jobs keep
    their state and the next agent runs them), while the one running may finish."""
    gate = threading.Event()
    ran: list[int] = []

    def run_hook(app: Any, job: Any, site: Any) -> dict[str, Any]:
        ran.append(job.id)
        if job.id == 1:
            gate.wait(10)
        return {"id": job.id, "state": JobState.POSTPROCESSED.value}

    monkeypatch.setattr(processing, "run_hook", run_hook)
    svc = service(threads=1)
    first, *queued = hand(svc, 1, 2, 3)
    deadline = time.monotonic() + 10
    while ran != [1]:
        assert time.monotonic() < deadline, ran
        time.sleep(0.01)
    svc.close(wait=False)
    gate.set()
    assert first.done.wait(5)
    time.sleep(0.3)  # a worker that took a dropped hook would have started it by now
    assert ran == [1]
    assert all(hook.started is None and hook.abandoned for hook in queued)
    assert list(svc.hooks) == [1]  # in hand until its outcome is collected
