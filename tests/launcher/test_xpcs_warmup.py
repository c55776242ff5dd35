"""Site agents and pilots compile the XPCS kernels in the background when they start, say so in their
logs, and take that process with them when they stop (real processes, a cold numba cache of the test's own).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.site.harness import System, pids_alive, wait_for


def _warmup_pid(log: Path) -> int | None:
    found = re.search(r"xpcs_warmup\b.*?pid=(\d+)", log.read_text(errors="replace"))
    return int(found.group(1)) if found else None


def _started(log: Path) -> bool:
    return "xpcs_warmup_started" in log.read_text(errors="replace")


def test_the_agent_and_a_pilot_warm_the_kernels_and_leave_nothing_behind(
    system: System, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "cold-numba-cache"))  # inherited: a cold cache
    site, _ = system.make_site(
        "warming", launcher={"warm_xpcs": True, "idle_timeout_s": 4}, elastic_queue={"enabled": False}
    )
    agent = system.start_agent(site)
    wait_for(lambda: _warmup_pid(agent.log_path), 60, what="the agent's warm-up")
    wait_for(lambda: _started(agent.log_path), 120, what="the warm-up's first line")
    pid = _warmup_pid(agent.log_path)
    assert pid is not None and pids_alive([pid]) == [pid]
    agent.stop()
    assert pids_alive([pid]) == [], "the agent left its warm-up running"

    log = site.root / "launcher.log"
    with log.open("wb") as out:
        launcher = subprocess.Popen(
            [sys.executable, "-m", "beambridge", "launcher", "--site-dir", str(site.root), "--nodes", "localhost"],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ},
        )  # fmt: skip
    try:
        wait_for(lambda: _warmup_pid(log), 60, what="the pilot's warm-up")
        pid = _warmup_pid(log)
        assert pid is not None
        assert launcher.wait(timeout=120) == 0  # idle: it ends, and its warm-up with it
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    wait_for(lambda: pids_alive([pid]) == [], 10, what="the pilot's warm-up gone")


def test_a_site_can_switch_the_warm_up_off(system: System) -> None:
    site, _ = system.make_site("not-warming", elastic_queue={"enabled": False})  # the tests' default: off
    agent = system.start_agent(site)
    wait_for(lambda: "agent_running" in agent.log(), 60, what="the agent running")
    assert "xpcs_warmup" not in agent.log()
