"""The README's Python tour runs as written, against a real server."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from beambridge import Client
from tests.conftest import PASSWORD, ApiUser

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_tour(
    alice: ApiUser, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    [tour] = [
        block
        for block in re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
        if "from_saved" in block
    ]
    monkeypatch.setenv("BEAMBRIDGE_HOME", str(tmp_path))
    Client.login(alice.base_url, alice.name, PASSWORD).save()
    namespace: dict[str, object] = {}
    exec(compile(tour, "README.md", "exec"), namespace)
    printed = capsys.readouterr().out.splitlines()
    assert sum("AWAITING_PARENTS" in line for line in printed) == 3
    assert sum("JOB_FINISHED" in line for line in printed) == 3
    client = namespace["client"]
    assert isinstance(client, Client)
    states = {job.state for job in client.jobs.filter(tags={"sample": "A001"})}
    assert states == {"JOB_FINISHED"}
    assert len(states) == 1 and client.jobs.filter(tags={"sample": "A001"}).count() == 4
    client.close()
