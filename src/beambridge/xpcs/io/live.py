"""Frames while the detector writes them: an HDF5 SWMR writer and a reader that follows it.

The writer (:class:`SwmrFrameWriter`) lays out what :class:`~beambridge.xpcs.io.hdf5.Hdf5Frames`
reads (``/entry/data/data``, the acquisition metadata), announces the acquisition's frame count as the
attribute ``expected_frames`` of the dataset, switches the file to single-writer/multiple-reader mode
and appends frames, flushing after each append so readers see them at once.

The reader (:class:`FollowingHdf5Frames`) opens such a file (waiting for it to appear and to enter SWMR
mode), takes N from ``expected_frames`` (or from its caller), and serves ``read_dense(start, stop)``
as soon as frame ``stop - 1`` is on disk: the correlator then runs block by block during the
acquisition, and g2 is ready a fraction of a second after the last frame. A writer that stops
appending for ``timeout`` seconds is an error naming the last frame seen, never a silent short result.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import TracebackType
from typing import Self

import h5py
import numpy as np
import numpy.typing as npt

from beambridge.xpcs.errors import InputFileError, OptionError
from beambridge.xpcs.events import Events
from beambridge.xpcs.io.hdf5 import COUNT_TIME, DATASET, FRAME_TIME, SAMPLE_NAME

EXPECTED = "expected_frames"
"""Attribute of ``/entry/data/data``: the number of frames the acquisition will write."""


class SwmrFrameWriter:
    """Append frames to an HDF5 file that readers may follow (SWMR). Use as a context manager.

    Args:
        path: the raw file to create (replaced if it exists).
        shape: detector (rows, cols). n_frames: the frames the acquisition will write.
        frame_time, count_time: seconds, written as acquisition metadata. dtype: of the frames.
        attrs: attributes of the file's root (SWMR allows none to be added once frames flow).
    """

    def __init__(
        self,
        path: str | Path,
        shape: tuple[int, int],
        n_frames: int,
        frame_time: float,
        count_time: float | None = None,
        dtype: npt.DTypeLike = np.uint16,
        sample: str | None = None,
        attrs: dict[str, float | int | str] | None = None,
    ) -> None:
        if n_frames < 1 or frame_time <= 0:
            raise OptionError("a live acquisition needs n_frames >= 1 and frame_time > 0")
        self.path = Path(path)
        self.n_frames = int(n_frames)
        self.written = 0
        self._file = h5py.File(self.path, "w", libver="latest")
        f = self._file
        f[FRAME_TIME] = np.float64(frame_time)
        f[FRAME_TIME].attrs["units"] = "s"
        f[COUNT_TIME] = np.float64(frame_time if count_time is None else count_time)
        f[COUNT_TIME].attrs["units"] = "s"
        if sample:
            f[SAMPLE_NAME] = sample
        for key, value in (attrs or {}).items():
            f.attrs[key] = value
        self._ds = f.create_dataset(
            DATASET, shape=(0, *shape), maxshape=(None, *shape), chunks=(1, *shape), dtype=dtype
        )
        self._ds.attrs[EXPECTED] = self.n_frames
        f.swmr_mode = True

    def append(self, frames: npt.ArrayLike) -> None:
        """Append a block of frames (b, H, W) (or one frame (H, W)) and make it visible to readers."""
        block = np.asarray(frames)
        if block.ndim == 2:
            block = block[None]
        if self.written + block.shape[0] > self.n_frames:
            raise OptionError(f"more than the announced {self.n_frames} frames were appended")
        a = self.written
        self._ds.resize(a + block.shape[0], axis=0)
        self._ds[a:] = block
        self._ds.flush()
        self.written += block.shape[0]

    def close(self) -> None:
        """Close the file (readers keep what was written)."""
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def writer_has_closed(path: str | Path) -> bool:
    """False while a writer has the HDF5 file open (or crashed with it open), read from the superblock's
    consistency flags (format version 2 and later: bit 0 open for writing, bit 2 SWMR writing) — HDF5's
    own check, which an ``h5py.File`` in this process cannot make once it has the file open itself.
    Older superblocks carry no such flags: a file this process could open is taken as closed."""
    try:
        with open(path, "rb") as handle:
            offset = 0
            while True:  # the superblock sits at 0, 512, 1024, 2048, ... (after a user block)
                handle.seek(offset)
                head = handle.read(12)
                if len(head) < 12:
                    return True
                if head[:8] == HDF5_SIGNATURE:
                    return head[8] < 2 or head[11] & 0b101 == 0
                offset = 512 if offset == 0 else offset * 2
    except OSError:
        return True


class FollowingHdf5Frames:
    """Dense frames of an HDF5 file that is still being written (SWMR): reads wait for their frames.

    Args:
        path: the raw file (it may not exist yet). n_frames: N, if the file does not announce it.
        timeout: seconds to wait for the file, and for each new frame, before giving up.
        poll: seconds between looks at the file.

    Attributes:
        last_frame_seen_at: ``time.perf_counter()`` when the last frame of the acquisition was seen.
    """

    is_sparse = False

    def __init__(
        self, path: str | Path, n_frames: int | None = None, timeout: float = 30.0, poll: float = 0.01
    ) -> None:
        self.path = str(path)
        self.timeout = timeout
        self.poll = poll
        self.last_frame_seen_at: float | None = None
        self._written = self._extent = 0
        self._file = self._open(Path(path), need_count=n_frames is None)
        try:
            ds = self._file[DATASET]
            if not isinstance(ds, h5py.Dataset) or ds.ndim != 3:
                raise InputFileError(path, f"{DATASET} must have shape (frames, rows, cols)")
            self._ds = ds
            expected = ds.attrs.get(EXPECTED)
            if n_frames is None and expected is None:
                raise InputFileError(
                    path, f"a growing file must announce its frame count ({DATASET} attribute {EXPECTED})"
                )
            self.n_frames = int(n_frames if n_frames is not None else expected)
            if expected is not None and n_frames is not None and int(expected) != n_frames:
                raise OptionError(f"{path}: the file announces {int(expected)} frames, not {n_frames}")
            self.shape = (int(ds.shape[1]), int(ds.shape[2]))
            self.dtype = ds.dtype
            from beambridge.xpcs.io.hdf5 import _sample_name, _seconds

            self.frame_time = _seconds(self._file, FRAME_TIME, path)
            self.count_time = _seconds(self._file, COUNT_TIME, path)
            self.sample = _sample_name(self._file)
        except BaseException:
            self._file.close()
            raise

    def _open(self, path: Path, need_count: bool) -> h5py.File:
        """Open the file once its dataset exists (and announces its frame count, when the caller gives
        none: a writer caught between creating the dataset and setting the attribute is not ready yet)."""
        deadline = time.monotonic() + self.timeout
        while True:
            late = time.monotonic() > deadline  # one verdict per look: a file seen at the last look is used
            for swmr in (True, False):  # a finished file not written in SWMR mode opens plainly
                try:
                    f = h5py.File(path, "r", libver="latest", swmr=swmr)
                except OSError:
                    continue
                if DATASET in f and (late or not need_count or EXPECTED in f[DATASET].attrs):
                    return f  # when late, the caller names what is missing
                f.close()
            if late:
                raise InputFileError(
                    path, f"no growing HDF5 file with {DATASET} appeared in {self.timeout:g} s"
                )
            time.sleep(self.poll)

    def available(self) -> int:
        """Frames on disk now: those whose chunks are written, not merely inside the dataset's extent.

        A SWMR reader can see a writer's ``resize`` before the frames written into the new rows reach the
        chunk index (the extent lives in the object header, flushed on its own); reading such rows gives
        the fill value, zeros, which skewed a followed g2 by ~1 %. The writer's data is flushed before
        the index entry that points to it, so an allocated chunk holds its frames.
        """
        self._ds.refresh()
        extent = self._extent = int(self._ds.shape[0])
        chunks = self._ds.chunks
        if chunks is None:
            return extent
        rows = int(chunks[0])
        while self._written < extent:
            info = self._ds.id.get_chunk_info_by_coord((self._written - self._written % rows, 0, 0))
            if info.byte_offset is None:
                break
            self._written = min(extent, self._written - self._written % rows + rows)
        return self._written

    def wait_for(self, count: int) -> None:
        """Return once ``count`` frames are on disk; error if none arrives for ``timeout`` seconds."""
        seen = self.available()
        last_change = time.monotonic()
        while seen < count:
            time.sleep(self.poll)
            now = self.available()
            if now != seen:
                seen, last_change = now, time.monotonic()
            elif time.monotonic() - last_change > self.timeout:
                if self._extent >= count and writer_has_closed(self.path):
                    # A finished file whose writer never wrote some frames: their chunks hold the fill value.
                    self._written = seen = self._extent
                    break
                raise InputFileError(
                    self.path,
                    f"the acquisition stalled: {seen} of {self.n_frames} frames, none new for {self.timeout:g} s",
                )
        if count >= self.n_frames and self.last_frame_seen_at is None:
            self.last_frame_seen_at = time.perf_counter()

    def read_dense(self, start: int, stop: int) -> npt.NDArray[np.generic]:
        """Frames ``start … stop-1`` (waiting for them), shape (stop-start, H, W)."""
        self.wait_for(stop)
        out = np.empty((stop - start, *self.shape), dtype=self.dtype)
        if stop > start:
            self._ds.read_direct(out, np.s_[start:stop])
        return out

    def read_events(self, start: int, stop: int) -> Events:
        """Not available: HDF5 frames are dense."""
        raise NotImplementedError("HDF5 frames are dense")

    def close(self) -> None:
        """Close the file."""
        self._file.close()
