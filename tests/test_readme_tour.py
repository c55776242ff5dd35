"""The README's five-minute tour, run as a new user would run it: every ``$`` line of its shell blocks in a
shell (``~`` is a fresh home), and its Python block, against the real server the tour starts and the local
site it makes. The only changes: port 8000 becomes a free port (another service may hold 8000 here), and
the password prompts read a password from stdin. Each output line the README shows must appear (paths,
pids and ids may differ), and a command shown with an ``error:`` line must fail with it."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from beambridge.site.config import SiteDir
from tests.site.harness import cancel_local_pilots, wait_for

README = Path(__file__).resolve().parents[1] / "README.md"
PASSWORD = "a tour password"


@dataclass
class Step:
    kind: str  # "shell" or "python"
    text: str
    expected: list[str] = field(default_factory=list)


def tour_steps() -> list[Step]:
    """The tour's shell commands (with the output lines shown under each) and its Python block, in order."""
    readme = README.read_text()
    section = readme[readme.index("## A five-minute tour") : readme.index("### Jobs and their states")]
    steps: list[Step] = []
    for kind, body in re.findall(r"```(console|python)\n(.*?)```", section, re.S):
        if kind == "python":
            steps.append(Step("python", body))
            continue
        for line in body.splitlines():
            if line.startswith("$ "):
                steps.append(Step("shell", line[2:]))
            elif line.strip() and steps:
                steps[-1].expected.append(line)
    return steps


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pattern(line: str) -> re.Pattern[str]:
    """An output line as shown, allowing for this run's home directory, pid and ids."""
    text = re.escape(line)
    text = text.replace(re.escape("/home/maya"), r"\S+").replace(re.escape("~/.beambridge"), r"\S+")
    text = re.sub(r"pid\\ \d+", r"pid\\ \\d+", text)
    text = re.sub(r"id\\ \d+", r"id\\ \\d+", text)
    return re.compile(text)


@pytest.fixture
def tour_home(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "home"
    home.mkdir()
    yield home
    site = home / "laptop"
    if (site / "site.yml").exists():
        subprocess.run([sys.executable, "-m", "beambridge", "site", "stop", str(site)], capture_output=True,
                       env=_env(home), timeout=90, check=False)  # fmt: skip
        cancel_local_pilots(SiteDir(site))


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEAMBRIDGE_")}
    env.update(HOME=str(home), COLUMNS="100", PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}")
    return env


@pytest.mark.slow
def test_the_tour_works_as_written(
    tour_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    steps = tour_steps()
    assert [s.kind for s in steps].count("python") == 1 and len(steps) > 10
    port = str(_free_port())
    env = _env(tour_home)
    server: subprocess.Popen[bytes] | None = None
    try:
        for step in steps:
            if step.kind == "python":
                monkeypatch.setenv("HOME", str(tour_home))
                monkeypatch.delenv("BEAMBRIDGE_HOME", raising=False)
                monkeypatch.chdir(tour_home)
                namespace: dict[str, object] = {}
                exec(compile(step.text, "README.md", "exec"), namespace)
                printed = capsys.readouterr().out.splitlines()
                assert sum("JOB_FINISHED" in line for line in printed) == 2, printed
                [d_line] = [line for line in printed if line.startswith("D =")]
                assert abs(float(d_line.split()[2]) - 2.0) < 0.2, d_line
                namespace["client"].close()  # type: ignore[attr-defined]
                continue
            command = step.text.replace("8000", port)
            expected = [line.replace("8000", port) for line in step.expected]
            code = re.sub(r"\s+#.*$", "", command).rstrip()  # without its comment
            if code.endswith("&"):
                log = (tour_home / "server.log").open("wb")
                server = subprocess.Popen(["bash", "-c", "exec " + code.rstrip("&")], cwd=tour_home,
                                          env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
                wait_for(lambda: _healthy(port), 60, what="the tour's server")
                continue
            stdin = f"{PASSWORD}\n{PASSWORD}\n" if "user add" in command or "login" in command else ""
            # output to a file, not a pipe: `site start` leaves a daemon that would hold a pipe open
            with (tour_home / "step.out").open("w+b") as captured:
                done = subprocess.run(["bash", "-c", command], cwd=tour_home, env=env, input=stdin.encode(),
                                      stdout=captured, stderr=subprocess.STDOUT, timeout=600, check=False)  # fmt: skip
                captured.seek(0)
                out = captured.read().decode(errors="replace")
            failing = any(line.startswith("error:") for line in expected)
            assert (done.returncode != 0) == failing, f"$ {command}\nexit {done.returncode}\n{out}"
            for line in expected:
                assert _pattern(line).search(out), f"$ {command}\nexpected: {line}\ngot:\n{out}"
    finally:
        if server is not None and server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)


def _healthy(port: str) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
