"""The ``local`` transfer backend on real files: link vs copy, temp + rename, checksums, idempotent redo,
and a real ``kill -9`` of an agent process mid-copy."""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest
from pydantic import ValidationError

from beambridge.platform.transfer import (
    FailureKind,
    TaskState,
    TaskStatus,
    TransferFile,
    TransferTask,
    get_backend,
    join_remote,
)
from beambridge.platform.transfer.local import PARTIAL_MARK, FilePlacer, LocalBackend, LocalLocation
from tests.servers import unavailable

TIMEOUT_S = 30.0


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def partials(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if PARTIAL_MARK in p.name)


def run(backend: LocalBackend, task: TransferTask) -> TaskStatus:
    status = backend.wait(backend.start(task), TIMEOUT_S, interval_s=0.01)
    assert status.done, "the task did not finish"
    return status


def inbound(task_id: str, *files: TransferFile, verify: bool = True) -> TransferTask:
    return TransferTask(task_id, "in", "beamline", files, verify_checksum=verify)


def outbound(task_id: str, *files: TransferFile, verify: bool = True) -> TransferTask:
    return TransferTask(task_id, "out", "beamline", files, verify_checksum=verify)


class Place:
    """A remote base directory and a site workdir under one temporary directory."""

    def __init__(self, root: Path, link: bool = True) -> None:
        self.remote = root / "remote"
        self.work = root / "work"
        self.remote.mkdir()
        self.work.mkdir()
        self.backend = LocalBackend(LocalLocation(path=str(self.remote), link=link), chunk_size=64 << 10)


@pytest.fixture
def place(tmp_path: Path) -> Place:
    return Place(tmp_path)


@pytest.fixture
def copying(tmp_path: Path) -> Place:
    return Place(tmp_path, link=False)


# ------------------------------------------------------------------------------------------------
# Link or copy


def test_hard_link_on_the_same_file_system(place: Place) -> None:
    src = write(place.remote / "scans/A001/data.h5", os.urandom(300_000))
    dst = place.work / "job1/input.h5"

    status = run(place.backend, inbound("t1", TransferFile("/scans/A001/data.h5", dst)))

    assert status.state is TaskState.SUCCEEDED, status.error
    assert os.stat(dst).st_ino == os.stat(src).st_ino
    assert (status.files, status.bytes, status.files_skipped) == (1, 300_000, 0)
    assert status.duration_s > 0 and status.rate > 0


def test_copy_when_linking_is_off(copying: Place) -> None:
    src = write(copying.remote / "a.bin", os.urandom(1_000_000))
    dst = copying.work / "job1/a.bin"

    status = run(copying.backend, inbound("t1", TransferFile("a.bin", dst)))

    assert status.state is TaskState.SUCCEEDED, status.error
    assert os.stat(dst).st_ino != os.stat(src).st_ino
    assert sha(dst) == sha(src)
    assert os.stat(dst).st_mtime_ns == os.stat(src).st_mtime_ns
    assert (status.files, status.bytes) == (1, 1_000_000)
    assert partials(copying.work) == []


def test_copy_when_the_link_is_refused(place: Place, monkeypatch: pytest.MonkeyPatch) -> None:
    """EPERM (e.g. fs.protected_hardlinks) and EXDEV both fall back to a copy."""
    src = write(place.remote / "a.bin", os.urandom(10_000))

    def refuse(*_args: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", refuse)
    status = run(place.backend, inbound("t1", TransferFile("a.bin", place.work / "a.bin")))

    assert status.state is TaskState.SUCCEEDED, status.error
    assert os.stat(place.work / "a.bin").st_ino != os.stat(src).st_ino
    assert sha(place.work / "a.bin") == sha(src)


@pytest.fixture
def other_file_system(tmp_path: Path) -> Iterator[Path]:
    """A directory on another file system than ``tmp_path`` (/dev/shm); without one, fail in CI."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        unavailable("a second file system (/dev/shm) beside the temporary directory")
    with tempfile.TemporaryDirectory(dir=shm, prefix="bb-transfer-") as directory:
        yield Path(directory)


def test_copy_across_file_systems(place: Place, other_file_system: Path) -> None:
    src = write(place.remote / "a.bin", os.urandom(2_000_000))
    dst = other_file_system / "job/a.bin"

    status = run(place.backend, inbound("t1", TransferFile("a.bin", dst)))

    assert status.state is TaskState.SUCCEEDED, status.error
    assert sha(dst) == sha(src)
    assert partials(other_file_system) == []


def test_out_direction_with_a_directory_tree(copying: Place) -> None:
    results = copying.work / "job7/results"
    for i in range(20):
        write(results / f"part{i % 3}/r{i}.dat", os.urandom(1000 + i))
    write(copying.work / "job7/summary.json", b'{"ok": true}')
    (results / "empty").mkdir()
    task = outbound(
        "out-1",
        TransferFile("exp/job7/results", results, recursive=True),
        TransferFile("exp/job7/summary.json", copying.work / "job7/summary.json"),
    )

    status = run(copying.backend, task)

    assert status.state is TaskState.SUCCEEDED, status.error
    assert status.files == 21
    remote = copying.remote / "exp/job7"
    assert sorted(p.relative_to(results) for p in results.rglob("*")) == sorted(
        p.relative_to(remote / "results") for p in (remote / "results").rglob("*")
    )
    for source in results.rglob("*.dat"):
        assert sha(remote / "results" / source.relative_to(results)) == sha(source)
    assert (remote / "summary.json").read_bytes() == b'{"ok": true}'


def test_many_tasks_run_at_once(copying: Place) -> None:
    for i in range(6):
        write(copying.remote / f"d{i}.bin", os.urandom(500_000))
    handles = [
        copying.backend.start(inbound(f"t{i}", TransferFile(f"d{i}.bin", copying.work / f"job{i}/in.bin")))
        for i in range(6)
    ]
    statuses = [copying.backend.wait(handle, TIMEOUT_S) for handle in handles]

    assert [s.state for s in statuses] == [TaskState.SUCCEEDED] * 6
    for i in range(6):
        assert sha(copying.work / f"job{i}/in.bin") == sha(copying.remote / f"d{i}.bin")


# ------------------------------------------------------------------------------------------------
# Partial files never under the final name


def test_a_reader_never_sees_a_partial_file(copying: Place, monkeypatch: pytest.MonkeyPatch) -> None:
    src = write(copying.remote / "big.bin", os.urandom(3_000_000))
    dst = copying.work / "job1/big.bin"
    halfway, go_on = threading.Event(), threading.Event()
    original = FilePlacer.copy_data

    def slow(self: FilePlacer, fin: BinaryIO, fout: BinaryIO) -> tuple[int, str]:
        fout.write(fin.read(1_000_000))
        fout.flush()
        halfway.set()
        assert go_on.wait(TIMEOUT_S)
        fin.seek(0)
        fout.seek(0)
        return original(self, fin, fout)

    monkeypatch.setattr(FilePlacer, "copy_data", slow)
    handle = copying.backend.start(inbound("t1", TransferFile("big.bin", dst)))
    assert halfway.wait(TIMEOUT_S)

    assert copying.backend.poll(handle).state is TaskState.ACTIVE
    assert not dst.exists()
    [partial] = partials(copying.work)
    assert partial.parent == dst.parent and partial.name.startswith(".big.bin")
    assert partial.stat().st_size == 1_000_000

    go_on.set()
    status = copying.backend.wait(handle, TIMEOUT_S)
    assert status.state is TaskState.SUCCEEDED, status.error
    assert sha(dst) == sha(src)
    assert partials(copying.work) == []


def test_a_failure_mid_copy_leaves_nothing(copying: Place, monkeypatch: pytest.MonkeyPatch) -> None:
    write(copying.remote / "big.bin", os.urandom(1_000_000))
    dst = copying.work / "job1/big.bin"

    def broken(self: FilePlacer, fin: BinaryIO, fout: BinaryIO) -> tuple[int, str]:
        fout.write(fin.read(400_000))
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(FilePlacer, "copy_data", broken)
    status = run(copying.backend, inbound("t1", TransferFile("big.bin", dst)))

    assert status.state is TaskState.FAILED
    assert status.failure is not None and status.failure.kind is FailureKind.TRANSIENT
    assert status.retryable
    assert not dst.exists()
    assert partials(copying.work) == []


def test_cancel_mid_copy(copying: Place, monkeypatch: pytest.MonkeyPatch) -> None:
    write(copying.remote / "big.bin", os.urandom(2_000_000))
    dst = copying.work / "big.bin"
    started, go_on = threading.Event(), threading.Event()
    original = FilePlacer.copy_data

    def gated(self: FilePlacer, fin: BinaryIO, fout: BinaryIO) -> tuple[int, str]:
        started.set()
        assert go_on.wait(TIMEOUT_S)
        return original(self, fin, fout)

    monkeypatch.setattr(FilePlacer, "copy_data", gated)
    handle = copying.backend.start(inbound("t1", TransferFile("big.bin", dst)))
    assert started.wait(TIMEOUT_S)
    copying.backend.cancel(handle)
    go_on.set()
    status = copying.backend.wait(handle, TIMEOUT_S)

    assert status.failure is not None and status.failure.kind is FailureKind.CANCELLED
    assert not status.retryable
    assert not dst.exists()
    assert partials(copying.work) == []


# ------------------------------------------------------------------------------------------------
# Verification


def test_checksum_catches_corruption_in_flight(copying: Place, monkeypatch: pytest.MonkeyPatch) -> None:
    data = os.urandom(1_000_000)
    write(copying.remote / "scan.h5", data)
    dst = copying.work / "job1/scan.h5"
    original = FilePlacer.copy_data

    def corrupting(self: FilePlacer, fin: BinaryIO, fout: BinaryIO) -> tuple[int, str]:
        result = original(self, fin, fout)
        fout.seek(123_456)
        fout.write(bytes([data[123_456] ^ 0x01]))  # one flipped bit on the way
        return result

    monkeypatch.setattr(FilePlacer, "copy_data", corrupting)
    status = run(copying.backend, inbound("t1", TransferFile("scan.h5", dst)))

    assert status.state is TaskState.FAILED
    assert status.failure is not None and status.failure.kind is FailureKind.CHECKSUM, status.error
    assert status.retryable
    assert not dst.exists()
    assert partials(copying.work) == []


def test_without_checksums_only_the_size_is_checked(copying: Place, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same corruption passes unnoticed when the task turns verification off (so keep it on)."""
    data = os.urandom(100_000)
    write(copying.remote / "scan.h5", data)
    original = FilePlacer.copy_data

    def corrupting(self: FilePlacer, fin: BinaryIO, fout: BinaryIO) -> tuple[int, str]:
        result = original(self, fin, fout)
        fout.seek(10)
        fout.write(bytes([data[10] ^ 0x01]))
        return result

    monkeypatch.setattr(FilePlacer, "copy_data", corrupting)
    status = run(copying.backend, inbound("t1", TransferFile("scan.h5", copying.work / "s.h5"), verify=False))
    assert status.state is TaskState.SUCCEEDED


def test_a_truncated_copy_is_caught_by_its_size(copying: Place, monkeypatch: pytest.MonkeyPatch) -> None:
    write(copying.remote / "scan.h5", os.urandom(100_000))
    original = FilePlacer.copy_data

    def truncating(self: FilePlacer, fin: BinaryIO, fout: BinaryIO) -> tuple[int, str]:
        result = original(self, fin, fout)
        fout.truncate(50_000)
        return result

    monkeypatch.setattr(FilePlacer, "copy_data", truncating)
    status = run(copying.backend, inbound("t1", TransferFile("scan.h5", copying.work / "s.h5"), verify=False))
    assert status.failure is not None and status.failure.kind is FailureKind.CHECKSUM
    assert "50000 bytes of 100000" in status.failure.message


def test_a_source_changing_while_read_is_retryable(copying: Place, monkeypatch: pytest.MonkeyPatch) -> None:
    src = write(copying.remote / "growing.dat", os.urandom(100_000))
    original = FilePlacer.copy_data

    def growing(self: FilePlacer, fin: BinaryIO, fout: BinaryIO) -> tuple[int, str]:
        result = original(self, fin, fout)
        with open(src, "ab") as fh:
            fh.write(b"more")
        return result

    monkeypatch.setattr(FilePlacer, "copy_data", growing)
    status = run(copying.backend, inbound("t1", TransferFile("growing.dat", copying.work / "g.dat")))
    assert status.failure is not None and status.failure.kind is FailureKind.TRANSIENT
    assert "changed while it was copied" in status.failure.message
    assert not (copying.work / "g.dat").exists()


@pytest.mark.parametrize("link", [True, False])
def test_a_declared_checksum_must_match(tmp_path: Path, link: bool) -> None:
    place = Place(tmp_path, link=link)
    write(place.remote / "a.bin", b"actual content")
    good = hashlib.sha256(b"actual content").hexdigest()
    bad = hashlib.sha256(b"what the beamline said").hexdigest()

    failed = run(place.backend, inbound("t1", TransferFile("a.bin", place.work / "a.bin", sha256=bad)))
    assert failed.failure is not None and failed.failure.kind is FailureKind.CHECKSUM
    assert not (place.work / "a.bin").exists()

    ok = run(place.backend, inbound("t2", TransferFile("a.bin", place.work / "a.bin", sha256=good)))
    assert ok.state is TaskState.SUCCEEDED, ok.error


# ------------------------------------------------------------------------------------------------
# Idempotent redo


@pytest.mark.parametrize("link", [True, False])
def test_redo_is_idempotent(tmp_path: Path, link: bool) -> None:
    place = Place(tmp_path, link=link)
    files = []
    for i in range(10):
        write(place.remote / f"run/{i}.dat", os.urandom(10_000))
        files.append(TransferFile(f"run/{i}.dat", place.work / f"job/in/{i}.dat"))
    task = inbound("t1", *files)

    first = run(place.backend, task)
    again = run(place.backend, task)

    assert (first.files, first.bytes, first.files_skipped) == (10, 100_000, 0)
    assert (again.state, again.files, again.bytes, again.files_skipped) == (TaskState.SUCCEEDED, 0, 0, 10)
    for i in range(10):
        assert sha(place.work / f"job/in/{i}.dat") == sha(place.remote / f"run/{i}.dat")


def test_redo_replaces_a_stale_destination(copying: Place) -> None:
    write(copying.remote / "a.bin", b"new content!")
    dst = write(copying.work / "a.bin", b"old content!")  # same size, other bytes
    os.utime(
        dst, ns=(os.stat(copying.remote / "a.bin").st_atime_ns, os.stat(copying.remote / "a.bin").st_mtime_ns)
    )

    status = run(copying.backend, inbound("t1", TransferFile("a.bin", dst)))

    assert (status.files, status.files_skipped) == (1, 0)
    assert dst.read_bytes() == b"new content!"


AGENT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from beambridge.platform.transfer import TransferFile, TransferTask
    from beambridge.platform.transfer.local import FilePlacer, LocalBackend, LocalLocation

    def slow_copy(self, fin, fout):
        total = 0
        while chunk := fin.read(64 << 10):
            fout.write(chunk)
            fout.flush()
            total += len(chunk)
            time.sleep(0.02)
        raise AssertionError("the test should have killed this agent by now")

    FilePlacer.copy_data = slow_copy
    remote, src, dst = sys.argv[1:4]
    backend = LocalBackend(LocalLocation(path=remote, link=False), chunk_size=64 << 10)
    task = TransferTask("killed-task", "in", "beamline", (TransferFile(src, Path(dst)),))
    backend.wait(backend.start(task))
    """
)


def test_kill_9_mid_transfer_then_redo(copying: Place) -> None:
    """A real agent process killed with SIGKILL mid-copy: nothing under the final name; the redo of the
    same task removes its leftover temporary file and delivers the file."""
    src = write(copying.remote / "scan.h5", os.urandom(8 << 20))
    dst = copying.work / "job1/scan.h5"
    agent = subprocess.Popen([sys.executable, "-c", AGENT, str(copying.remote), "scan.h5", str(dst)])
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not (partials(copying.work) and partials(copying.work)[0].stat().st_size > 256 << 10):
            assert agent.poll() is None, "the agent ended early"
            assert time.monotonic() < deadline, "the agent never started copying"
            time.sleep(0.02)
        os.kill(agent.pid, signal.SIGKILL)
    finally:
        agent.kill()
        agent.wait(10)
    assert agent.returncode == -signal.SIGKILL
    assert not dst.exists()
    assert len(partials(copying.work)) == 1

    task = inbound("killed-task", TransferFile("scan.h5", dst))
    status = copying.backend.wait(copying.backend.resume(task, {}), TIMEOUT_S)

    assert status.state is TaskState.SUCCEEDED, status.error
    assert sha(dst) == sha(src)
    assert partials(copying.work) == []


# ------------------------------------------------------------------------------------------------
# Failures, paths, configuration


def test_a_missing_source_is_not_retryable(place: Place) -> None:
    status = run(place.backend, inbound("t1", TransferFile("nope.h5", place.work / "x.h5")))
    assert status.failure is not None and status.failure.kind is FailureKind.NOT_FOUND
    assert not status.retryable


def test_a_missing_source_directory_is_not_retryable(place: Place) -> None:
    status = run(place.backend, outbound("t1", TransferFile("out", place.work / "nothing", recursive=True)))
    assert status.failure is not None and status.failure.kind is FailureKind.NOT_FOUND


@pytest.mark.parametrize("bad", ["../etc/passwd", "a/../../b", "a/..", "", "/", "a\0b"])
def test_paths_may_not_escape_the_location(bad: str) -> None:
    with pytest.raises(ValueError):
        TransferFile(bad, Path("/site/job/x"))


def test_remote_paths_join_the_base() -> None:
    assert join_remote("/data/aps", "/scans//A001/./x.h5") == "/data/aps/scans/A001/x.h5"
    assert TransferFile("/a/b", Path("/w/b")).remote_path == "a/b"
    with pytest.raises(ValueError, match="absolute"):
        TransferFile("a", Path("relative/path"))


def test_task_validation() -> None:
    with pytest.raises(ValueError, match="same destination"):
        inbound("t", TransferFile("a", Path("/w/x")), TransferFile("b", Path("/w/x")))
    with pytest.raises(ValueError, match="same destination"):
        outbound("t", TransferFile("a", Path("/w/x")), TransferFile("a", Path("/w/y")))
    with pytest.raises(ValueError, match="at least one"):
        inbound("t")
    with pytest.raises(ValueError, match="task id"):
        inbound("../t", TransferFile("a", Path("/w/x")))
    # the same remote file into two jobs is fine
    inbound("t", TransferFile("a", Path("/w/1/x")), TransferFile("a", Path("/w/2/x")))


def test_get_backend(tmp_path: Path) -> None:
    backend = get_backend("local", {"path": str(tmp_path)})
    assert isinstance(backend, LocalBackend) and backend.location.link
    assert isinstance(get_backend("local", LocalLocation(path=str(tmp_path), link=False)), LocalBackend)
    with pytest.raises(ValueError, match="unknown transfer backend"):
        get_backend("ftp", {"path": str(tmp_path)})
    with pytest.raises(ValueError, match="kind 'rsync'"):
        get_backend("local", {"kind": "rsync", "path": str(tmp_path)})
    with pytest.raises(ValidationError):
        get_backend("local", {"path": str(tmp_path), "colour": "blue"})
    with pytest.raises(ValidationError):
        get_backend("local", {"path": "relative"})
