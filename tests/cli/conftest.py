"""Running the CLI in-process (``main(args)``) with its own BEAMBRIDGE_HOME."""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest

from beambridge.cli.main import main


@dataclass
class Outcome:
    code: int
    out: str
    err: str


class RunCli(Protocol):
    def __call__(self, *args: str, stdin: str = "") -> Outcome: ...


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BEAMBRIDGE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("BEAMBRIDGE_DATABASE_URL", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    return tmp_path / "home"


@pytest.fixture
def cli(home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> RunCli:
    def run(*args: str, stdin: str = "") -> Outcome:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        capsys.readouterr()
        code = main(list(args))
        captured = capsys.readouterr()
        return Outcome(code, captured.out, captured.err)

    return run
