"""``beambridge workflow put|ls``, ``beambridge submit`` and ``beambridge submissions``."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import RunCli
from tests.conftest import PASSWORD, ApiUser
from tests.servers import LiveServer

WORKFLOW = """
name: xpcs
filename_pattern: '(?P<sample>[a-z]+)_(?P<n>\\d+)'
steps:
  - name: quick
    app: corr
    quick_look: true
    priority: 100
    parameters: {label: '{{ fields.sample }}', n: '{{ fields.n | int }}'}
  - name: full
    app: corr
    after: [quick]
    parameters: {label: '{{ metadata.temperature }}K', n: 2}
"""


def test_workflow_put_submit_twice_and_list(
    cli: RunCli, tmp_path: Path, live_server: LiveServer, alice: ApiUser
) -> None:
    assert (
        cli("login", live_server.url, "--user", alice.name, "--password-stdin", stdin=PASSWORD + "\n").code
        == 0
    )
    site = alice.site()
    alice.app(site["id"], "corr", parameters={"label": {}, "n": {"type": "int"}})
    path = tmp_path / "xpcs.yml"
    path.write_text(WORKFLOW)
    stored = cli("workflow", "put", str(path))
    assert stored.code == 0 and "stored workflow 'xpcs'" in stored.out and "quick, full" in stored.out
    assert "quick" in cli("workflow", "ls").out

    data = tmp_path / "silica_7.h5"
    data.write_bytes(b"frames")
    first = cli("submit", "xpcs", str(data), "--metadata", '{"temperature": 300}')
    assert first.code == 0 and first.out.startswith("submitted: submission"), first.err
    again = cli("submit", "xpcs", str(data), "--metadata", '{"temperature": 300}')
    assert again.out.startswith("already submitted"), again.out
    [sub] = json.loads(cli("submissions", "--json").out)
    jobs = {j["id"]: j for j in alice.ok(alice.http.get("/jobs"))["items"]}
    assert jobs[sub["steps"]["quick"]["job_id"]]["parameters"] == {"label": "silica", "n": 7}
    assert jobs[sub["steps"]["full"]["job_id"]]["parameters"] == {"label": "300K", "n": 2}
    table = cli("submissions").out
    assert "silica_7.h5" in table and "first result: none yet" in table


def test_bad_workflow_files_are_one_line_errors(cli: RunCli, tmp_path: Path) -> None:
    path = tmp_path / "bad.yml"
    for text, needle in [
        ("name: [unclosed", "not valid YAML"),
        ("- a list", "must be a mapping"),
        ("name: x\nsteps:\n  - {name: a, app: b, after: [zz]}", "not an earlier step"),
    ]:
        path.write_text(text)
        outcome = cli("workflow", "put", str(path))
        assert outcome.code == 1 and needle in outcome.err and outcome.err.count("\n") == 1, outcome.err
    missing = cli("workflow", "put", str(tmp_path / "none.yml"))
    assert missing.code == 1 and "cannot read workflow file" in missing.err
