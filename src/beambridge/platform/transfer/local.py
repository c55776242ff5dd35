"""The ``local`` backend: a location on a file system this machine mounts.

Each file is hard-linked when source and destination share a file system (and the location allows it),
else copied to a hidden temporary name beside its destination (``.NAME.bb-partial-…``), checked, and
renamed into place with ``os.replace``: a reader never sees a partial file under the final name. The
check: the copy's size, the source unchanged while read, and (when the task verifies checksums) the
SHA-256 of the copy read back against that of the bytes read from the source.

Redo is idempotent: a destination that already holds the same content (same inode, or same size and
checksum — size and mtime when the task does not verify checksums) is skipped, and temporary files a
killed earlier run of the same task left behind are removed.

:class:`FilePlacer` is shared with the rsync backend, which uses it to move staged files into place.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import threading
import zlib
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO, Literal

from pydantic import Field, field_validator

from beambridge.logs import get_logger
from beambridge.platform.transfer.base import (
    FailureKind,
    Progress,
    ThreadedBackend,
    TransferError,
    TransferFile,
    TransferTask,
    failure_from_oserror,
    join_remote,
)
from beambridge.schemas.apps import TransferDirection
from beambridge.schemas.common import InputModel

log = get_logger(__name__)

PARTIAL_MARK = ".bb-partial-"
"""Part of every temporary file name (``.NAME.bb-partial-TAG-RANDOM``)."""
CHUNK_SIZE = 4 << 20
_NO_LINK = frozenset({errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EACCES})


def task_tag(task_id: str) -> str:
    """A short, file-name-safe tag of a task (marks its temporary files)."""
    return hashlib.sha256(task_id.encode()).hexdigest()[:10]


def partial_name(dst: Path, tag: str) -> Path:
    """A fresh temporary name beside ``dst``."""
    return dst.with_name(f".{dst.name}{PARTIAL_MARK}{tag}-{os.urandom(4).hex()}")


def remove_stale_partials(dst: Path, tag: str) -> None:
    """Remove temporary files an earlier (killed) run of the task with this tag left beside ``dst``."""
    prefix = f".{dst.name}{PARTIAL_MARK}{tag}-"
    try:
        names = os.listdir(dst.parent)
    except FileNotFoundError:
        return
    for name in names:
        if name.startswith(prefix):
            (dst.parent / name).unlink(missing_ok=True)


def file_crc32(path: Path, cancel: threading.Event | None = None) -> str:
    """CRC-32 (hex) of a file's content: the copy check (ten times faster than SHA-256 here; it catches
    accidental corruption, which is what a copy check is for — a caller's SHA-256 is checked as SHA-256)."""
    crc = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK_SIZE):
            if cancel is not None and cancel.is_set():
                raise TransferError(FailureKind.CANCELLED, "cancelled")
            crc = zlib.crc32(chunk, crc)
    return f"{crc:08x}"


def file_sha256(path: Path, cancel: threading.Event | None = None) -> str:
    """SHA-256 (hex) of a file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK_SIZE):
            if cancel is not None and cancel.is_set():
                raise TransferError(FailureKind.CANCELLED, "cancelled")
            digest.update(chunk)
    return digest.hexdigest()


class Placed(StrEnum):
    SKIPPED = "skipped"
    LINKED = "linked"
    COPIED = "copied"


class FilePlacer:
    """Puts files at their final names, all or nothing (link, or copy + check + rename)."""

    def __init__(
        self,
        *,
        tag: str,
        link: bool,
        verify: bool,
        cancel: threading.Event | None = None,
        progress: Progress | None = None,
        chunk_size: int = CHUNK_SIZE,
    ) -> None:
        self.tag = tag
        self.link = link
        self.verify = verify
        self.cancel = cancel or threading.Event()
        self.progress = progress
        self.chunk_size = chunk_size

    def place(self, src: Path, dst: Path, expected_sha256: str | None = None) -> Placed:
        """Make ``dst`` hold ``src``'s content (``expected_sha256``: what that content must hash to)."""
        self._check_cancel()
        try:
            src_stat = os.stat(src)
        except OSError as exc:
            raise TransferError.of(failure_from_oserror(exc, "source")) from exc
        if not stat.S_ISREG(src_stat.st_mode):
            raise TransferError(FailureKind.CONFIG, f"source {src} is not a regular file")
        dst.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(dst, self.tag)
        if expected_sha256 is not None:
            self._check_expected(src, expected_sha256)
        if self._up_to_date(src, src_stat, dst):
            self._count(skipped=1)
            return Placed.SKIPPED
        if self.link and self._try_link(src, dst):
            self._count(nbytes=src_stat.st_size, files=1)
            return Placed.LINKED
        self._copy(src, src_stat, dst, expected_sha256)
        self._count(files=1)
        return Placed.COPIED

    def place_tree(self, src_dir: Path, dst_dir: Path) -> None:
        """:meth:`place` every file under ``src_dir`` at the same relative path under ``dst_dir``."""
        if not src_dir.is_dir():
            kind = FailureKind.NOT_FOUND if not src_dir.exists() else FailureKind.CONFIG
            raise TransferError(kind, f"source directory {src_dir} does not exist or is not a directory")
        dst_dir.mkdir(parents=True, exist_ok=True)
        for dirpath, dirnames, filenames in os.walk(src_dir):
            here = Path(dirpath)
            target = dst_dir / here.relative_to(src_dir)
            for name in dirnames:
                (target / name).mkdir(exist_ok=True)
            for name in filenames:
                if PARTIAL_MARK not in name and (here / name).is_file():
                    self.place(here / name, target / name)

    def copy_data(self, src: BinaryIO, dst: BinaryIO) -> tuple[int, str]:
        """Copy ``src`` to ``dst``; the number of bytes and the CRC-32 (hex) of what was read."""
        crc = 0
        total = 0
        while chunk := src.read(self.chunk_size):
            self._check_cancel()
            crc = zlib.crc32(chunk, crc)
            dst.write(chunk)
            total += len(chunk)
            self._count(nbytes=len(chunk))
        return total, f"{crc:08x}"

    # ---------------------------------------------------------------------------------------------

    def _count(self, *, nbytes: int = 0, files: int = 0, skipped: int = 0) -> None:
        if self.progress is not None:
            self.progress.add(nbytes=nbytes, files=files, skipped=skipped)

    def _check_cancel(self) -> None:
        if self.cancel.is_set():
            raise TransferError(FailureKind.CANCELLED, "cancelled")

    def _check_expected(self, src: Path, expected: str) -> None:
        actual = file_sha256(src, self.cancel)
        if actual != expected:
            raise TransferError(
                FailureKind.CHECKSUM, f"{src}: sha256 {actual} is not the expected {expected}"
            )

    def _up_to_date(self, src: Path, src_stat: os.stat_result, dst: Path) -> bool:
        try:
            dst_stat = os.stat(dst)
        except FileNotFoundError:
            return False
        if os.path.samestat(src_stat, dst_stat):
            return True
        if not stat.S_ISREG(dst_stat.st_mode) or dst_stat.st_size != src_stat.st_size:
            return False
        if self.verify:
            return file_crc32(src, self.cancel) == file_crc32(dst, self.cancel)
        return dst_stat.st_mtime_ns == src_stat.st_mtime_ns

    def _try_link(self, src: Path, dst: Path) -> bool:
        tmp = partial_name(dst, self.tag)
        try:
            os.link(src, tmp)
        except OSError as exc:
            if exc.errno in _NO_LINK:
                return False
            raise
        try:
            os.replace(tmp, dst)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return True

    def _copy(self, src: Path, src_stat: os.stat_result, dst: Path, expected: str | None) -> None:
        tmp = partial_name(dst, self.tag)
        try:
            with open(src, "rb") as fin, open(tmp, "xb") as fout:
                nbytes, digest = self.copy_data(fin, fout)
                fout.flush()
                os.fsync(fout.fileno())
            os.chmod(tmp, stat.S_IMODE(src_stat.st_mode))
            os.utime(tmp, ns=(src_stat.st_atime_ns, src_stat.st_mtime_ns))
            self._verify_copy(src, src_stat, tmp, nbytes, digest, expected)
            os.replace(tmp, dst)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _verify_copy(
        self, src: Path, src_stat: os.stat_result, tmp: Path, nbytes: int, digest: str, expected: str | None
    ) -> None:
        now = os.stat(src)
        if (now.st_size, now.st_mtime_ns) != (src_stat.st_size, src_stat.st_mtime_ns):
            raise TransferError(FailureKind.TRANSIENT, f"{src} changed while it was copied")
        written = os.stat(tmp).st_size
        if not written == nbytes == src_stat.st_size:
            raise TransferError(
                FailureKind.CHECKSUM, f"{src}: copied {written} bytes of {src_stat.st_size} (read {nbytes})"
            )
        if self.verify and file_crc32(tmp, self.cancel) != digest:
            raise TransferError(FailureKind.CHECKSUM, f"{src}: the copy's checksum differs from the source's")
        if expected is not None and (actual := file_sha256(tmp, self.cancel)) != expected:
            raise TransferError(
                FailureKind.CHECKSUM, f"{src}: sha256 {actual} is not the expected {expected}"
            )


class LocalLocation(InputModel):
    """A directory this machine can reach directly (a shared file system)."""

    kind: Literal["local"] = "local"
    path: str = Field(min_length=1, description="Absolute base directory")
    link: bool = Field(default=True, description="Hard-link when on the same file system, else copy")

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must be an absolute path")
        return value


class LocalBackend(ThreadedBackend):
    """Transfers to and from a directory this machine mounts; one thread per task."""

    kind = "local"
    location_model = LocalLocation

    def __init__(self, location: LocalLocation, *, chunk_size: int = CHUNK_SIZE) -> None:
        self.location = location
        self.chunk_size = chunk_size

    def endpoints(self, task: TransferTask, item: TransferFile) -> tuple[Path, Path]:
        """(source, destination) of one file of the task."""
        remote = Path(join_remote(self.location.path, item.remote_path))
        if task.direction is TransferDirection.IN:
            return remote, item.local_path
        return item.local_path, remote

    def placer(self, task: TransferTask, progress: Progress, cancel: threading.Event) -> FilePlacer:
        return FilePlacer(
            tag=task_tag(task.task_id),
            link=self.location.link,
            verify=task.verify_checksum,
            cancel=cancel,
            progress=progress,
            chunk_size=self.chunk_size,
        )

    def _run(self, task: TransferTask, progress: Progress, cancel: threading.Event) -> None:
        placer = self.placer(task, progress, cancel)
        for item in task.files:
            src, dst = self.endpoints(task, item)
            if item.recursive:
                placer.place_tree(src, dst)
            else:
                placer.place(src, dst, item.sha256)
