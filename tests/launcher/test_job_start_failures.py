"""A job that cannot be prepared or started fails (or retries) alone: the launcher keeps running the rest.

Found by a chaos campaign: a job whose work directory could not be created ended every launcher that
took it (``[Errno 17] File exists``), went back to the pool without an event, and starved healthy jobs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from beambridge.states import TERMINAL_STATES, JobState
from tests.site.harness import System, wait_for

APPS = Path(__file__).resolve().parents[1] / "site" / "apps_e2e.py"


def test_unusable_workdirs_fail_their_jobs_and_the_launcher_runs_on(system: System) -> None:
    site, config = system.make_site(
        "bad-workdirs",
        launcher={"idle_timeout_s": 4, "cores_per_node": 2},
        elastic_queue={"enabled": False},
    )
    shutil.copy(APPS, site.apps / "e2e.py")
    agent = system.start_agent(site)  # registers the apps; no pilots (elastic queue off)
    apps = system.app_ids(config.site_id)
    agent.stop()
    site.data.mkdir(parents=True, exist_ok=True)
    (site.data / "a-file").write_text("a file where a job's workdir should be\n")
    (site.data / "zero").mkdir()
    (site.data / "zero" / "job.err").symlink_to("/dev/zero")  # a stderr "file" with no end
    hello = apps["Hello"]
    specs = [
        {"app_id": hello, "workdir": "a-file", "parameters": {"name": "x"}, "retry_limit": 1},
        {"app_id": apps["Add"], "workdir": "a-file/below", "parameters": {"a": 1, "b": 2}, "retry_limit": 0},
        {"app_id": apps["Fail"], "workdir": "zero", "parameters": {"code": 3}, "retry_limit": 0},
        *({"app_id": hello, "workdir": f"ok/{i}", "parameters": {"name": str(i)}} for i in range(6)),
    ]
    jobs = system.client.jobs.bulk_create(specs)
    bad_dir, bad_parent, endless_err, *healthy = jobs
    launcher = subprocess.Popen(
        [sys.executable, "-m", "beambridge", "launcher", "--site-dir", str(site.root), "--nodes", "localhost"],
        stdout=(site.root / "launcher.log").open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        ids = [job.id for job in jobs]

        def ended() -> bool:
            return launcher.poll() is not None or all(
                job.state in TERMINAL_STATES for job in system.client.jobs.filter(id=ids)
            )

        wait_for(ended, 90, what="every job ended")
        finished = list(system.client.jobs.filter(id=[job.id for job in jobs]))
        assert launcher.wait(timeout=60) == 0, "the launcher must end on its own (idle), not crash"
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    log = (site.root / "launcher.log").read_text(errors="replace")
    assert "Traceback" not in log, log
    states = {job.id: job.state for job in finished}
    assert all(states[job.id] == JobState.JOB_FINISHED for job in healthy), (states, log)
    for job in (bad_dir, bad_parent):  # a failed run is retried up to retry_limit, then the job fails
        assert states[job.id] == JobState.FAILED, (job.workdir, states[job.id], log)
        errors = [e for e in system.client.jobs.events(job.id) if e.to_state == JobState.RUN_ERROR]
        assert len(errors) == 1 + job.retry_limit, errors
        assert all("could not prepare" in e.data["reason"] for e in errors), errors
        stored = system.client.jobs.get(job.id)
        assert stored.error is not None and "could not prepare the work directory" in stored.error
        assert ("File exists" in stored.error) or ("Not a directory" in stored.error), stored.error
    failed = system.client.jobs.get(endless_err.id)
    assert failed.state == JobState.FAILED
    assert failed.error is not None and len(failed.error) <= 4100  # the tail of stderr, bounded


def test_error_tail_reads_a_bounded_amount_from_odd_files(tmp_path: Path) -> None:
    from beambridge.launcher.jobs import ERROR_TAIL_CHARS, error_tail

    (tmp_path / "zero").mkdir()
    (tmp_path / "zero" / "job.err").symlink_to("/dev/zero")
    assert len(error_tail(tmp_path / "zero")) <= ERROR_TAIL_CHARS
    (tmp_path / "fifo").mkdir()
    os.mkfifo(tmp_path / "fifo" / "job.err")
    assert error_tail(tmp_path / "fifo") == ""  # returns at once instead of waiting for a writer
    (tmp_path / "big").mkdir()
    (tmp_path / "big" / "job.err").write_bytes(b"x" * 10_000_000 + b"\nthe end")
    tail = error_tail(tmp_path / "big")
    assert tail.endswith("the end") and len(tail) <= ERROR_TAIL_CHARS
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "job.err").mkdir()
    assert error_tail(tmp_path / "dir") == ""
