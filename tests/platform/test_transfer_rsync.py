"""The ``rsync`` transfer backend against a real sshd on 127.0.0.1 (``tests/sshd.py``): 200 small files and
a 50 MB file both ways, idempotent redo, a wrong key, checksum verification, and ``kill -9`` mid-transfer."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from beambridge.platform.transfer import (
    FailureKind,
    TaskState,
    TaskStatus,
    TransferFile,
    TransferTask,
    get_backend,
)
from beambridge.platform.transfer.rsync import (
    STAGING_DIRNAME,
    RsyncBackend,
    RsyncLocation,
    classify_rsync_failure,
    parse_stats,
    parse_verify,
)
from beambridge.schemas.apps import TransferDirection
from tests.servers import free_port
from tests.sshd import SshServer, private_sshd, require_ssh_tools

TIMEOUT_S = 120.0
BIG = 50 << 20


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    require_ssh_tools()
    with private_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


def location(server: SshServer, base: Path, **overrides: Any) -> RsyncLocation:
    return RsyncLocation(**server.rsync_location(base, **overrides))


def run(backend: RsyncBackend, task: TransferTask) -> TaskStatus:
    status = backend.wait(backend.start(task), TIMEOUT_S)
    assert status.done, "the task did not finish"
    return status


def sha(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def big_file(path: Path, size: int = BIG) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        for _ in range(size >> 20):
            fh.write(os.urandom(1 << 20))
    return path


def processes_mentioning(marker: str) -> list[int]:
    """Live processes whose command line contains ``marker`` (zombies have none)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


# ------------------------------------------------------------------------------------------------
# Both directions, real data


def test_200_small_files_and_50_mb_both_ways_then_redo(sshd: SshServer, tmp_path: Path) -> None:
    work, remote = tmp_path / "work", tmp_path / "remote"
    backend = RsyncBackend(location(sshd, remote / "exp"))
    sizes = [1000 + 37 * i for i in range(200)]
    out_files = [
        TransferFile(f"run1/small/{i:03d}.dat", write(work / f"job1/out/s{i}.dat", os.urandom(size)))
        for i, size in enumerate(sizes)
    ]
    out_files.append(TransferFile("run1/big.bin", big_file(work / "job1/out/big.bin")))
    total = sum(sizes) + BIG

    started = time.monotonic()
    sent = run(backend, TransferTask("out-1", "out", "dtn", tuple(out_files)))
    out_s = time.monotonic() - started

    assert sent.state is TaskState.SUCCEEDED, sent.error
    assert (sent.files, sent.bytes, sent.files_skipped) == (201, total, 0)
    for item in out_files:
        assert sha(remote / "exp" / item.remote_path) == sha(item.local_path)

    in_files = [
        TransferFile(f"run1/small/{i:03d}.dat", work / f"job2/in/renamed-{i}.dat") for i in range(200)
    ]
    in_files.append(TransferFile("/run1/big.bin", work / "job2/in/frames.bin"))
    started = time.monotonic()
    received = run(backend, TransferTask("in-1", "in", "dtn", tuple(in_files)))
    in_s = time.monotonic() - started

    assert received.state is TaskState.SUCCEEDED, received.error
    assert (received.files, received.bytes) == (201, total)
    for item in in_files:
        assert sha(item.local_path) == sha(remote / "exp" / item.remote_path)
    assert not (work / STAGING_DIRNAME).exists(), "the staging area is removed"
    print(f"\nrsync out {out_s:.2f} s ({total / out_s / 1e6:.0f} MB/s), in {in_s:.2f} s")

    resent = run(backend, TransferTask("out-1", "out", "dtn", tuple(out_files)))
    rereceived = run(backend, TransferTask("in-1", "in", "dtn", tuple(in_files)))
    for again in (resent, rereceived):
        assert again.state is TaskState.SUCCEEDED, again.error
        assert (again.files, again.bytes, again.files_skipped) == (0, 0, 201)


def test_directories_and_one_remote_file_into_two_jobs(sshd: SshServer, tmp_path: Path) -> None:
    work, remote = tmp_path / "work", tmp_path / "remote"
    backend = RsyncBackend(location(sshd, remote), staging_root=tmp_path / "staging")
    for i in range(12):
        write(work / f"job1/results/q{i % 4}/c{i}.h5", os.urandom(2000 + i))
    sent = run(
        backend,
        TransferTask(
            "out-d", "out", "dtn", (TransferFile("proc/job1", work / "job1/results", recursive=True),)
        ),
    )
    assert sent.state is TaskState.SUCCEEDED, sent.error
    assert sent.files == 12

    write(remote / "raw/mask.npy", b"mask" * 100)
    task = TransferTask(
        "in-d",
        "in",
        "dtn",
        (
            TransferFile("proc/job1", work / "job9/previous", recursive=True),
            TransferFile("raw/mask.npy", work / "job9/mask.npy"),
            TransferFile("raw/mask.npy", work / "job10/mask.npy"),
        ),
    )
    received = run(backend, task)

    assert received.state is TaskState.SUCCEEDED, received.error
    for source in (work / "job1/results").rglob("*.h5"):
        assert sha(work / "job9/previous" / source.relative_to(work / "job1/results")) == sha(source)
    assert (work / "job9/mask.npy").read_bytes() == (work / "job10/mask.npy").read_bytes() == b"mask" * 100
    assert not (tmp_path / "staging").exists()


# ------------------------------------------------------------------------------------------------
# Failures and their classification


def test_a_wrong_key_is_a_non_retryable_auth_error(sshd: SshServer, tmp_path: Path) -> None:
    write(tmp_path / "remote/a.dat", b"a")
    backend = RsyncBackend(
        location(sshd, tmp_path / "remote", key_file=sshd.new_key(f"wrong-{tmp_path.name}"))
    )

    status = run(backend, TransferTask("t1", "in", "dtn", (TransferFile("a.dat", tmp_path / "work/a.dat"),)))

    assert status.state is TaskState.FAILED
    assert status.failure is not None and status.failure.kind is FailureKind.AUTH, status.error
    assert "Permission denied (publickey" in status.failure.message
    assert not status.retryable
    assert not (tmp_path / "work/a.dat").exists()


def test_nobody_listening_is_retryable(sshd: SshServer, tmp_path: Path) -> None:
    backend = RsyncBackend(location(sshd, tmp_path / "remote", port=free_port(), connect_timeout_s=5))
    status = run(backend, TransferTask("t1", "in", "dtn", (TransferFile("a.dat", tmp_path / "work/a.dat"),)))
    assert status.failure is not None and status.failure.kind is FailureKind.TRANSIENT, status.error
    assert "Connection refused" in status.failure.message
    assert status.retryable


def test_a_missing_remote_file_is_not_found(sshd: SshServer, tmp_path: Path) -> None:
    (tmp_path / "remote").mkdir()
    backend = RsyncBackend(location(sshd, tmp_path / "remote"))
    status = run(backend, TransferTask("t1", "in", "dtn", (TransferFile("nope.h5", tmp_path / "work/x.h5"),)))
    assert status.failure is not None and status.failure.kind is FailureKind.NOT_FOUND, status.error
    assert not status.retryable


def test_a_missing_local_file_is_not_found(sshd: SshServer, tmp_path: Path) -> None:
    backend = RsyncBackend(location(sshd, tmp_path / "remote"))
    status = run(backend, TransferTask("t1", "out", "dtn", (TransferFile("x.h5", tmp_path / "nothing.h5"),)))
    assert status.failure is not None and status.failure.kind is FailureKind.NOT_FOUND


# ------------------------------------------------------------------------------------------------
# Verification


def test_without_recheck_no_second_pass_runs(
    sshd: SshServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """By default rsync's own whole-file check is the verification: no second read of everything."""
    write(tmp_path / "remote/scan.h5", os.urandom(50_000))
    monkeypatch.setattr(RsyncBackend, "_verify", lambda *_: pytest.fail("the recheck pass ran"))
    backend = RsyncBackend(location(sshd, tmp_path / "remote"), staging_root=tmp_path / "staging")
    status = run(
        backend, TransferTask("t1", "in", "dtn", (TransferFile("scan.h5", tmp_path / "work/scan.h5"),))
    )
    assert status.state is TaskState.SUCCEEDED, status.error
    assert (tmp_path / "work/scan.h5").read_bytes() == (tmp_path / "remote/scan.h5").read_bytes()


def test_checksum_verification_catches_corruption_coming_in(
    sshd: SshServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A staged file damaged after rsync wrote it (bad disk, buggy file system) fails the verification
    pass, and nothing appears under the final name."""
    data = os.urandom(200_000)
    write(tmp_path / "remote/scan.h5", data)
    staging = tmp_path / "staging"
    backend = RsyncBackend(location(sshd, tmp_path / "remote", recheck=True), staging_root=staging)
    original = RsyncBackend._verify

    def corrupt_then_verify(self: RsyncBackend, task: TransferTask, *args: Any) -> None:
        staged = staging / task.task_id / "data/scan.h5"
        with open(staged, "r+b") as fh:
            fh.seek(1000)
            fh.write(bytes([data[1000] ^ 0x01]))
        original(self, task, *args)

    monkeypatch.setattr(RsyncBackend, "_verify", corrupt_then_verify)
    status = run(
        backend, TransferTask("t1", "in", "dtn", (TransferFile("scan.h5", tmp_path / "work/scan.h5"),))
    )

    assert status.failure is not None and status.failure.kind is FailureKind.CHECKSUM, status.error
    assert "scan.h5" in status.failure.message
    assert status.retryable
    assert not (tmp_path / "work/scan.h5").exists()


def test_checksum_verification_catches_corruption_going_out(
    sshd: SshServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(200_000)
    src = write(tmp_path / "work/result.h5", data)
    backend = RsyncBackend(location(sshd, tmp_path / "remote", recheck=True))
    original = RsyncBackend._verify

    def corrupt_then_verify(self: RsyncBackend, task: TransferTask, *args: Any) -> None:
        with open(tmp_path / "remote/out/result.h5", "r+b") as fh:
            fh.seek(5)
            fh.write(bytes([data[5] ^ 0x80]))
        original(self, task, *args)

    monkeypatch.setattr(RsyncBackend, "_verify", corrupt_then_verify)
    status = run(backend, TransferTask("t1", "out", "dtn", (TransferFile("out/result.h5", src),)))
    assert status.failure is not None and status.failure.kind is FailureKind.CHECKSUM, status.error

    monkeypatch.setattr(RsyncBackend, "_verify", original)
    redo = run(backend, TransferTask("t1", "out", "dtn", (TransferFile("out/result.h5", src),)))
    assert redo.state is TaskState.SUCCEEDED, redo.error
    assert redo.files == 1, "--checksum finds the damaged copy although size and mtime match"
    assert (tmp_path / "remote/out/result.h5").read_bytes() == data


def test_a_declared_checksum_must_match(sshd: SshServer, tmp_path: Path) -> None:
    write(tmp_path / "remote/a.dat", b"real bytes")
    backend = RsyncBackend(location(sshd, tmp_path / "remote"))
    wrong = hashlib.sha256(b"other bytes").hexdigest()
    status = run(
        backend, TransferTask("t1", "in", "dtn", (TransferFile("a.dat", tmp_path / "w/a.dat", sha256=wrong),))
    )
    assert status.failure is not None and status.failure.kind is FailureKind.CHECKSUM
    assert not (tmp_path / "w/a.dat").exists()


# ------------------------------------------------------------------------------------------------
# kill -9 of the agent mid-transfer


AGENT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from beambridge.platform.transfer import TransferFile, TransferTask
    from beambridge.platform.transfer.rsync import RsyncBackend, RsyncLocation

    config, remote_path, local_path = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
    backend = RsyncBackend(RsyncLocation(**config))
    task = TransferTask("killed-task", "in", "dtn", (TransferFile(remote_path, Path(local_path)),))
    status = backend.wait(backend.start(task))
    raise SystemExit(f"the test should have killed this agent; it ended: {status}")
    """
)


def test_kill_9_mid_transfer_then_redo(sshd: SshServer, tmp_path: Path) -> None:
    """SIGKILL the agent while rsync receives: its rsync and ssh die with it, nothing appears under the
    final name, and the redo of the task (same id) delivers the file."""
    remote = tmp_path / "remote-kill9"
    src = big_file(remote / "frames.bin", 8 << 20)
    dst = tmp_path / "work/job1/frames.bin"
    config = location(sshd, remote, rsync_options=["--bwlimit=1024"]).model_dump(mode="json")
    staging = tmp_path / "work/job1" / STAGING_DIRNAME / "killed-task"
    agent = subprocess.Popen([sys.executable, "-c", AGENT, json.dumps(config), "frames.bin", str(dst)])
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not any(
            p.is_file() and p.stat().st_size > 0 for p in staging.rglob("*") if p.name != "files-from"
        ):
            assert agent.poll() is None, "the agent ended early"
            assert time.monotonic() < deadline, "rsync never started receiving"
            assert not dst.exists(), "a partial file appeared under the final name"
            time.sleep(0.05)
        assert processes_mentioning(str(remote)), "rsync is running"
        os.kill(agent.pid, signal.SIGKILL)
    finally:
        agent.kill()
        agent.wait(10)

    deadline = time.monotonic() + 10
    while processes_mentioning(str(remote)):
        assert time.monotonic() < deadline, (
            f"rsync/ssh outlived the agent: {processes_mentioning(str(remote))}"
        )
        time.sleep(0.1)
    assert not dst.exists()

    backend = RsyncBackend(location(sshd, remote))
    task = TransferTask("killed-task", "in", "dtn", (TransferFile("frames.bin", dst),))
    status = backend.wait(backend.resume(task, {}), TIMEOUT_S)

    assert status.state is TaskState.SUCCEEDED, status.error
    assert sha(dst) == sha(src)
    assert not staging.exists()


def test_cancel_stops_rsync(sshd: SshServer, tmp_path: Path) -> None:
    remote = tmp_path / "remote-cancel"
    big_file(remote / "frames.bin", 8 << 20)
    dst = tmp_path / "work/frames.bin"
    backend = RsyncBackend(location(sshd, remote, rsync_options=["--bwlimit=1024"]))
    handle = backend.start(TransferTask("c1", "in", "dtn", (TransferFile("frames.bin", dst),)))
    deadline = time.monotonic() + TIMEOUT_S
    while not processes_mentioning(f"{remote}/"):
        assert time.monotonic() < deadline, "rsync never started"
        time.sleep(0.05)

    backend.cancel(handle)
    status = backend.wait(handle, TIMEOUT_S)

    assert status.failure is not None and status.failure.kind is FailureKind.CANCELLED
    assert not dst.exists()
    deadline = time.monotonic() + 10
    while processes_mentioning(str(remote)):
        assert time.monotonic() < deadline, "rsync/ssh outlived the cancel"
        time.sleep(0.1)


# ------------------------------------------------------------------------------------------------
# Commands and parsers (no sshd needed)


def test_the_ssh_command() -> None:
    backend = RsyncBackend(
        RsyncLocation(
            host="dtn.example.org",
            user="alice",
            path="/gdata/xpcs",
            port=2222,
            key_file=Path("keys/id_ed25519"),
            ssh_options=["ProxyJump=bastion.example.org", "StrictHostKeyChecking=yes"],
        )
    )
    ssh = backend.ssh_command()
    assert ssh[:5] == ["ssh", "-o", "ProxyJump=bastion.example.org", "-o", "StrictHostKeyChecking=yes"]
    assert ssh[5:11] == ["-p", "2222", "-i", "keys/id_ed25519", "-o", "IdentitiesOnly=yes"]
    for option in ("BatchMode=yes", "StrictHostKeyChecking=accept-new", "ConnectTimeout=30"):
        assert option in ssh
    assert backend.remote_base() == "alice@dtn.example.org:/gdata/xpcs/"

    argv = backend.rsync_argv(TransferDirection.OUT, Path("stage"), Path("list"), checksum=True)
    assert argv[-2:] == ["stage/", "alice@dtn.example.org:/gdata/xpcs/"]
    for option in (
        "--from0",
        "--files-from=list",
        "--partial-dir=.rsync-partial",
        "--checksum",
        "--copy-links",
    ):
        assert option in argv
    assert "--rsync-path=mkdir -p /gdata/xpcs && rsync" in argv


@pytest.mark.parametrize("option", ["--inplace", "--append-verify", "--delete-after"])
def test_options_that_break_partial_safety_are_refused(option: str) -> None:
    with pytest.raises(ValueError, match="partial-file guarantee"):
        get_backend("rsync", {"host": "h", "user": "u", "path": "/p", "rsync_options": [option]})


def test_home_relative_remote_paths() -> None:
    assert RsyncLocation(host="h", user="u", path="~/xpcs/raw").path == "xpcs/raw"
    assert RsyncLocation(host="h", user="u", path="~").path == "."
    backend = RsyncBackend(RsyncLocation(host="h", user="u", path="~/out"))
    assert backend.remote_base() == "u@h:out/"
    assert "--rsync-path=mkdir -p out && rsync" in backend.rsync_argv(
        TransferDirection.OUT, Path("s"), Path("l"), checksum=False
    )


def test_bad_ssh_options_are_refused() -> None:
    with pytest.raises(ValueError):
        RsyncLocation(host="h", user="u", path="/p", ssh_options=["-oProxyCommand evil"])


STATS = """
Number of files: 203 (reg: 201, dir: 2)
Number of created files: 0
Number of deleted files: 0
Number of regular files transferred: 17
Total file size: 52,740,183 bytes
Total transferred file size: 1,234,567 bytes
Literal data: 1,234,567 bytes
"""


def test_parse_stats() -> None:
    stats = parse_stats(STATS)
    assert (stats.files_transferred, stats.bytes_transferred, stats.regular_files) == (17, 1_234_567, 201)
    assert parse_stats(STATS.replace(" (reg: 201, dir: 2)", "")).regular_files == 203
    with pytest.raises(ValueError):
        parse_stats("sent 10 bytes")


def test_parse_verify() -> None:
    out = "BBVERIFY:>fc........:a/x.dat\nBBVERIFY:.d..t......:a/\nBBVERIFY:<fcs.......:b.dat\nnoise\n"
    assert parse_verify(out) == ["a/x.dat", "b.dat"]


@pytest.mark.parametrize(
    ("code", "stderr", "kind"),
    [
        (255, "alice@dtn: Permission denied (publickey).\nrsync: connection unexpectedly closed", "auth"),
        (
            12,
            "Host key verification failed.\nrsync error: error in rsync protocol data stream (code 12)",
            "auth",
        ),
        (255, "ssh: connect to host dtn port 22: Connection refused", "transient"),
        (255, "ssh: Could not resolve hostname dtn: Name or service not known", "config"),
        (23, 'rsync: [sender] link_stat "/data/x" failed: No such file or directory (2)', "not_found"),
        (23, 'rsync: [receiver] mkstemp "/data/.x.abc" failed: Permission denied (13)', "config"),
        (30, "rsync error: timeout in data send/receive (code 30)", "transient"),
        (11, "rsync: write failed on /data/x: No space left on device (28)", "transient"),
        (1, "rsync: --bad-option: unknown option\nrsync error: syntax or usage error (code 1)", "config"),
        (24, "file has vanished: /data/y", "transient"),
        (-9, "", "transient"),
    ],
)
def test_classify_rsync_failure(code: int, stderr: str, kind: str) -> None:
    failure = classify_rsync_failure(code, stderr)
    assert failure.kind == kind, failure
    assert failure.retryable == (kind == "transient")
