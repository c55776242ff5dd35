"""IMM and Rigaku readers round-trip frames written by independent writers in this file."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from beambridge.xpcs.io import open_frames
from beambridge.xpcs.pipeline import run_multitau
from tests.xpcs.conftest import small_qmap, write_qmap_file, write_raw


def write_imm(path: Path, frames: np.ndarray, compressed: bool) -> Path:
    """APS IMM: 1024-byte header per frame (compression@4, rows@108, cols@112, bytes@116, dlen@152)."""
    with path.open("wb") as f:
        for k, frame in enumerate(frames):
            header = bytearray(1024)
            flat = frame.ravel()
            idx = np.flatnonzero(flat) if compressed else np.arange(flat.size)
            np.frombuffer(header, dtype="<i4")  # header stays little-endian bytes
            header[4:8] = np.int32(6 if compressed else 0).tobytes()
            header[108:112] = np.int32(frame.shape[0]).tobytes()
            header[112:116] = np.int32(frame.shape[1]).tobytes()
            header[116:120] = np.int32(2).tobytes()
            header[128:136] = np.float64(0.01 * k).tobytes()
            header[152:156] = np.uint32(idx.size).tobytes()
            f.write(bytes(header))
            if compressed:
                f.write(idx.astype("<i4").tobytes())
                f.write(flat[idx].astype("<u2").tobytes())
            else:
                f.write(flat.astype("<u2").tobytes())
    return path


def write_rigaku(path: Path, frames: np.ndarray) -> Path:
    """Rigaku: uint64 word = frame << 40 | pixel << 16 | count."""
    words = []
    for k, frame in enumerate(frames):
        idx = np.flatnonzero(frame)
        words.append(
            (np.uint64(k) << np.uint64(40))
            | (idx.astype(np.uint64) << np.uint64(16))
            | frame.ravel()[idx].astype(np.uint64)
        )
    np.concatenate(words).astype("<u8").tofile(path)
    return path


@pytest.fixture
def frames() -> np.ndarray:
    rng = np.random.default_rng(2)
    return rng.poisson(0.3, (60, 24, 32)).astype(np.uint16)


@pytest.mark.parametrize("compressed", [False, True])
def test_imm_round_trip(tmp_path: Path, frames: np.ndarray, compressed: bool) -> None:
    reader = open_frames(write_imm(tmp_path / "x.imm", frames, compressed))
    assert reader.n_frames == 60 and reader.shape == (24, 32) and reader.is_sparse == compressed
    np.testing.assert_array_equal(reader.read_dense(0, 60), frames)
    np.testing.assert_array_equal(reader.read_dense(17, 23), frames[17:23])


def test_rigaku_round_trip(tmp_path: Path, frames: np.ndarray) -> None:
    frames[-1, 0, 0] = 1  # the last frame must hold an event to be counted
    reader = open_frames(write_rigaku(tmp_path / "x.bin", frames), shape=(24, 32))
    assert reader.n_frames == 60
    np.testing.assert_array_equal(reader.read_dense(0, 60), frames)
    ptr, _pix, val = reader.read_events(5, 9)
    assert ptr.size == 5 and val.sum() == frames[5:9].sum()


def test_all_formats_give_the_same_g2(tmp_path: Path, frames: np.ndarray) -> None:
    frames[-1, 0, 0] = 1
    qmap_path = write_qmap_file(tmp_path / "q.h5", small_qmap())
    sources = {
        "h5": write_raw(tmp_path / "raw.h5", frames),
        "imm": write_imm(tmp_path / "raw.imm", frames, False),
        "immc": write_imm(tmp_path / "rawc.imm", frames, True),
        "bin": write_rigaku(tmp_path / "raw.bin", frames),
    }
    g2 = {}
    for name, src in sources.items():
        run_multitau(src, qmap_path, tmp_path / f"{name}.out.h5", rigaku_shape=(24, 32))
        with h5py.File(tmp_path / f"{name}.out.h5", "r") as f:
            g2[name] = f["/xpcs/multitau/normalized_g2"][()]
    for name in ("imm", "immc", "bin"):
        np.testing.assert_array_equal(g2[name], g2["h5"])


def test_hdf5_blocks_are_read_in_place_into_one_buffer(tmp_path: Path, frames: np.ndarray) -> None:
    from beambridge.xpcs.preprocess import Corrections, FrameSelection, FrameStream

    reader = open_frames(write_raw(tmp_path / "raw.h5", frames))
    stream = FrameStream(reader, FrameSelection(), Corrections())
    assert stream.reads_in_place
    seen, bases = [], set()
    for j0, block in stream.blocks(16, reuse=True):
        assert isinstance(block, np.ndarray)
        np.testing.assert_array_equal(block, frames[j0 : j0 + block.shape[0]])
        seen.append(block.shape[0])
        bases.add(block.__array_interface__["data"][0])  # every block starts the same buffer
    assert seen == [16, 16, 16, 12] and len(bases) == 1
    # a selection, an average or a correction needs fresh arrays: never in place
    for selection, corrections in (
        (FrameSelection(stride=2), Corrections()),
        (FrameSelection(avg=2), Corrections()),
        (FrameSelection(), Corrections(dark=(0, 5))),
        (FrameSelection(), Corrections(normalize_frames=True)),
    ):
        assert not FrameStream(reader, selection, corrections).reads_in_place
    with pytest.raises(ValueError, match="a buffer for frames"):
        reader.read_dense_into(0, np.empty((4, 24, 32), dtype=np.float32))  # type: ignore[attr-defined]
    reader.close()


def test_in_place_blocks_give_the_same_result_as_fresh_ones(
    tmp_path: Path, frames: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several blocks of one reused buffer (multi-tau and a two-time map, which keeps its own copy of
    the frames) against the IMM route, whose blocks are fresh arrays: the same bits."""
    from beambridge.xpcs import pipeline

    qmap_path = write_qmap_file(tmp_path / "q.h5", small_qmap())
    sources = {
        "h5": write_raw(tmp_path / "raw.h5", frames),
        "imm": write_imm(tmp_path / "raw.imm", frames, False),
    }
    sizes: list[bool] = []
    real = pipeline.frames_per_block

    def small_blocks(n_detector: int, n_frames: int, *, in_place: bool = False, itemsize: int = 2) -> int:
        sizes.append(in_place)
        return min(real(n_detector, n_frames, in_place=in_place, itemsize=itemsize), 16 if in_place else 7)

    monkeypatch.setattr(pipeline, "frames_per_block", small_blocks)
    out = {}
    for name, src in sources.items():
        pipeline.run_twotime(src, qmap_path, tmp_path / f"{name}.out.h5", [1, 2])
        with h5py.File(tmp_path / f"{name}.out.h5", "r") as f:
            out[name] = {
                key: f[key][()]
                for key in ("/xpcs/multitau/normalized_g2", "/xpcs/multitau/normalized_g2_err",
                            "/xpcs/twotime/correlation_map/c2_00001", "/xpcs/twotime/normalized_g2")
            }  # fmt: skip
    assert sizes == [True, False]
    for key, value in out["h5"].items():
        np.testing.assert_array_equal(value, out["imm"][key], err_msg=key)
