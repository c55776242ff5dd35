"""``beambridge demo --beamline`` end to end (smaller): datasets arrive, quick looks appear, the full step
runs where D changed and is skipped where it did not."""

from __future__ import annotations

from pathlib import Path

import pytest

from beambridge.cli.demo_beamline import run_beamline_demo


@pytest.mark.slow
def test_beamline_demo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    figures = run_beamline_demo(tmp_path, datasets=4, timeout_s=240)
    assert figures["datasets"] == 4 and figures["failed"] == 0
    assert len(figures["first"]) == 4 and figures["skipped"] == 2  # datasets 1 and 3: no change
    out = capsys.readouterr().out
    assert "quick look after the file closed: median" in out and "skipped for 2 unchanged" in out
