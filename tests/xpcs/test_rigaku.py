"""Rigaku .bin edge cases: trailing empty frames, counts the format cannot hold, the one pixel order.

Words are built here bit by bit (frame << 40 | pixel << 16 | count), independently of the package's
encoder, except where the encoder itself is under test.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from beambridge.xpcs.errors import InputFileError, OptionError
from beambridge.xpcs.io import open_frames
from beambridge.xpcs.io.rigaku import encode_rigaku
from beambridge.xpcs.pipeline import run_multitau
from tests.xpcs.conftest import small_qmap, write_qmap_file, write_raw


def _word(frame: int, pixel: int, count: int) -> int:
    return (frame << 40) | (pixel << 16) | count


def _write(path: Path, words: list[int]) -> Path:
    np.asarray(words, dtype="<u8").tofile(path)
    return path


def _words_of(frames: np.ndarray) -> list[int]:
    out = []
    for k, frame in enumerate(frames):
        flat = frame.ravel()
        out += [_word(k, int(p), int(flat[p])) for p in np.flatnonzero(flat)]
    return out


def test_pixel_order_is_row_major(tmp_path: Path) -> None:
    """Pixel index p is row p // W, column p % W (boost-corr 0.1.7's order), on a detector whose
    rows and columns differ, so a column-major reading would put the event elsewhere."""
    h, w = 4, 8
    raw = _write(tmp_path / "x.bin", [_word(0, 1 * w + 5, 3), _word(1, 3 * w + 0, 7)])
    dense = open_frames(raw, shape=(h, w)).read_dense(0, 2)
    assert dense[0, 1, 5] == 3 and dense[1, 3, 0] == 7
    assert dense.sum() == 10


def test_trailing_empty_frames_kept_with_the_frame_count(tmp_path: Path) -> None:
    """400 frames of which the last is empty: without a frame count the reader can only see 399;
    with it, g2 equals the HDF5 route's exactly."""
    rng = np.random.default_rng(4)
    frames = rng.poisson(0.3, (400, 24, 32)).astype(np.uint16)
    frames[-1] = 0
    raw = _write(tmp_path / "raw.bin", _words_of(frames))
    assert open_frames(raw, shape=(24, 32)).n_frames == 399
    assert open_frames(raw, shape=(24, 32), n_frames=400).n_frames == 400
    q = write_qmap_file(tmp_path / "q.h5", small_qmap())
    run_multitau(raw, q, tmp_path / "bin.out.h5", rigaku_shape=(24, 32), rigaku_frames=400)
    run_multitau(write_raw(tmp_path / "raw.h5", frames), q, tmp_path / "h5.out.h5")
    with h5py.File(tmp_path / "bin.out.h5", "r") as a, h5py.File(tmp_path / "h5.out.h5", "r") as b:
        np.testing.assert_array_equal(
            a["/xpcs/multitau/normalized_g2"][()], b["/xpcs/multitau/normalized_g2"][()]
        )
        assert a["/xpcs/multitau/config/num_frames"][()] == 400


def test_frame_count_smaller_than_the_events_is_refused(tmp_path: Path) -> None:
    raw = _write(tmp_path / "x.bin", [_word(0, 1, 1), _word(9, 2, 1)])
    with pytest.raises(InputFileError, match="events of frame 9 but the acquisition has 5 frames"):
        open_frames(raw, shape=(4, 8), n_frames=5)


def test_counts_beyond_the_field_are_refused_not_wrapped(tmp_path: Path) -> None:
    """3000 written by a 12-bit writer has bit 11 set; an 11-bit reader would read 952."""
    raw = _write(tmp_path / "x.bin", [_word(0, 1, 5), _word(1, 2, 3000)])
    with pytest.raises(InputFileError, match=r"word 1 \(frame 1\).*count of 3000.*at most 2047"):
        open_frames(raw, shape=(4, 8))
    ok = _write(tmp_path / "ok.bin", [_word(0, 1, 2047)])
    assert open_frames(ok, shape=(4, 8)).read_dense(0, 1).max() == 2047


def test_encoder_refuses_what_the_format_cannot_hold() -> None:
    assert int(encode_rigaku([3], [17], [2047])[0]) == _word(3, 17, 2047)
    with pytest.raises(OptionError, match="count must lie in 0 … 2047, got 2048"):
        encode_rigaku([0], [0], [2048])
    with pytest.raises(OptionError, match="pixel"):
        encode_rigaku([0], [1 << 20], [1])
    with pytest.raises(OptionError, match="count"):
        encode_rigaku([0], [0], [-1])
