"""A followed HDF5 file read in the order a SWMR reader can actually see it: the writer's ``resize`` before
the frames it makes room for. The follower must wait for the frames, never hand out the fill value."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np
import pytest

from beambridge.xpcs.errors import InputFileError
from beambridge.xpcs.io.hdf5 import DATASET, FRAME_TIME
from beambridge.xpcs.io.live import EXPECTED, FollowingHdf5Frames, writer_has_closed

SHAPE = (4, 5)

# A writer driven line by line from stdin: "resize N", "write I" (frame I filled with I + 1), "close".
WRITER = f"""
import sys, h5py, numpy as np
f = h5py.File(sys.argv[1], "w", libver="latest")
f[{FRAME_TIME!r}] = 0.01
ds = f.create_dataset({DATASET!r}, shape=(0, *{SHAPE!r}), maxshape=(None, *{SHAPE!r}), chunks=(1, *{SHAPE!r}), dtype="u2")
ds.attrs[{EXPECTED!r}] = 3
f.swmr_mode = True
print("ready", flush=True)
for line in sys.stdin:
    verb, *arg = line.split()
    if verb == "resize":
        ds.resize(int(arg[0]), axis=0)
    elif verb == "write":
        ds[int(arg[0])] = np.full({SHAPE!r}, int(arg[0]) + 1, dtype="u2")
    elif verb == "close":
        break
    ds.flush()
    print("done", flush=True)
f.close()
"""


class Writer:
    def __init__(self, path: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.read() == "ready"

    def read(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def do(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        if command != "close":
            assert self.read() == "done"

    def close(self) -> None:
        if self.proc.poll() is None:
            self.do("close")
        assert self.proc.wait(timeout=30) == 0

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


@contextmanager
def following(path: Path, timeout: float) -> Iterator[FollowingHdf5Frames]:
    frames = FollowingHdf5Frames(path, timeout=timeout, poll=0.01)
    try:
        yield frames
    finally:
        frames.close()


def test_a_resize_seen_before_its_frames_is_not_read_as_zeros(tmp_path: Path) -> None:
    path = tmp_path / "live.h5"
    with Writer(path) as writer:
        writer.do("resize 1")
        writer.do("write 0")
        writer.do("resize 3")  # room for frames 1 and 2, none of them written yet
        with following(path, timeout=30) as frames:
            assert frames.available() == 1, "rows inside the extent but never written count as frames"
            writer.do("write 1")
            assert frames.available() == 2
            writer.do("write 2")
            got = frames.read_dense(0, 3)
            assert [int(frame[0, 0]) for frame in got] == [1, 2, 3]


def test_a_finished_file_with_a_frame_never_written_is_read_after_the_timeout(tmp_path: Path) -> None:
    """A writer that never wrote one frame leaves its chunk unallocated: the file is finished, the frame is
    the fill value. Following it waits one timeout for the frame, then reads what the file holds."""
    path = tmp_path / "done.h5"
    with h5py.File(path, "w", libver="latest") as f:
        f[FRAME_TIME] = 0.01
        ds = f.create_dataset(DATASET, shape=(3, *SHAPE), chunks=(1, *SHAPE), dtype="u2")
        ds.attrs[EXPECTED] = 3
        ds[0] = 1
        ds[2] = 3
    with following(path, timeout=0.5) as frames:
        start = time.monotonic()
        got = frames.read_dense(0, 3)
        assert 0.4 < time.monotonic() - start < 30
        assert [int(frame[0, 0]) for frame in got] == [1, 0, 3]
        np.testing.assert_array_equal(got[1], np.zeros(SHAPE))


@pytest.mark.parametrize("gap", [False, True], ids=["frames not yet in the extent", "a frame skipped"])
def test_a_live_writer_missing_frames_is_a_stall_not_zeros(tmp_path: Path, gap: bool) -> None:
    """While the writer has the file open, frames it has not written are a stall, even inside the extent."""
    path = tmp_path / "live.h5"
    with Writer(path) as writer:
        writer.do("resize 3" if gap else "resize 1")
        writer.do("write 0")
        if gap:
            writer.do("write 2")
        assert not writer_has_closed(path)
        with following(path, timeout=0.5) as frames:
            assert not writer_has_closed(path)  # this process holding the file open changes nothing
            with pytest.raises(InputFileError, match="stalled: 1 of 3 frames"):
                frames.read_dense(0, 3)
    assert writer_has_closed(path)


def test_writer_has_closed_on_odd_files(tmp_path: Path) -> None:
    assert writer_has_closed(tmp_path / "missing.h5")
    (tmp_path / "short.h5").write_bytes(b"\x89HDF")
    assert writer_has_closed(tmp_path / "short.h5")
    (tmp_path / "text.h5").write_bytes(b"not hdf5 at all" * 100)
    assert writer_has_closed(tmp_path / "text.h5")
