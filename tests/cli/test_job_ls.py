"""``beambridge job ls`` against a live server: newest first, honest about what it leaves out, names and
reasons in a table that reads at 80 columns, ``--since``, and ``--json`` that never truncates silently."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime

import pytest

from tests.cli.conftest import RunCli
from tests.conftest import PASSWORD, ApiUser
from tests.server.helpers import acquire, run_to
from tests.servers import LiveServer


@pytest.fixture
def campaign(cli: RunCli, live_server: LiveServer, alice: ApiUser) -> dict[str, object]:
    done = cli("login", live_server.url, "--user", alice.name, "--password-stdin", stdin=PASSWORD + "\n")
    assert done.code == 0, done.err
    polaris = alice.site("polaris")
    aurora = alice.site("aurora")
    xpcs = alice.app(polaris["id"], "XpcsMultiTau")
    other = alice.app(aurora["id"], "XpcsMultiTau")
    specs = [{"app_id": xpcs["id"], "workdir": f"run42/{i:03d}", "tags": {"run": "42"}} for i in range(220)]
    ids = [job["id"] for job in alice.jobs(specs)]
    [far] = [j["id"] for j in alice.jobs([{"app_id": other["id"], "workdir": "far/0", "tags": {"run": "7"}}])]
    [broken] = [j["id"] for j in alice.jobs([{"app_id": xpcs["id"], "workdir": "broken", "retry_limit": 0}])]
    [child] = [
        j["id"] for j in alice.jobs([{"app_id": xpcs["id"], "workdir": "child", "parent_ids": [broken]}])
    ]
    session = alice.session(polaris["id"])["id"]
    assert [j["id"] for j in acquire(alice, session, max_jobs=1, filter_tags={})] == [ids[0]]
    alice.ok(alice.http.post("/jobs/cancel", json={"ids": ids[1:]}))  # leaves room for `broken`
    assert [j["id"] for j in acquire(alice, session, max_jobs=1)] == [broken]
    error = (
        'Traceback (most recent call last):\n  File "app.py", line 3\nRuntimeError: detector frames missing\n'
    )
    run_to(alice, session, [broken], "RUN_ERROR", return_code=1, error=error)
    return {"ids": ids, "far": far, "broken": broken, "child": child}


def test_newest_first_and_says_what_it_leaves_out(cli: RunCli, campaign: dict) -> None:
    ids, child = campaign["ids"], campaign["child"]
    newest = sorted([*ids, campaign["far"], campaign["broken"], child], reverse=True)

    default = cli("job", "ls")
    assert default.code == 0, default.err
    rows = _rows(default.out)
    assert [int(row[0]) for row in rows] == newest[:50]
    assert default.err.strip() == f"showing the newest 50 of {len(newest)} jobs; --limit N or --all for more"

    every = cli("job", "ls", "--all")
    assert len(_rows(every.out)) == len(newest) and every.err == ""

    as_json = cli("job", "ls", "--json")  # scripts get everything unless they ask for less
    assert [job["id"] for job in json.loads(as_json.out)] == newest and as_json.err == ""
    capped = cli("job", "ls", "--json", "--limit", "10")
    assert [job["id"] for job in json.loads(capped.out)] == newest[:10]
    assert "showing the newest 10 of" in capped.err

    both = cli("job", "ls", "--all", "--limit", "3")
    assert both.code == 2 and "--limit or --all" in both.err


def test_names_reasons_and_filters(cli: RunCli, campaign: dict, alice: ApiUser) -> None:
    broken, child, far = campaign["broken"], campaign["child"], campaign["far"]
    table = cli("job", "ls", "--state", "FAILED", "--state", "KILLED", "--all")
    rows = {int(row[0]): row for row in _rows(table.out)}
    assert "exit 1; RuntimeError: detector frames missing" in " ".join(rows[broken])
    assert f"parent job {broken} is FAILED" in " ".join(rows[child])
    assert "cancelled by user" in " ".join(rows[campaign["ids"][5]])
    assert "XpcsMultiTau" in rows[broken] and "polaris" in rows[broken]

    on_aurora = json.loads(cli("job", "ls", "--site", "aurora", "--json").out)
    assert [job["id"] for job in on_aurora] == [far]
    by_app = json.loads(cli("job", "ls", "--app", "XpcsMultiTau", "--site", "polaris", "--json").out)
    assert far not in {job["id"] for job in by_app} and len(by_app) == 222
    unknown = cli("job", "ls", "--site", "nowhere")
    assert unknown.code == 1 and unknown.err == "error: no site named 'nowhere' (yours: aurora, polaris)\n"


def test_since(cli: RunCli, campaign: dict, alice: ApiUser) -> None:
    assert len(json.loads(cli("job", "ls", "--since", "2h", "--json").out)) == 223
    time.sleep(0.05)
    start = datetime.now(UTC)
    time.sleep(0.05)
    alice.ok(alice.http.post("/jobs/cancel", json={"ids": [campaign["ids"][0]]}))
    recent = json.loads(cli("job", "ls", "--since", start.isoformat(), "--json").out)
    assert [job["id"] for job in recent] == [campaign["ids"][0]]
    wrong = cli("job", "ls", "--since", "yesterday")
    assert wrong.code == 2 and "neither a duration" in wrong.err


def test_readable_at_80_columns(cli: RunCli, campaign: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    out = cli("job", "ls", "--all").out
    assert max(len(line) for line in out.splitlines()) <= 80, out
    rows = _rows(out)
    assert {row[1] for row in rows} == {"KILLED", "FAILED", "PREPROCESSED"}  # never cut
    assert all(row[-1][-1] in "smhd" and row[-1][:-1].isdigit() for row in rows)  # the age, whole
    assert "RuntimeError:" in out and "missing" in out, out  # a long reason wraps, whole
    monkeypatch.setenv("COLUMNS", "50")
    narrow = cli("job", "ls", "--limit", "3").out
    assert max(len(line) for line in narrow.splitlines()) <= 50, narrow
    assert {row[1] for row in _rows(narrow)} <= {"KILLED", "FAILED", "PREPROCESSED"}


def _rows(table: str) -> list[list[str]]:
    """The data rows of the table (cells split on runs of spaces): lines that start with an id and a state,
    so that the title, the header and the continuation lines of a wrapped reason are left out."""
    return [line.split() for line in table.splitlines() if re.match(r"^\s*\d+\s+[A-Z_]{4,}", line)]


def test_a_waiting_job_says_what_it_waits_for(cli: RunCli, campaign: dict, alice: ApiUser) -> None:
    far = campaign["far"]
    site_id = alice.ok(alice.http.get(f"/jobs/{far}"))["site_id"]  # type: ignore[index]

    def why() -> str:
        rows = [row for row in _rows(cli("job", "ls", "--site", "aurora").out) if int(row[0]) == far]
        return " ".join(rows[0])

    assert "waiting for a pilot (none requested yet" in why()
    body = {"site_id": site_id, "num_nodes": 1, "wall_time_min": 5}
    pilot = alice.ok(alice.http.post("/batch-jobs", json=body), 201)["id"]  # type: ignore[index]
    alice.ok(alice.http.patch(f"/batch-jobs/{pilot}", json={"state": "queued", "scheduler_id": "77"}))
    assert f"waiting for pilot {pilot}, queued for" in why()
    alice.ok(alice.http.patch(f"/batch-jobs/{pilot}", json={"state": "running"}))
    assert "waiting for a free slot (1 pilot(s) running)" in why()
    # The pilot's launcher names the apps it can run, and this job's is not among them: no free slot
    # will ever take it there; the table says so instead of promising a slot.
    app_id = alice.ok(alice.http.get(f"/jobs/{far}"))["app_id"]  # type: ignore[index]
    app = alice.ok(alice.http.get(f"/apps/{app_id}"))["name"]  # type: ignore[index]
    body = {"site_id": site_id, "batch_job_id": pilot}
    session = alice.ok(alice.http.post("/sessions", json=body), 201)["id"]  # type: ignore[index]
    acquire = {"max_jobs": 1, "apps": {"SomethingElse": None}}
    assert alice.ok(alice.http.post(f"/sessions/{session}/acquire", json=acquire)) == []
    said = why()
    assert f"no running pilot has app {app}" in said and "waiting for a free slot" not in said, said
    sessions = alice.ok(alice.http.get("/sessions", params={"site_id": site_id, "active": True}))
    assert sessions["items"][0]["apps"] == ["SomethingElse"]  # type: ignore[index, call-overload]
    # A launcher that reloads its apps folder and names the app again: a free slot is what it waits for.
    acquire = {"max_jobs": 1, "apps": {"SomethingElse": None, app: None}, "filter_tags": {"none": "x"}}
    assert alice.ok(alice.http.post(f"/sessions/{session}/acquire", json=acquire)) == []
    assert "waiting for a free slot (1 pilot(s) running)" in why()
