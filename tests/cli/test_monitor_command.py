"""``beambridge monitor``: the change detector and alerts of a workflow without a folder watcher (a
beamline that submits from Bluesky or over HTTP), as its own process, stopped with SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from beambridge.client import Client
from tests.cli.conftest import RunCli
from tests.conftest import PASSWORD, ApiUser
from tests.servers import LiveServer

WORKFLOW = """
name: gated
steps:
  - {name: quick, app: echo, quick_look: true}
  - {name: full, app: echo, after: [quick], skip_unless_changed: true}
change_detection: {features: [features.D], warmup: 3}
"""


def test_monitor_decides_held_steps_until_stopped(
    cli: RunCli, home: Path, tmp_path: Path, live_server: LiveServer, alice: ApiUser
) -> None:
    assert (
        cli("login", live_server.url, "--user", alice.name, "--password-stdin", stdin=PASSWORD + "\n").code
        == 0
    )
    site = alice.site()
    alice.app(site["id"], "echo")
    path = tmp_path / "gated.yml"
    path.write_text(WORKFLOW)
    missing = cli("monitor", "--workflow", "nope")
    assert missing.code == 2 and "neither a workflow file nor a stored workflow" in missing.err
    log = (tmp_path / "monitor.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "beambridge", "monitor", "--workflow", str(path), "--every", "0.2"],
        env={**os.environ, "BEAMBRIDGE_HOME": str(home)},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        with Client.login(live_server.url, alice.name, PASSWORD) as client:
            deadline = time.monotonic() + 60
            while client.workflows.get("gated") is None:  # the monitor stores the file's workflow
                assert time.monotonic() < deadline and process.poll() is None, "the monitor did not start"
                time.sleep(0.2)
            session = client.sessions.open(site["id"])
            subs = []
            for i, diffusion in enumerate([2.0e6, 2.01e6, 1.99e6, 2.0e6, 4.0e6]):
                sub = client.submissions.submit("gated", key=f"k{i}", dataset=f"/d/s{i}.h5").submission
                acquired = client.sessions.acquire(session.id, max_jobs=20)  # full steps the monitor ran too
                job = next(j for j in acquired if j.id == sub.steps["quick"].job_id)
                client.sessions.report(session.id, [{"id": job.id, "state": "RUNNING"}])
                result = {"features": {"D": diffusion}}
                client.sessions.report(
                    session.id, [{"id": job.id, "state": "RUN_DONE", "return_code": 0, "result": result}]
                )
                subs.append(sub.id)
            deadline = time.monotonic() + 60
            while True:
                steps = [client.submissions.get(s).steps["full"].status.value for s in subs]
                if "held" not in steps or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
        assert steps == ["submitted"] * 2 + ["skipped", "skipped", "submitted"]
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
        log.close()
    out = (tmp_path / "monitor.log").read_text()
    assert code == 0 and "stopped: 5 step decision(s)" in out, out
