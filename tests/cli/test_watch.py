"""Watching a campaign from the CLI against a live server (``job watch``, ``job wait``, ``job ls
--summary``), and the small things a user notices (``--version``, ``whoami``, ``logout``, cancelling a job
that already ended)."""

from __future__ import annotations

import json
import threading
import time

from beambridge import __version__
from tests.cli.conftest import RunCli
from tests.conftest import PASSWORD, ApiUser
from tests.server.helpers import acquire, run_to
from tests.servers import LiveServer


def _campaign(alice: ApiUser) -> tuple[int, list[int]]:
    site = alice.site("polaris")
    app = alice.app(site["id"], "XpcsMultiTau")
    specs = [
        {"app_id": app["id"], "workdir": f"r/{i}", "tags": {"run": "42"}, "retry_limit": 0} for i in range(3)
    ]
    return alice.session(site["id"])["id"], [job["id"] for job in alice.jobs(specs)]


def _finish_later(alice: ApiUser, session: int, ids: list[int]) -> threading.Thread:
    def work() -> None:
        time.sleep(1.0)
        acquire(alice, session, max_jobs=3)
        run_to(alice, session, ids[:2], "RUN_DONE", return_code=0)
        time.sleep(0.5)
        run_to(alice, session, ids[2:], "RUN_ERROR", return_code=2, error="ValueError: mask is empty")

    thread = threading.Thread(target=work)
    thread.start()
    return thread


def test_watch_wait_and_summary(cli: RunCli, live_server: LiveServer, alice: ApiUser) -> None:
    assert (
        cli("login", live_server.url, "--user", alice.name, "--password-stdin", stdin=PASSWORD + "\n").code
        == 0
    )
    session, ids = _campaign(alice)
    summary = json.loads(cli("job", "ls", "--summary", "--tag", "run=42", "--json").out)
    assert summary == {"PREPROCESSED": 3}

    worker = _finish_later(alice, session, ids)
    watched = cli("job", "watch", "--tag", "run=42")
    worker.join()
    assert watched.code == 1, watched.err
    assert "JOB_FINISHED 2" in watched.out and "FAILED 1" in watched.out
    assert f"job {ids[2]} FAILED: exit 2; ValueError: mask is empty" in watched.err
    assert "1 of 3 job(s) did not finish" in watched.err

    waited = cli("job", "wait", *map(str, ids), "--timeout", "30")
    assert waited.code == 1 and waited.out.strip() == "3 job(s) ended: JOB_FINISHED 2 · FAILED 1"
    fine = cli("job", "wait", str(ids[0]))
    assert fine.code == 0 and "JOB_FINISHED 1" in fine.out
    failed = json.loads(cli("events", "--tag", "run=42", "--state", "FAILED", "--json").out)
    assert [(e["job_id"], e["to_state"]) for e in failed] == [(ids[2], "FAILED")]
    assert len(json.loads(cli("events", "--tag", "run=42", "--json", "--limit", "4").out)) == 4
    assert json.loads(cli("events", "--tag", "run=7", "--json").out) == []
    table = cli("job", "ls", "--summary", "--tag", "run=42").out
    assert "JOB_FINISHED" in table and "FAILED" in table

    ended = cli("job", "cancel", str(ids[0]))
    assert ended.code == 1 and ended.out.strip() == "cancelled 0 job(s)"
    assert ended.err.strip() == f"job {ids[0]} not cancelled: it had already ended (JOB_FINISHED)"
    nothing = cli("job", "watch")
    assert nothing.code == 2 and "name the jobs" in nothing.err


def test_version_whoami_and_logout(cli: RunCli, live_server: LiveServer, alice: ApiUser) -> None:
    assert cli("--version").out.strip() == f"beambridge {__version__}"
    assert (
        cli("login", live_server.url, "--user", alice.name, "--password-stdin", stdin=PASSWORD + "\n").code
        == 0
    )
    assert cli("whoami").out.strip() == f"{alice.name} at {live_server.url}"
    out = cli("logout")
    assert out.code == 0 and out.out.strip() == f"logged out of {live_server.url}"
    after = cli("whoami")
    assert after.code == 1 and after.err.startswith("error: not logged in")
    assert cli("logout").out.strip() == "not logged in"


def test_summary_by_tag_value(cli: RunCli, live_server: LiveServer, alice: ApiUser) -> None:
    """``job ls --summary --by run``: a campaign's runs, newest first, each counted by state."""
    assert (
        cli("login", live_server.url, "--user", alice.name, "--password-stdin", stdin=PASSWORD + "\n").code
        == 0
    )
    site = alice.site("polaris")
    app = alice.app(site["id"], "XpcsMultiTau")
    for run, count in (("41", 2), ("42", 3)):
        alice.jobs([{"app_id": app["id"], "workdir": "w", "tags": {"run": run, "bl": "8"}}] * count)
    alice.jobs([{"app_id": app["id"], "workdir": "w", "tags": {"bl": "8"}}])
    failed = alice.jobs([{"app_id": app["id"], "workdir": "w", "tags": {"run": "41", "bl": "9"}}])
    alice.ok(alice.http.post("/jobs/cancel", json={"ids": [failed[0]["id"]]}))

    table = cli("job", "ls", "--summary", "--by", "run", "--tag", "bl=8")
    assert table.code == 0, table.err
    rows = [line for line in table.out.splitlines() if "PREPROCESSED" in line]
    assert [row.split()[1] for row in rows] == ["(none)", "42", "41"], table.out  # newest first
    alone = cli("job", "ls", "--by", "run")  # --by implies --summary
    assert "KILLED 1" in alone.out and alone.code == 0

    data = json.loads(cli("job", "ls", "--summary", "--by", "run", "--json").out)
    assert data["by_tag"] == "run" and data["total"] == 7
    assert {g["value"]: g["counts"] for g in data["groups"]} == {
        "41": {"PREPROCESSED": 2, "KILLED": 1},
        "42": {"PREPROCESSED": 3},
        None: {"PREPROCESSED": 1},
    }
    plain = json.loads(cli("job", "ls", "--summary", "--json").out)
    assert plain == {"PREPROCESSED": 6, "KILLED": 1}  # without --by: as before
    bad = cli("job", "ls", "--by", "not a key")
    assert bad.code == 2 and "--by takes a tag key" in bad.err
