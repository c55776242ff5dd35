"""The Bluesky callback with a real RunEngine and ophyd.sim detectors, directly and through 0MQ."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from bluesky import RunEngine
from bluesky import plan_stubs as bps
from bluesky.callbacks.zmq import Publisher, RemoteDispatcher
from bluesky.plans import count
from bluesky.utils import RunEngineInterrupted
from ophyd.sim import det

from beambridge.cli.demo_server import free_port
from beambridge.client import Client
from beambridge.integrations.bluesky import SubmitOnStop
from tests.conftest import PASSWORD, ApiUser
from tests.servers import LiveServer

WORKFLOW = {
    "name": "scan",
    "steps": [
        {
            "name": "quick",
            "app": "echo",
            "quick_look": True,
            "priority": 50,
            "parameters": {
                "label": "{{ run.plan_name }}:{{ metadata.sample }}:{{ stop.num_events.primary }}"
            },
        }
    ],
}


@pytest.fixture
def client(live_server: LiveServer, alice: ApiUser) -> Iterator[Client]:
    site = alice.site()
    alice.app(site["id"], "echo", parameters={"label": {}})
    with Client.login(live_server.url, alice.name, PASSWORD) as made:
        made.workflows.put(WORKFLOW)
        yield made


def test_a_successful_run_submits_once_and_failed_runs_are_recorded(client: Client) -> None:
    callback = SubmitOnStop(client, "scan")
    RE = RunEngine({})
    RE.subscribe(callback)
    [uid] = RE(count([det], num=3, md={"data_path": "/data/run1.h5", "md": {"sample": "silica"}}))
    assert callback.errors == [] and len(callback.answers) == 1
    sub = callback.answers[0].submission
    assert sub.key == f"bluesky:{uid}" and sub.dataset == "/data/run1.h5" and sub.source == "bluesky"
    assert sub.closed_at is not None
    job = client.jobs.get(sub.steps["quick"].job_id or 0)
    assert job.parameters["label"] == "count:silica:3"

    # The same documents again (a replayed stream, a restarted consumer): the same submission.
    replay = SubmitOnStop(client, "scan")
    documents: list[tuple[str, dict[str, Any]]] = []
    RE.subscribe(lambda name, doc: documents.append((name, doc)))
    RE(count([det], num=1, md={"md": {"sample": "latex"}}))
    assert [a.created for a in callback.answers] == [True, True]
    for name, doc in documents:
        replay(name, doc)
        replay(name, doc)
    assert [a.created for a in replay.answers] == [False, False]
    assert replay.answers[0].submission.id == callback.answers[1].submission.id

    def failing() -> Iterator[Any]:
        yield from bps.open_run()
        raise RuntimeError("the shutter jammed")

    with pytest.raises(RuntimeError, match="shutter"):
        RE(failing())

    def pausing() -> Iterator[Any]:
        yield from bps.open_run()
        yield from bps.pause()
        yield from bps.close_run()

    with pytest.raises(RunEngineInterrupted):
        RE(pausing())
    RE.abort(reason="sample moved")
    events = {e.kind: e for e in client.beamline_events.list(workflow="scan")}
    assert events["run.fail"].data["reason"] and "shutter" in str(events["run.fail"].data["reason"])
    assert events["run.abort"].data["reason"] == "sample moved"
    assert len(list(client.submissions.list(workflow="scan"))) == 2


def test_a_service_that_cannot_be_reached_never_breaks_the_run(live_server: LiveServer) -> None:
    dead = Client(f"http://127.0.0.1:{free_port()}", access_token="x", retries=1)
    callback = SubmitOnStop(dead, "scan")
    RE = RunEngine({})
    RE.subscribe(callback)
    RE(count([det], num=1))  # finishes normally
    assert len(callback.errors) == 1 and "not submitted" in callback.errors[0]


def test_through_a_0mq_proxy_and_remote_dispatcher(client: Client) -> None:
    in_port, out_port = free_port(), free_port()
    proxy = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from bluesky.callbacks.zmq import Proxy; "
            "p = Proxy(f'127.0.0.1:{sys.argv[1]}', f'127.0.0.1:{sys.argv[2]}'); print('ready', flush=True); "
            "p.start()",
            str(in_port),
            str(out_port),
        ],
        stdout=subprocess.PIPE,
    )
    assert proxy.stdout is not None and proxy.stdout.readline().strip() == b"ready"
    dispatcher = RemoteDispatcher(f"127.0.0.1:{out_port}")
    callback = SubmitOnStop(client, "scan")
    dispatcher.subscribe(callback)

    def serve() -> None:
        with contextlib.suppress(BaseException):  # cancelled at the end of the test
            dispatcher.start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        RE = RunEngine({})
        publisher = Publisher(f"127.0.0.1:{in_port}")
        RE.subscribe(publisher)
        time.sleep(1.5)  # 0MQ subscribers join late: let the sockets connect before the run
        [uid] = RE(count([det], num=2, md={"md": {"sample": "latex"}}))
        deadline = time.monotonic() + 20
        while not callback.answers and time.monotonic() < deadline:
            time.sleep(0.05)
        assert callback.errors == []
        [answer] = callback.answers
        assert answer.created and answer.submission.key == f"bluesky:{uid}"
        assert answer.submission.dataset == f"bluesky://{uid}"
        publisher.close()
    finally:
        if dispatcher._task is not None:
            dispatcher.loop.call_soon_threadsafe(dispatcher._task.cancel)
        thread.join(10)
        proxy.kill()
        proxy.wait()
