"""Bad inputs give one clear error naming the file and the problem, and leave no output file."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from beambridge.xpcs.errors import EmptyBinError, InputFileError, MissingDatasetError, ShapeMismatchError
from beambridge.xpcs.pipeline import run_multitau
from tests.xpcs.conftest import small_qmap, write_qmap_file, write_raw
from tests.xpcs.test_readers import write_imm


def _run_fails(raw: Path, qmap: Path, out: Path, error: type[Exception], *words: str) -> None:
    with pytest.raises(error) as info:
        run_multitau(raw, qmap, out)
    message = str(info.value)
    for word in words:
        assert word in message, message
    assert not out.exists()
    assert not any(p.name.startswith(f".{out.name}.partial") for p in out.parent.iterdir())


def test_missing_dataset(tmp_path: Path) -> None:
    raw = tmp_path / "raw.h5"
    with h5py.File(raw, "w") as f:
        f["/entry/data/other"] = np.zeros((3, 24, 32))
    q = write_qmap_file(tmp_path / "q.h5", small_qmap())
    _run_fails(raw, q, tmp_path / "out.h5", MissingDatasetError, str(raw), "missing dataset /entry/data/data")


def test_wrong_shape(tmp_path: Path) -> None:
    raw = tmp_path / "raw.h5"
    with h5py.File(raw, "w") as f:
        f["/entry/data/data"] = np.zeros((24, 32), dtype=np.uint16)
    q = write_qmap_file(tmp_path / "q.h5", small_qmap())
    _run_fails(raw, q, tmp_path / "out.h5", ShapeMismatchError, str(raw), "(frames, rows, cols)")


def test_qmap_frame_size_mismatch(tmp_path: Path) -> None:
    raw = write_raw(tmp_path / "raw.h5", np.ones((20, 24, 30), dtype=np.uint16))
    q = write_qmap_file(tmp_path / "q.h5", small_qmap())
    _run_fails(raw, q, tmp_path / "out.h5", ShapeMismatchError, str(raw), "24x30", str(q))


def test_truncated_imm(tmp_path: Path) -> None:
    frames = np.ones((10, 24, 32), dtype=np.uint16)
    imm = write_imm(tmp_path / "raw.imm", frames, compressed=False)
    data = imm.read_bytes()
    imm.write_bytes(data[: len(data) - 100])
    q = write_qmap_file(tmp_path / "q.h5", small_qmap())
    _run_fails(imm, q, tmp_path / "out.h5", InputFileError, str(imm), "truncated", "frame 9")


def test_truncated_hdf5(tmp_path: Path) -> None:
    raw = write_raw(tmp_path / "raw.h5", np.ones((50, 24, 32), dtype=np.uint16))
    data = raw.read_bytes()
    raw.write_bytes(data[: len(data) // 2])
    q = write_qmap_file(tmp_path / "q.h5", small_qmap())
    _run_fails(raw, q, tmp_path / "out.h5", InputFileError, str(raw))


def test_missing_file(tmp_path: Path) -> None:
    q = write_qmap_file(tmp_path / "q.h5", small_qmap())
    _run_fails(tmp_path / "nope.h5", q, tmp_path / "out.h5", InputFileError, "nope.h5", "does not exist")


def test_empty_bin(tmp_path: Path) -> None:
    qmap = small_qmap()
    raw = write_raw(tmp_path / "raw.h5", np.ones((20, 24, 32), dtype=np.uint16))
    q = tmp_path / "q.h5"
    with h5py.File(q, "w") as f:
        qmap.write_group(f.create_group("qmap"))
        dq = f["/qmap/dynamic_roi_map"][()]
        dq[dq == 2] = 3  # bin 2 loses all its pixels
        f["/qmap/dynamic_roi_map"][...] = dq
    _run_fails(raw, q, tmp_path / "out.h5", EmptyBinError, str(q), "dynamic bin 2 has no pixels")


def test_existing_output_untouched_on_failure(tmp_path: Path) -> None:
    out = tmp_path / "out.h5"
    out.write_bytes(b"previous result")
    raw = write_raw(tmp_path / "raw.h5", np.ones((20, 24, 30), dtype=np.uint16))
    q = write_qmap_file(tmp_path / "q.h5", small_qmap())
    with pytest.raises(ShapeMismatchError):
        run_multitau(raw, q, out)
    assert out.read_bytes() == b"previous result"
