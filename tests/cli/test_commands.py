"""The CLI against the live server: login, sites, apps, jobs, events; errors as one line."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from tests.cli.conftest import RunCli
from tests.conftest import PASSWORD, ApiUser
from tests.servers import LiveServer


def _login(cli: RunCli, server: LiveServer, user: ApiUser) -> None:
    done = cli("login", server.url, "--user", user.name, "--password-stdin", stdin=PASSWORD + "\n")
    assert done.code == 0, done.err
    assert f"as {user.name}" in done.out


def test_login_sites_apps_jobs_and_events(
    cli: RunCli, home: Path, live_server: LiveServer, alice: ApiUser
) -> None:
    _login(cli, live_server, alice)
    assert stat.S_IMODE((home / "client.json").stat().st_mode) == 0o600

    site = json.loads(cli("site", "create", "polaris", "--json").out)
    assert site["name"] == "polaris"
    assert [s["name"] for s in json.loads(cli("site", "ls", "--json").out)] == ["polaris"]
    assert "polaris" in cli("site", "ls").out

    assert cli("app", "create", "--site", str(site["id"]), "echo").code == 0
    [app] = json.loads(cli("app", "ls", "--site", str(site["id"]), "--json").out)
    alice.ok(alice.http.patch(f"/apps/{app['id']}", json={"parameters": {"n": {}, "label": {}}}))

    made = cli(
        "job", "create", "--app", str(app["id"]), "--workdir", "w/1",
        "--param", "n=3", "--param", "label=abc", "--tag", "run=7", "--priority", "4", "--json",
    )  # fmt: skip
    assert made.code == 0, made.err
    job = json.loads(made.out)
    assert (
        job["parameters"] == {"n": 3, "label": "abc"} and job["tags"] == {"run": "7"} and job["priority"] == 4
    )
    child = cli("job", "create", "--app", str(app["id"]), "--workdir", "w/2", "--parent", str(job["id"]),
                "--param", "n=1", "--param", "label=x")  # fmt: skip
    assert child.code == 0 and "AWAITING_PARENTS" in child.out

    listed = json.loads(cli("job", "ls", "--tag", "run=7", "--json").out)
    assert [j["id"] for j in listed] == [job["id"]]
    assert len(json.loads(cli("job", "ls", "--state", "AWAITING_PARENTS", "--json").out)) == 1
    table = cli("job", "ls", "--limit", "1")  # newest first
    child_id = child.out.split()[2]  # "created job N (AWAITING_PARENTS)"
    first_cells = [line.split()[0] for line in table.out.splitlines() if line.split()]
    assert child_id in first_cells and str(job["id"]) not in first_cells  # ids are the first column
    assert "showing the newest 1 of 2 jobs" in table.err

    shown = json.loads(cli("job", "show", str(job["id"]), "--json").out)
    assert shown["job"]["id"] == job["id"] and shown["events"][-1]["to_state"] == "PREPROCESSED"
    assert "Events" in cli("job", "show", str(job["id"])).out

    cancelled = cli("job", "cancel", str(job["id"]))
    assert cancelled.code == 0 and "cancelled 1 job(s)" in cancelled.out
    events = json.loads(cli("events", "--job", str(job["id"]), "--json").out)
    assert events[-1]["to_state"] == "KILLED"
    assert "→ KILLED" in cli("events").out

    assert cli("job", "rm", str(job["id"])).out.strip() == "deleted 1 job(s)"
    gone = cli("job", "show", str(job["id"]))
    assert (gone.code, gone.out, gone.err) == (1, "", f"error: job {job['id']} not found\n")


def test_errors_are_one_line_with_the_servers_detail(
    cli: RunCli, live_server: LiveServer, alice: ApiUser
) -> None:
    not_logged_in = cli("site", "ls")
    assert not_logged_in.code == 1
    assert not_logged_in.err.startswith("error: not logged in") and not_logged_in.err.count("\n") == 1

    wrong = cli("login", live_server.url, "--user", alice.name, "--password-stdin", stdin="nope\n")
    assert (wrong.code, wrong.err) == (1, "error: wrong username or password\n")

    _login(cli, live_server, alice)
    assert cli("site", "create", "polaris").code == 0
    taken = cli("site", "create", "polaris")
    assert taken.code == 1 and taken.err.startswith("error: you already have a site named 'polaris'")
    assert taken.err.count("\n") == 1 and "Traceback" not in taken.err

    usage = cli("job", "create", "--app", "1", "--workdir", "w", "--param", "novalue")
    assert usage.code == 2 and usage.err.count("\n") == 1 and "key=value" in usage.err
    assert cli("job", "show", "abc").code == 2


def test_user_add_and_server_migrate_act_on_the_local_database(cli: RunCli, home: Path) -> None:
    assert cli("server", "migrate").code == 0
    added = cli("user", "add", "carol", "--password-stdin", stdin="long enough password\n")
    assert added.code == 0 and "user 'carol' added" in added.out
    again = cli("user", "add", "carol", "--password-stdin", stdin="long enough password\n")
    assert (again.code, again.err) == (1, "error: user 'carol' already exists\n")
    short = cli("user", "add", "dave", "--password-stdin", stdin="short\n")
    assert (short.code, short.err) == (1, "error: password must be at least 8 characters\n")
    assert (home / "beambridge.db").exists()


def test_site_init_start_status_stop(
    cli: RunCli, home: Path, tmp_path: Path, live_server: LiveServer, alice: ApiUser
) -> None:
    from beambridge.site.config import SiteDir
    from tests.site.harness import cancel_local_pilots

    _login(cli, live_server, alice)
    polaris = tmp_path / "bb-polaris"
    made = cli("site", "init", str(polaris), "--name", "polaris", "--platform", "polaris")
    assert made.code == 0, made.err
    config = SiteDir(polaris).load()
    assert (config.scheduler, config.launcher.mpi_launcher, config.launcher.cores_per_node) == (
        "pbs",
        "mpiexec",
        32,
    )
    assert config.elastic_queue.optional_params == {"filesystems": "home:eagle"}
    again = cli("site", "init", str(polaris), "--name", "polaris")
    assert again.code == 1 and "already a site directory" in again.err
    unknown = cli("site", "init", str(tmp_path / "x"), "--name", "x", "--platform", "cray-xt5")
    assert unknown.code == 1 and "unknown platform 'cray-xt5'" in unknown.err

    laptop = tmp_path / "laptop"
    assert cli("site", "init", str(laptop), "--name", "laptop").code == 0
    try:
        started = cli("site", "start", str(laptop))
        assert started.code == 0 and "agent started" in started.out, started.err
        twice = cli("site", "start", str(laptop))
        assert twice.code != 0 and "already running" in twice.err
        status = json.loads(cli("site", "status", str(laptop), "--json").out)
        assert status["site"] == "laptop" and status["agent_pid"]
        assert "agent running" in cli("site", "status", str(laptop)).out
    finally:
        stopped = cli("site", "stop", str(laptop))
        cancel_local_pilots(SiteDir(laptop))
    assert stopped.code == 0 and "agent stopped" in stopped.out
    assert "agent not running" in cli("site", "status", str(laptop)).out


def test_job_show_prints_the_decision_of_a_job_placed_in_a_bulk_group(
    cli: RunCli, live_server: LiveServer, alice: ApiUser
) -> None:
    """A job of a 300-job bulk by name has no placement event of its own: job show finds its group's."""
    _login(cli, live_server, alice)
    for name in ("gx", "gy"):
        site = alice.site(name)
        alice.app(site["id"], "echo")
        alice.ok(alice.http.post(f"/sites/{site['id']}/heartbeat"))
    specs = [
        {"app": "echo", "sites": ["gx", "gy"], "workdir": f"b/{i}", "policy": "shortest_backlog"}
        for i in range(300)
    ]
    jobs = alice.jobs(specs)
    job = jobs[157]
    site = {s["id"]: s["name"] for s in alice.ok(alice.http.get("/sites"))["items"]}[job["site_id"]]  # type: ignore[index]
    shown = cli("job", "show", str(job["id"]))
    assert shown.code == 0, shown.err
    assert "Placement (placed, policy shortest_backlog)" in shown.out
    assert f"went to '{site}'" in " ".join(shown.out.split())
    assert f"The group of 300 jobs (first job {jobs[0]['id']}) per site" in " ".join(shown.out.split())


def test_jobs_by_app_name_on_sites_drain_groups_and_the_decision_shown(
    cli: RunCli, live_server: LiveServer, alice: ApiUser
) -> None:
    _login(cli, live_server, alice)
    for name in ("alpha", "beta"):
        site = alice.site(name)
        alice.app(site["id"], "echo")
        alice.ok(alice.http.post(f"/sites/{site['id']}/heartbeat"))
    made = cli(
        "job", "create", "--app", "echo", "--sites", "alpha,beta", "--workdir", "w", "--policy", "round_robin"
    )
    assert made.code == 0 and "placed: " in made.out, made.err
    job_id = made.out.split()[2]
    shown = cli("job", "show", job_id)
    assert (
        "Placement (placed, policy round_robin)" in shown.out and "alpha" in shown.out and "beta" in shown.out
    )
    refused = cli("job", "create", "--app", "nothing", "--sites", "alpha", "--workdir", "w")
    assert refused.code != 0 and "alpha: app 'nothing' is not registered" in refused.err
    listed = cli("site", "ls")
    assert "health" in listed.out and "up" in listed.out and "echo" in listed.out
    assert cli("site", "drain", "alpha", "--reason", "maintenance").code == 0
    assert "draining" in cli("site", "ls").out
    assert cli("site", "undrain", "alpha").code == 0
    assert cli("site", "group", "create", "pair", "--sites", "alpha,beta").code == 0
    assert "pair" in cli("site", "group", "ls").out
    grouped = cli("job", "create", "--app", "echo", "--site-group", "pair", "--workdir", "g")
    assert grouped.code == 0 and "placed: " in grouped.out
    assert cli("site", "group", "rm", "pair").code == 0
