"""Tests find only their own processes: another beambridge on the machine (same batch-job ids, another
site directory) is never found, let alone killed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.site.harness import launcher_pids


def _fake_launcher(site_root: Path, batch_job_id: int) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-c", "import time; time.sleep(60)", "launcher", "--site-dir", str(site_root),
            "--batch-job-id", str(batch_job_id)]  # fmt: skip
    return subprocess.Popen(argv)


def test_launchers_of_another_installation_are_not_ours(tmp_path: Path) -> None:
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    mine = _fake_launcher(ours, 7)
    other = _fake_launcher(theirs, 7)
    try:
        assert launcher_pids(ours, [7]) == [mine.pid]
        assert launcher_pids(ours) == [mine.pid]
        assert launcher_pids(ours, [8]) == []
    finally:
        for process in (mine, other):
            process.kill()
            process.wait()
