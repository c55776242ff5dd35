"""The `xpcs` command group: one-line errors with exit code 2, a frames/s line on success."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from beambridge.cli.xpcs import app

runner = CliRunner()


def test_corr_reports_frames_per_second(
    small_run: tuple[Path, Path, np.ndarray, object], tmp_path: Path
) -> None:
    raw, qmap_path, _, _ = small_run
    out = tmp_path / "out.h5"
    result = runner.invoke(app, ["corr", str(raw), "--qmap", str(qmap_path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "frames/s" in result.output.strip().splitlines()[-1]
    plot = runner.invoke(app, ["plot", str(out), "-o", str(tmp_path / "g2.png")])
    assert plot.exit_code == 0 and (tmp_path / "g2.png").stat().st_size > 1000


def test_corr_error_is_one_line(tmp_path: Path, small_run: tuple[Path, Path, np.ndarray, object]) -> None:
    _, qmap_path, _, _ = small_run
    result = runner.invoke(
        app, ["corr", str(tmp_path / "missing.h5"), "--qmap", str(qmap_path), "-o", "x.h5"]
    )
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == [f"error: {tmp_path / 'missing.h5'}: raw-data file does not exist"]
    assert "Traceback" not in result.output
