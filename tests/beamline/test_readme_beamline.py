"""The README's beamline section: its workflow file stores and renders, its Bluesky example runs against a
real server with a real RunEngine, and the watcher options it shows exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from beambridge.apps.builtin import XpcsMultiTau, XpcsQuickLook
from beambridge.beamline.workflow_file import parse_workflow
from beambridge.cli.main import main
from beambridge.client import Client
from tests.conftest import PASSWORD, ApiUser

README = Path(__file__).resolve().parents[2] / "README.md"


def section() -> str:
    text = README.read_text()
    start = text.index("## Beamline automation")
    return text[start : text.index("\n## ", start + 10)]


def test_the_workflow_file_and_the_bluesky_example_run_as_written(
    alice: ApiUser, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    [yaml_block] = re.findall(r"```yaml\n(.*?)```", section(), re.S)
    [python_block] = re.findall(r"```python\n(.*?)```", section(), re.S)
    monkeypatch.setenv("BEAMBRIDGE_HOME", str(tmp_path))
    with Client.login(alice.base_url, alice.name, PASSWORD) as user:
        user.save()
        site = user.sites.create("beamline-site")
        for app in (XpcsQuickLook, XpcsMultiTau):
            body = app.registration(site.id).model_dump(mode="json")
            alice.ok(alice.http.post("/apps", json=body), 201)
        user.workflows.put(parse_workflow(yaml_block))
    namespace: dict[str, object] = {}
    exec(compile(python_block, "README.md", "exec"), namespace)
    client = namespace["client"]
    assert isinstance(client, Client)
    [submission] = client.submissions.list(workflow="xpcs")
    assert submission.source.value == "bluesky"
    assert {name: step.status.value for name, step in submission.steps.items()} == {
        "quick": "submitted",
        "full": "held",
    }
    quick = client.jobs.get(submission.steps["quick"].job_id or 0)
    assert quick.parameters["raw"] == "/data/detector/silica_25C_0001.h5" and quick.priority == 100
    assert f"{submission.id} " in capsys.readouterr().out
    client.close()


def test_the_watcher_options_shown_exist(capsys: pytest.CaptureFixture[str]) -> None:
    [console] = re.findall(r"```console\n(.*?)```", section(), re.S)
    options = set(re.findall(r" (--[a-z-]+)", console))
    assert options >= {"--workflow", "--pattern", "--settle", "--webhook"}
    assert main(["watch", "--help"]) == 0
    helptext = capsys.readouterr().out
    lines = console.splitlines()
    watch_options = set(re.findall(r" (--[a-z-]+)", "\n".join(x for x in lines if " watch " in x)))
    for option in watch_options - {"--workflow"} | {"--marker", "--live", "--group"}:
        assert option in helptext, option
    assert main(["monitor", "--help"]) == 0
    helptext = capsys.readouterr().out
    for option in set(re.findall(r" (--[a-z-]+)", "\n".join(x for x in lines if " monitor " in x))):
        assert option in helptext, option
