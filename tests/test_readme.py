"""The README's Python tour runs as written, against a real server and a real local site agent."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from beambridge import Client
from beambridge.site.config import SiteDir
from beambridge.site.init import init_site
from tests.conftest import PASSWORD, ApiUser
from tests.site.harness import AgentProcess, cancel_local_pilots, wait_for

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.slow
def test_readme_python_tour(
    alice: ApiUser, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    [tour] = [
        block
        for block in re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
        if "from_saved" in block and "RunEngine" not in block  # the beamline section has its own test
    ]
    monkeypatch.setenv("BEAMBRIDGE_HOME", str(tmp_path))
    user = Client.login(alice.base_url, alice.name, PASSWORD)
    user.save()
    # what `beambridge site init ./laptop --name laptop --platform local` and `site start` do
    init_site(
        tmp_path / "laptop",
        "laptop",
        "local",
        user,
        overrides={"periods": {"scheduler_sync": 0.5, "elastic_queue": 0.5, "processing": 0.5}},
    )
    site = SiteDir(tmp_path / "laptop")
    agent = AgentProcess(site)
    try:
        wait_for(lambda: {"XpcsSimulate", "XpcsMultiTau"} <= {a.name for a in user.apps.all()}, 60)
        namespace: dict[str, object] = {}
        exec(compile(tour, "README.md", "exec"), namespace)
    finally:
        agent.stop()
        cancel_local_pilots(site)
        user.close()
    printed = capsys.readouterr().out.splitlines()
    assert sum("JOB_FINISHED" in line for line in printed) == 2, printed
    [d_line] = [line for line in printed if line.startswith("D =")]
    assert abs(float(d_line.split()[2]) - 2.0) < 0.2, d_line
    assert (tmp_path / "laptop/data/A001/g2/result.hdf").exists()
    client = namespace["client"]
    assert isinstance(client, Client)
    client.close()
