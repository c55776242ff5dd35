"""``beambridge demo`` end to end, as a user runs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest


@pytest.mark.slow
def test_demo_runs_the_dag_to_the_end_and_leaves_nothing_running(tmp_path: Path) -> None:
    env = {**os.environ, "BEAMBRIDGE_HOME": str(tmp_path / "demo"), "COLUMNS": "160"}
    env.pop("BEAMBRIDGE_DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "beambridge.cli.main", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "POSTPROCESSED → JOB_FINISHED" in done.stdout
    assert "5 of 5 jobs JOB_FINISHED" in done.stdout
    assert (tmp_path / "demo" / "beambridge.db").exists()
    url = re.search(r"server up at (http://127\.0\.0\.1:\d+)", done.stdout)
    assert url is not None
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url.group(1)}/health", timeout=2)
