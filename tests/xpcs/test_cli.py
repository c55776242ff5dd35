"""The `xpcs` command group: one-line errors with exit code 2, a frames/s line on success."""

from __future__ import annotations

from pathlib import Path

import h5py
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
    spread = tmp_path / "spread.h5"
    result = runner.invoke(
        app, ["corr", str(raw), "--qmap", str(qmap_path), "-o", str(spread), "--pixel-spread"]
    )
    assert result.exit_code == 0, result.output
    with h5py.File(out, "r") as plain, h5py.File(spread, "r") as both:
        assert "normalized_g2_err_pixel_spread" not in plain["/xpcs/multitau"]  # only when asked for
        assert (
            both["/xpcs/multitau/normalized_g2_err_pixel_spread"].shape
            == plain["/xpcs/multitau/normalized_g2"].shape
        )
        for key in ("normalized_g2", "normalized_g2_err", "normalized_g2_cov"):  # nothing else changes
            assert np.array_equal(plain["/xpcs/multitau"][key][()], both["/xpcs/multitau"][key][()]), key


def test_corr_error_is_one_line(tmp_path: Path, small_run: tuple[Path, Path, np.ndarray, object]) -> None:
    _, qmap_path, _, _ = small_run
    result = runner.invoke(
        app, ["corr", str(tmp_path / "missing.h5"), "--qmap", str(qmap_path), "-o", "x.h5"]
    )
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == [f"error: {tmp_path / 'missing.h5'}: raw-data file does not exist"]
    assert "Traceback" not in result.output
