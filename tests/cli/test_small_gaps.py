"""Small things a user notices: a site name already in use, errors without class names, agents' polls kept
out of the server's INFO log, an expired login that says to log in again."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from tests.cli.conftest import RunCli
from tests.conftest import PASSWORD, ApiUser
from tests.servers import LiveServer


def test_site_init_refuses_a_name_in_use_unless_reused(
    cli: RunCli, live_server: LiveServer, alice: ApiUser, tmp_path: Path
) -> None:
    assert (
        cli("login", live_server.url, "--user", alice.name, "--password-stdin", stdin=PASSWORD + "\n").code
        == 0
    )
    first = cli("site", "init", str(tmp_path / "one"), "--name", "laptop")
    assert first.code == 0, first.err
    second = cli("site", "init", str(tmp_path / "two"), "--name", "laptop")
    assert second.code == 1 and second.err.startswith("error: you already have a site named 'laptop' (id ")
    assert "Error:" not in second.err and "--reuse" in second.err  # one line, no class name
    assert not (tmp_path / "two" / "site.yml").exists()
    reused = cli("site", "init", str(tmp_path / "two"), "--name", "laptop", "--reuse")
    assert reused.code == 0, reused.err
    again = cli("site", "init", str(tmp_path / "one"), "--name", "other")
    assert again.code == 1 and again.err.startswith("error: ") and "SiteConfigError" not in again.err


def test_agent_polls_log_at_debug(alice: ApiUser, caplog: pytest.LogCaptureFixture) -> None:
    site = alice.site()
    token = alice.ok(alice.http.post(f"/sites/{site['id']}/tokens", json={"name": "agent"}), 201)["token"]  # type: ignore[index]
    with caplog.at_level(logging.DEBUG, logger="beambridge.server.access"):
        alice.ok(alice.http.get("/sites"))
        alice.ok(alice.http.get("/jobs", headers={"Authorization": f"Bearer {token}"}))
    levels = {r.levelno for r in caplog.records if r.name == "beambridge.server.access"}
    assert levels == {logging.INFO, logging.DEBUG}, [(r.levelname, r.getMessage()) for r in caplog.records]


def test_user_ls_and_passwd(cli: RunCli) -> None:
    assert cli("user", "add", "maya", "--password-stdin", stdin="first password\n").code == 0
    assert cli("user", "add", "jon", "--password-stdin", stdin="second password\n").code == 0
    listed = json.loads(cli("user", "ls", "--json").out)
    assert [user["name"] for user in listed] == ["maya", "jon"] and listed[0]["disabled_at"] is None
    assert cli("user", "disable", "jon").code == 0
    table = cli("user", "ls").out
    assert "maya" in table and "yes" in table
    changed = cli("user", "passwd", "maya", "--password-stdin", stdin="a new password\n")
    assert (changed.code, changed.out.strip()) == (0, "password of 'maya' changed")
    unknown = cli("user", "passwd", "nobody", "--password-stdin", stdin="a new password\n")
    assert (unknown.code, unknown.err) == (1, "error: no user named 'nobody'\n")
    short = cli("user", "passwd", "maya", "--password-stdin", stdin="short\n")
    assert short.code == 1 and "at least 8 characters" in short.err


def test_shell_completion() -> None:
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "_BEAMBRIDGE_COMPLETE": "complete_bash",
        "COMP_WORDS": "beambridge job re",
        "COMP_CWORD": "2",
    }
    done = subprocess.run(
        [sys.executable, "-m", "beambridge"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.split() == ["retry"], done
