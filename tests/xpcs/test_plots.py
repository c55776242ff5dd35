"""Figures a scientist would put in a logbook: titled, every axis with a unit and no detached offset,
fit residuals, and the two-time maps `corr --twotime` computes."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from typer.testing import CliRunner

from beambridge.cli.xpcs import app
from beambridge.xpcs.fitting import fit_result
from beambridge.xpcs.pipeline import run_twotime
from beambridge.xpcs.plotting import g2_figure, scaled_axis, twotime_figure
from beambridge.xpcs.result_file import read_multitau, read_twotime
from beambridge.xpcs.simulate import SpeckleParameters, simulate_speckle


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("plots")
    params = SpeckleParameters(
        shape=(48, 48), n_frames=300, photons_per_pixel=0.5, diffusion=2e8, n_q=4,
        static_q_per_dynamic=2, beam_center=(24.0, 24.0), r_min=4, r_max=22, seed=3,
    )  # fmt: skip
    paths = simulate_speckle(tmp / "run.h5", params)
    out = tmp / "tt.h5"
    run_twotime(paths["raw"], paths["qmap"], out, bins=[1, 3])
    return out


def test_g2_figure_is_titled_with_units_and_residuals(result: Path) -> None:
    res = read_multitau(result)
    fig = g2_figure(res, fit_result(res))
    fig.canvas.draw()
    title = fig._suptitle.get_text()  # type: ignore[union-attr]
    assert "simulated speckle" in title and "run.h5 → tt.h5" in title and "300 frames × 0.001 s" in title
    g2_ax, res_ax, rate_ax = fig.axes
    assert res_ax.get_ylabel() == "(g2 − fit) / σ" and res_ax.get_xlabel() == "delay τ (s)"
    residuals = np.concatenate([line.get_ydata() for line in res_ax.lines if len(line.get_ydata()) > 2])
    assert residuals.size >= 4 * res.g2.shape[0] and np.nanmax(np.abs(residuals)) < 10
    assert re.fullmatch(r"q² \(10⁻[⁰¹²³⁴⁵⁶⁷⁸⁹]+ Å⁻²\)", rate_ax.get_xlabel()), rate_ax.get_xlabel()
    assert rate_ax.get_ylabel().startswith("Γ (") and rate_ax.get_ylabel().endswith("s⁻¹)")
    for axis in (rate_ax.xaxis, rate_ax.yaxis, g2_ax.yaxis):
        assert axis.get_offset_text().get_text() == ""  # no detached "1e−5"


def test_scaled_axis() -> None:
    assert scaled_axis([2e-6, 3.5e-5], "q²", "Å⁻²") == (1e-6, "q² (10⁻⁶ Å⁻²)")
    assert scaled_axis([5.0, 120.0], "Γ", "s⁻¹") == (1.0, "Γ (s⁻¹)")
    assert scaled_axis([4e4], "Γ", "s⁻¹") == (1e3, "Γ (10³ s⁻¹)")


def test_twotime_maps_are_drawn_symmetric(result: Path) -> None:
    tt = read_twotime(result)
    assert tt is not None and tt.bins == [1, 3] and tt.step_s == pytest.approx(1e-3)
    fig = twotime_figure(tt)
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 2
    for image in images:
        c2 = np.asarray(image.get_array())
        assert c2.shape == (300, 300) and np.array_equal(c2, c2.T)
    assert images[0].get_extent() == pytest.approx((0, 0.3, 0, 0.3))


def test_cli_plot_writes_g2_and_twotime(result: Path, tmp_path: Path) -> None:
    g2_png, tt_png = tmp_path / "g2.png", tmp_path / "tt.png"
    out = CliRunner().invoke(
        app, ["plot", str(result), "-o", str(g2_png), "--twotime-out", str(tt_png), "--fit"]
    )
    assert out.exit_code == 0, out.output
    assert f"wrote {g2_png}" in out.output and f"wrote {tt_png}" in out.output
    for png in (g2_png, tt_png):
        assert matplotlib.image.imread(png).shape[0] > 400
