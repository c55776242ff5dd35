"""Over a quota, the command says which, what you have and when to try again, on one line (exit 1)."""

from __future__ import annotations

from pathlib import Path

from beambridge.server.app import create_app
from beambridge.server.users import add_user
from tests.cli.conftest import RunCli
from tests.conftest import PASSWORD, make_settings
from tests.servers import LiveServer


def test_a_job_over_the_quota_is_refused_in_one_clear_line(
    cli: RunCli, tmp_path: Path, password_hash: str
) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    app = create_app(make_settings(tmp_path / "server", url, quota_jobs_per_minute=0, quota_jobs_in_system=1))
    add_user(app.state.ctx.db, "ada", PASSWORD, password_hash=password_hash)
    with LiveServer(app) as server:
        assert cli("login", server.url, "--user", "ada", "--password-stdin", stdin=PASSWORD + "\n").code == 0
        assert cli("site", "create", "polaris").code == 0
        made = cli("app", "create", "--site", "1", "echo")
        assert made.code == 0, made.err
        first = cli("job", "create", "--app", "echo", "--site", "polaris", "--workdir", "w/1")
        assert first.code == 0, first.err
        second = cli("job", "create", "--app", "echo", "--site", "polaris", "--workdir", "w/2")
    app.state.ctx.db.dispose()
    assert second.code == 1, second.out
    lines = second.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: quota: at most 1 of your jobs"), second.err
    assert "you have 1" in lines[0] and "cancel" in lines[0] and "Traceback" not in second.err
