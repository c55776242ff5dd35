"""The ``local`` scheduler with real processes and real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from beambridge.platform.schedulers import get_scheduler
from beambridge.platform.schedulers.base import PilotRequest, PilotState, PilotStatus
from beambridge.platform.schedulers.local import LocalScheduler

GRACE_S = 1.0


def wait_for(condition: Callable[[], bool], timeout_s: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def process_gone(pid: int) -> bool:
    """No live process with this pid (a zombie nobody reaps counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat[stat.rindex(")") + 2] in "ZX"


class Pilots:
    """A scheduler on a temporary state directory, and helpers to submit and watch pilots."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.state_dir = tmp_path / "state"
        self.workdir = tmp_path / "work"
        self.scheduler = LocalScheduler(state_dir=self.state_dir, grace_s=GRACE_S, minute_s=1.0)

    def script(self, body: str, name: str = "pilot.sh") -> Path:
        path = self.tmp_path / name
        path.write_text("set -u\n" + textwrap.dedent(body))
        return path

    def submit(self, body: str, job_name: str = "pilot", num_nodes: int = 1, wall_time_min: int = 60) -> str:
        request = PilotRequest(
            script=self.script(body, f"{job_name}-{time.monotonic_ns()}.sh"),
            job_name=job_name,
            num_nodes=num_nodes,
            wall_time_min=wall_time_min,
            workdir=self.workdir,
            environment={"PILOT_VAR": "from the request"},
        )
        return self.scheduler.submit(request)

    def status(self, scheduler_id: str, scheduler: LocalScheduler | None = None) -> PilotStatus:
        return (scheduler or self.scheduler).statuses([scheduler_id])[scheduler_id]

    def finished(self, scheduler_id: str, timeout_s: float = 15.0) -> PilotStatus:
        wait_for(
            lambda: self.status(scheduler_id).state is PilotState.FINISHED,
            timeout_s,
            f"{scheduler_id} to end",
        )
        return self.status(scheduler_id)

    def wait_file(self, name: str) -> str:
        path = self.workdir / name
        wait_for(lambda: path.exists() and path.read_text().endswith("\n"), what=f"{name} to be written")
        return path.read_text()

    def end_all(self) -> None:
        """Cancel whatever a test left running (only pilots of this test's state directory)."""
        if self.state_dir.is_dir():
            for record in self.state_dir.iterdir():
                if record.is_dir():
                    self.scheduler.cancel(record.name)


@pytest.fixture
def pilots(tmp_path: Path) -> Iterator[Pilots]:
    pilots = Pilots(tmp_path)
    try:
        yield pilots
    finally:
        pilots.end_all()


def test_a_pilot_runs_then_finishes(pilots: Pilots) -> None:
    scheduler_id = pilots.submit(
        """
        echo "$BEAMBRIDGE_LOCAL_NODES|$BEAMBRIDGE_LOCAL_JOBID|$PILOT_VAR|$PWD" > env.txt
        while [ ! -e go ]; do sleep 0.05; done
        echo "pilot says hello"
        """,
        num_nodes=3,
    )
    nodes, job_id, var, cwd = pilots.wait_file("env.txt").strip().split("|")
    running = pilots.status(scheduler_id)
    assert running.state is PilotState.RUNNING
    assert running.nodes == ("localhost",) * 3
    assert running.start_time is not None
    assert job_id == scheduler_id
    assert var == "from the request"
    assert Path(cwd) == pilots.workdir.resolve()
    assert LocalScheduler.allocation_nodes({"BEAMBRIDGE_LOCAL_NODES": nodes}) == ["localhost"] * 3

    (pilots.workdir / "go").touch()
    done = pilots.finished(scheduler_id)
    assert (done.state, done.exit_code, done.reason) == (PilotState.FINISHED, 0, "COMPLETED")
    assert done.end_time is not None and done.start_time is not None and done.end_time >= done.start_time
    assert "pilot says hello" in (pilots.workdir / f"local-{scheduler_id}.out").read_text()


def test_a_failing_script_reports_its_exit_code(pilots: Pilots) -> None:
    scheduler_id = pilots.submit("echo failing >&2\nexit 3\n")
    done = pilots.finished(scheduler_id)
    assert (done.exit_code, done.reason) == (3, "FAILED")
    assert "failing" in (pilots.workdir / f"local-{scheduler_id}.out").read_text()


def test_cancel_ends_the_whole_process_group(pilots: Pilots) -> None:
    # The script and its child ignore SIGTERM, so only the SIGKILL after the grace time ends them.
    scheduler_id = pilots.submit(
        """
        trap '' TERM
        sleep 300 &
        echo $! > child.pid
        wait
        """
    )
    child = int(pilots.wait_file("child.pid"))
    assert pilots.status(scheduler_id).state is PilotState.RUNNING

    started = time.monotonic()
    pilots.scheduler.cancel(scheduler_id)
    took = time.monotonic() - started
    done = pilots.status(scheduler_id)
    assert (done.state, done.reason) == (PilotState.FINISHED, "CANCELLED")
    assert done.exit_code == 128 + signal.SIGKILL
    assert GRACE_S * 0.9 <= took < GRACE_S + 5
    assert process_gone(child)
    pilots.scheduler.cancel(scheduler_id)  # again: no error
    assert pilots.status(scheduler_id).reason == "CANCELLED"


def test_cancel_of_a_cooperative_pilot_is_quick(pilots: Pilots) -> None:
    scheduler_id = pilots.submit("sleep 300 &\necho $! > child.pid\nwait\n")
    child = int(pilots.wait_file("child.pid"))
    started = time.monotonic()
    pilots.scheduler.cancel(scheduler_id)
    assert time.monotonic() - started < GRACE_S
    assert pilots.status(scheduler_id).reason == "CANCELLED"
    assert process_gone(child)


def test_processes_left_behind_are_ended_with_the_pilot(pilots: Pilots) -> None:
    scheduler_id = pilots.submit("sleep 300 &\necho $! > child.pid\nexit 0\n")
    child = int(pilots.wait_file("child.pid"))
    done = pilots.finished(scheduler_id)
    assert (done.exit_code, done.reason) == (0, "COMPLETED")
    assert process_gone(child)


def test_a_pilot_whose_process_is_killed_is_lost(pilots: Pilots) -> None:
    scheduler_id = pilots.submit("sleep 300 &\necho $! > child.pid\nwait\n")
    child = int(pilots.wait_file("child.pid"))
    pid = pilots.scheduler.pid_of(scheduler_id)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)

    done = pilots.finished(scheduler_id)
    assert (done.reason, done.exit_code) == ("lost", None)
    wait_for(lambda: process_gone(child), 5, "the orphaned script to be ended")
    assert pilots.scheduler.pid_of(scheduler_id) is None
    assert pilots.status(scheduler_id).reason == "lost"  # the verdict is kept


def test_the_wall_time_is_enforced(pilots: Pilots) -> None:
    # minute_s=1: a one-"minute" wall time lasts one second.
    started = time.monotonic()
    scheduler_id = pilots.submit("sleep 300\n", wall_time_min=1)
    done = pilots.finished(scheduler_id)
    took = time.monotonic() - started
    assert done.reason == "TIMEOUT"
    assert done.exit_code == 128 + signal.SIGTERM
    assert 1.0 <= took < 1.0 + GRACE_S + 5
    assert "wall time" in (pilots.workdir / f"local-{scheduler_id}.out").read_text()


def test_a_restarted_agent_reattaches(pilots: Pilots) -> None:
    """Submitted by a process that then exits; a new scheduler object in this process sees it through."""
    script = pilots.script("echo started > started.txt\nwhile [ ! -e go ]; do sleep 0.05; done\nexit 7\n")
    submitter = textwrap.dedent(
        f"""
        from pathlib import Path
        from beambridge.platform.schedulers.base import PilotRequest
        from beambridge.platform.schedulers.local import LocalScheduler
        scheduler = LocalScheduler(state_dir=Path({str(pilots.state_dir)!r}))
        request = PilotRequest(
            script=Path({str(script)!r}), job_name="survivor", num_nodes=2, wall_time_min=60,
            workdir=Path({str(pilots.workdir)!r}),
        )
        print(scheduler.submit(request))
        """
    )
    done = subprocess.run([sys.executable, "-c", submitter], capture_output=True, text=True, check=True)
    scheduler_id = done.stdout.strip()
    pilots.wait_file("started.txt")

    fresh = LocalScheduler(state_dir=pilots.state_dir)
    running = pilots.status(scheduler_id, fresh)
    assert (running.state, running.nodes) == (PilotState.RUNNING, ("localhost", "localhost"))
    assert fresh.find_by_name("survivor") == [scheduler_id]

    (pilots.workdir / "go").touch()
    wait_for(lambda: pilots.status(scheduler_id, fresh).state is PilotState.FINISHED)
    finished = pilots.status(scheduler_id, fresh)
    assert (finished.exit_code, finished.reason) == (7, "FAILED")
    assert fresh.find_by_name("survivor") == []


def test_a_restarted_agent_can_cancel(pilots: Pilots) -> None:
    scheduler_id = pilots.submit("sleep 300 &\necho $! > child.pid\nwait\n")
    child = int(pilots.wait_file("child.pid"))
    fresh = LocalScheduler(state_dir=pilots.state_dir)
    fresh.cancel(scheduler_id)
    assert pilots.status(scheduler_id, fresh).reason == "CANCELLED"
    assert process_gone(child)


def test_find_by_name(pilots: Pilots) -> None:
    first = pilots.submit("while [ ! -e go ]; do sleep 0.05; done\n", job_name="alpha")
    second = pilots.submit("while [ ! -e go ]; do sleep 0.05; done\n", job_name="alpha")
    other = pilots.submit("while [ ! -e go ]; do sleep 0.05; done\n", job_name="beta")
    assert sorted(pilots.scheduler.find_by_name("alpha")) == sorted([first, second])
    assert pilots.scheduler.find_by_name("beta") == [other]
    assert pilots.scheduler.find_by_name("gamma") == []
    pilots.scheduler.cancel(second)
    assert pilots.scheduler.find_by_name("alpha") == [first]
    (pilots.workdir / "go").touch()
    for scheduler_id in (first, other):
        pilots.finished(scheduler_id)
    assert pilots.scheduler.find_by_name("alpha") == []


def test_unknown_ids(pilots: Pilots) -> None:
    unknown = ["20000101000000-abcdef", "12345", "../../etc", ""]
    answer = pilots.scheduler.statuses(unknown)
    assert set(answer) == set(unknown)
    for status in answer.values():
        assert (status.state, status.reason) == (PilotState.FINISHED, "unknown to the scheduler")
    for scheduler_id in unknown:
        pilots.scheduler.cancel(scheduler_id)  # no error
    assert LocalScheduler(state_dir=pilots.tmp_path / "nowhere").find_by_name("x") == []


def test_a_garbled_record_is_left_out(pilots: Pilots) -> None:
    scheduler_id = pilots.submit("exit 0\n")
    pilots.finished(scheduler_id)
    (pilots.state_dir / scheduler_id / "result.json").write_text("{not json")
    assert pilots.scheduler.statuses([scheduler_id]) == {}


def test_submit_rejects_a_missing_script(pilots: Pilots) -> None:
    from beambridge.platform.schedulers.base import SubmitRejected

    request = PilotRequest(
        script=pilots.tmp_path / "missing.sh",
        job_name="x",
        num_nodes=1,
        wall_time_min=1,
        workdir=pilots.workdir,
    )
    with pytest.raises(SubmitRejected, match="does not exist"):
        pilots.scheduler.submit(request)


def test_allocation_nodes_and_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert LocalScheduler.allocation_nodes({}) is None
    assert LocalScheduler.allocation_nodes({"BEAMBRIDGE_LOCAL_NODES": ""}) is None
    assert LocalScheduler.allocation_nodes({"BEAMBRIDGE_LOCAL_NODES": "localhost,localhost"}) == [
        "localhost",
        "localhost",
    ]
    monkeypatch.setenv("BEAMBRIDGE_HOME", str(tmp_path))
    scheduler = get_scheduler("local")
    assert isinstance(scheduler, LocalScheduler)
    assert scheduler.state_dir == tmp_path / "local-scheduler"


def test_records_are_json_files(pilots: Pilots) -> None:
    scheduler_id = pilots.submit("exit 0\n", job_name="recorded")
    pilots.finished(scheduler_id)
    record = pilots.state_dir / scheduler_id
    pilot = json.loads((record / "pilot.json").read_text())
    assert pilot["job_name"] == "recorded"
    result = json.loads((record / "result.json").read_text())
    assert (result["exit_code"], result["reason"]) == (0, "COMPLETED")


def test_the_pilot_environment_cannot_break_the_wrapper(pilots: Pilots) -> None:
    request = PilotRequest(
        script=pilots.script('echo "$PYTHONPATH" > env.txt\n'),
        job_name="isolated",
        num_nodes=1,
        wall_time_min=5,
        workdir=pilots.workdir,
        environment={"PYTHONPATH": "/nonexistent", "PYTHONHOME": "/nonexistent"},
    )
    scheduler_id = pilots.scheduler.submit(request)
    done = pilots.finished(scheduler_id)
    assert (done.exit_code, done.reason) == (0, "COMPLETED")
    assert pilots.wait_file("env.txt") == "/nonexistent\n"
