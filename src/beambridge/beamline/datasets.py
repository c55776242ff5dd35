"""A dataset's identity: the idempotency key that makes a submission happen once.

The key of a complete file is its path, size, modification time (ns) and SHA-256: a file rewritten in
place (new content or a new mtime) is a new dataset; the same file seen again — by a restarted watcher,
say — is not.

A file still being written (an HDF5 file in SWMR mode that announces its frame count, as a detector's
writer does) has no final size or checksum yet. Its key is taken from what the writer fixes at the start
and never changes: the path, the announced frame count, the frame shape and type, and the bytes of the
first frame (:func:`live_key`). A watcher that sees the file growing and one restarted after it closed
compute the same key, so the acquisition is submitted once however often the watcher is restarted.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

_BLOCK = 4 << 20


def file_sha256(path: Path) -> str:
    """The SHA-256 of the file's content."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def dataset_key(path: Path, *, stat: os.stat_result | None = None, sha256: str | None = None) -> str:
    """``file:<absolute path>:<size>:<mtime ns>:<sha256>`` for a complete file (at most 512 characters:
    a very long path is replaced by its own SHA-256)."""
    path = path.resolve()
    stat = stat or path.stat()
    digest = sha256 or file_sha256(path)
    where = _where(path)
    return f"file:{where}:{stat.st_size}:{stat.st_mtime_ns}:{digest}"


HDF5_SUFFIXES = (".h5", ".hdf", ".hdf5", ".nxs")
FRAMES = "/entry/data/data"
EXPECTED = "expected_frames"


@dataclass(frozen=True)
class LiveFile:
    """A growing HDF5 file's identity: its key and the frames it will hold."""

    key: str
    expected_frames: int
    shape: tuple[int, int]


def dataset_key_path(path: Path) -> str:
    """``path`` as keys carry it: absolute, and replaced by its own SHA-256 when very long."""
    return _where(path.resolve())


def _where(path: Path) -> str:
    where = str(path)
    if len(where) > 300:
        where = "sha256-of-path:" + hashlib.sha256(where.encode()).hexdigest()
    return where


def live_key(path: Path) -> LiveFile | None:
    """The identity of an HDF5 acquisition that may still be being written (see the module docstring).

    None while it cannot be told yet or at all: not HDF5, not readable (a writer not in SWMR mode holds
    it), no ``/entry/data/data`` of shape (frames, rows, cols) announcing ``expected_frames``, or no first
    frame on disk yet. Never raises for a bad file: the caller falls back to waiting for it to close.
    """
    path = path.resolve()
    if path.suffix.lower() not in HDF5_SUFFIXES:
        return None
    try:
        import h5py
        import numpy as np

        handle = None
        for swmr in (True, False):
            try:
                handle = h5py.File(path, "r", libver="latest", swmr=swmr)
                break
            except OSError:
                continue
        if handle is None:
            return None
        with handle:
            data = handle.get(FRAMES)
            if not isinstance(data, h5py.Dataset) or data.ndim != 3 or EXPECTED not in data.attrs:
                return None
            expected = int(data.attrs[EXPECTED])
            if handle.swmr_mode:
                data.refresh()
            if expected < 1 or data.shape[0] < 1:
                return None
            first = np.ascontiguousarray(data[0])
    except Exception:  # a corrupt or half-made file is not a live acquisition (yet)
        return None
    digest = hashlib.sha256()
    digest.update(f"{expected}:{first.shape}:{first.dtype.str}:".encode())
    digest.update(first.tobytes())
    shape = (int(first.shape[0]), int(first.shape[1]))
    return LiveFile(f"live:{_where(path)}:{expected}:{digest.hexdigest()}", expected, shape)
