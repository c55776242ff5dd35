"""The frame time comes from the raw file; a command-line value that contradicts it is an error."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from beambridge.cli.xpcs import app
from beambridge.xpcs.errors import InputFileError, OptionError
from beambridge.xpcs.pipeline import run_multitau
from beambridge.xpcs.result_file import read_multitau
from beambridge.xpcs.simulate import SpeckleParameters, simulate_speckle
from tests.xpcs.conftest import small_qmap, write_qmap_file, write_raw
from tests.xpcs.test_readers import write_imm

FRAME_TIME = "/entry/instrument/detector_1/frame_time"


def _raw_with_frame_time(path: Path, frame_time: float | None) -> Path:
    rng = np.random.default_rng(1)
    write_raw(path, rng.poisson(0.5, (80, 24, 32)).astype(np.uint16))
    if frame_time is not None:
        with h5py.File(path, "a") as f:
            f[FRAME_TIME] = frame_time
            f[FRAME_TIME].attrs["units"] = "s"
            f["/entry/instrument/detector_1/count_time"] = frame_time / 2
    return path


@pytest.fixture
def qmap_file(tmp_path: Path) -> Path:
    return write_qmap_file(tmp_path / "q.h5", small_qmap())


def test_frame_time_is_read_from_the_raw_file(tmp_path: Path, qmap_file: Path) -> None:
    raw = _raw_with_frame_time(tmp_path / "raw.h5", 0.01)
    out = tmp_path / "out.h5"
    summary = run_multitau(raw, qmap_file, out)
    assert summary["frame_time"] == 0.01 and summary["frame_time_source"] == "file"
    res = read_multitau(out)
    assert res.frame_time_s == pytest.approx(0.01)
    assert res.delay_s[0] == pytest.approx(0.01)
    with h5py.File(out, "r") as f:
        assert f["/entry/instrument/detector_1/count_time"][()] == pytest.approx(0.005)
        assert f["/xpcs/multitau/config/frame_time_source"][()] == b"file"


def test_a_contradicting_frame_time_is_an_error_unless_forced(tmp_path: Path, qmap_file: Path) -> None:
    raw = _raw_with_frame_time(tmp_path / "raw.h5", 0.01)
    out = tmp_path / "out.h5"
    with pytest.raises(OptionError, match=r"records a frame time of 0\.01 s but 1 s was given"):
        run_multitau(raw, qmap_file, out, frame_time=1.0)
    assert not out.exists()
    run_multitau(raw, qmap_file, out, frame_time=0.01)  # agreeing is fine
    summary = run_multitau(raw, qmap_file, out, frame_time=0.02, force_frame_time=True)
    assert summary["frame_time_source"] == "argument"
    assert read_multitau(out).frame_time_s == pytest.approx(0.02)


def test_without_metadata_the_argument_or_frames(tmp_path: Path, qmap_file: Path) -> None:
    raw = _raw_with_frame_time(tmp_path / "raw.h5", None)
    out = tmp_path / "out.h5"
    assert run_multitau(raw, qmap_file, out, frame_time=0.5)["frame_time_source"] == "argument"
    assert read_multitau(out).frame_time_s == 0.5
    summary = run_multitau(raw, qmap_file, out)
    assert (summary["frame_time"], summary["frame_time_source"]) == (1.0, "unknown")
    with pytest.raises(OptionError, match="positive"):
        run_multitau(raw, qmap_file, out, frame_time=-1.0)


def test_bad_frame_time_metadata_is_named(tmp_path: Path, qmap_file: Path) -> None:
    raw = _raw_with_frame_time(tmp_path / "raw.h5", None)
    with h5py.File(raw, "a") as f:
        f[FRAME_TIME] = "fast"
    with pytest.raises(InputFileError, match=FRAME_TIME):
        run_multitau(raw, qmap_file, tmp_path / "out.h5")


def test_imm_frame_time_from_regular_timestamps(tmp_path: Path, qmap_file: Path) -> None:
    frames = np.random.default_rng(0).poisson(0.5, (40, 24, 32)).astype(np.uint16)
    imm = write_imm(tmp_path / "raw.imm", frames, compressed=True)  # elapsed = 0.01·k
    summary = run_multitau(imm, qmap_file, tmp_path / "out.h5")
    assert summary["frame_time"] == pytest.approx(0.01) and summary["frame_time_source"] == "file"


def test_the_simulator_writes_its_frame_time(tmp_path: Path) -> None:
    params = SpeckleParameters(
        shape=(32, 32), n_frames=40, frame_time=2.5e-3, beam_center=(16, 16), r_min=3, r_max=14
    )
    paths = simulate_speckle(tmp_path / "sim.h5", params)
    with h5py.File(paths["raw"], "r") as f:
        assert f[FRAME_TIME][()] == 2.5e-3
    summary = run_multitau(paths["raw"], paths["qmap"], tmp_path / "out.h5")
    assert summary["frame_time"] == 2.5e-3


def test_cli_refuses_a_contradicting_frame_time(tmp_path: Path, qmap_file: Path) -> None:
    raw = _raw_with_frame_time(tmp_path / "raw.h5", 0.01)
    out = tmp_path / "out.h5"
    args = ["corr", str(raw), "--qmap", str(qmap_file), "-o", str(out), "--frame-time", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "records a frame time of 0.01 s" in result.output and not out.exists()
    assert CliRunner().invoke(app, [*args, "--force-frame-time"]).exit_code == 0
    assert read_multitau(out).frame_time_s == 1.0
