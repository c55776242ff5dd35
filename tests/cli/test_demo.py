"""``beambridge demo`` end to end, as a user runs it: server, site agent, local pilots, XPCS jobs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.site.harness import pids_alive


@pytest.mark.slow
def test_demo_runs_the_whole_system_and_leaves_nothing_running(tmp_path: Path) -> None:
    env = {**os.environ, "BEAMBRIDGE_HOME": str(tmp_path / "demo"), "COLUMNS": "200"}
    env.pop("BEAMBRIDGE_DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "beambridge", "demo", "--datasets", "2", "--checksums", "20"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "24 of 24 jobs JOB_FINISHED" in done.stdout, done.stdout
    errors = [float(e) for e in re.findall(r"([+-]\d+\.\d) %", done.stdout)]
    assert len(errors) == 2 and all(abs(e) < 10 for e in errors), done.stdout  # D recovered per dataset
    assert re.search(r"latency submission → finished: median \d+\.\d\d s, p95 \d+\.\d\d s", done.stdout)
    site = tmp_path / "demo" / "demo-site"
    assert (site / "data/xpcs/ds0/multitau/result.hdf").stat().st_size > 0
    url = re.search(r"server up at (http://127\.0\.0\.1:\d+)", done.stdout)
    assert url is not None
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url.group(1)}/health", timeout=2)
    for record in (site / "local-scheduler").iterdir():  # every pilot ended, none left running
        assert (record / "result.json").exists()
        workload = record / "workload.json"
        if workload.exists():
            import json

            assert not pids_alive([json.loads(workload.read_text())["pid"]])
